"""NIfTI-1/2 reader (`.nii`, `.nii.gz`): bytes -> one plane per slice, in physical units.

The header is parsed (and limits checked) before any voxel is read or decompressed past the
header, so an oversized or gzip-bomb volume is rejected cheaply. Planes are 2D slices along the
third axis, ordered `t * nz + z`; each plane is `data[:, :, z, t].T` (rows follow j, cols i).
"""

from __future__ import annotations

import struct
import zlib

import nibabel as nib
import numpy as np

from medspark.io.dtypes import to_smallest_exact
from medspark.io.types import DecodedImage, Limits, ReadError

GZIP_MAGIC = b"\x1f\x8b"
_HEADER_SIZES = {348: 1, 540: 2}
_HEADERS: dict[int, type[nib.Nifti1Header]] = {1: nib.Nifti1Header, 2: nib.Nifti2Header}
_IMAGES: dict[int, type[nib.Nifti1Image]] = {1: nib.Nifti1Image, 2: nib.Nifti2Image}
_MAGICS = {1: (b"n+1\x00", b"ni1\x00"), 2: (b"n+2\x00", b"ni2\x00")}
_SPACE_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}


def nifti_version(head: bytes) -> int | None:
    """1 or 2 if `head` starts with a NIfTI-1/2 `sizeof_hdr` in either byte order, else None."""
    if len(head) < 4:
        return None
    for order in "<>":
        version = _HEADER_SIZES.get(struct.unpack(f"{order}i", head[:4])[0])
        if version:
            return version
    return None


def gunzip(data: bytes, max_out: int) -> bytes:
    """Decompress at most `max_out` bytes (multi-member gzip too): a bomb never inflates fully."""
    out = bytearray()
    rest = data
    try:
        while rest and len(out) < max_out:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(rest, max_out - len(out))
            if not d.eof:
                break
            rest = d.unused_data
    except zlib.error as e:
        if out:  # garbage after a complete member, or a corrupt tail: size check decides
            return bytes(out)
        raise ReadError("decode_error", "invalid gzip stream") from e
    return bytes(out)


def _header(head: bytes) -> tuple[int, nib.Nifti1Header]:
    version = nifti_version(head)
    if version is None:
        raise ReadError("not_an_image", "not a NIfTI-1/2 header")
    size = 348 if version == 1 else 540
    if len(head) < size:
        raise ReadError("truncated", "NIfTI header is truncated")
    header = _HEADERS[version](binaryblock=head[:size], check=False)
    magic = bytes(header["magic"].tobytes())[:4]
    if magic not in _MAGICS[version]:
        raise ReadError("not_an_image", "NIfTI magic is missing (Analyze 7.5?)")
    if magic == _MAGICS[version][1]:
        raise ReadError("unsupported", "NIfTI header/image pair (.hdr/.img) needs the .img file")
    return version, header


def _shape5(header: nib.Nifti1Header) -> tuple[int, int, int, int, int]:
    """(nx, ny, nz, nt, nc) from the header; dims beyond the 5th must be singletons."""
    shape = [int(n) for n in header.get_data_shape()]
    if any(n < 1 for n in shape) or not shape:
        raise ReadError("decode_error", "NIfTI header has an empty dimension")
    if len(shape) > 5 and int(np.prod(shape[5:])) != 1:
        raise ReadError("unsupported", f"NIfTI with {len(shape)} non-singleton dimensions")
    nx, ny, nz, nt, nc = (shape + [1] * 5)[:5]
    return nx, ny, nz, nt, nc


def _scaled(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """Apply scl_slope/scl_inter in float64 (exact for int8..int32 raw); native byte order."""
    if slope == 1.0 and inter == 0.0:
        return raw.astype(raw.dtype.newbyteorder("="), copy=False)
    return raw.astype(np.float64) * slope + inter


def _slice_positions(affine: np.ndarray, nz: int, nt: int, to_mm: float) -> list[float | None]:
    """Origin of each slice projected on the normal cross(i_dir, j_dir), like DICOM's location.

    The projection is invariant under NIfTI RAS vs DICOM LPS (a 180 degree rotation about z).
    """
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    norm = float(np.linalg.norm(normal))
    if not np.isfinite(norm) or norm == 0.0:
        return [None] * (nz * nt)
    normal = normal / norm
    per_z = [float(np.dot(affine[:3, :3] @ [0.0, 0.0, z] + affine[:3, 3], normal)) * to_mm
             for z in range(nz)]
    return per_z * nt


def _spacing(header: nib.Nifti1Header, to_mm: float) -> tuple[tuple[float, float] | None,
                                                              float | None]:
    zooms = [float(z) * to_mm for z in header.get_zooms()]
    zooms = [z if np.isfinite(z) and z > 0 else None for z in zooms] + [None] * 3
    pixel = (zooms[1], zooms[0]) if zooms[0] and zooms[1] else None
    return pixel, zooms[2]


def _attributes(version: int, header: nib.Nifti1Header) -> dict[str, str]:
    """Non-identifying header fields only: never descrip, aux_file, db_name or intent_name."""
    dim = [int(d) for d in header["dim"]]
    return {
        "nifti_version": str(version),
        "datatype": str(int(header["datatype"])),
        "dims": "x".join(str(d) for d in dim[1 : 1 + max(min(dim[0], 7), 0)]),
        "xyzt_units": str(int(header["xyzt_units"])),
        "intent_code": str(int(header["intent_code"])),
        "qform_code": str(int(header["qform_code"])),
        "sform_code": str(int(header["sform_code"])),
    }


def read_nifti(data: bytes, limits: Limits) -> DecodedImage:
    """Decode a NIfTI-1/2 file (optionally gzip-compressed) into `t * nz + z` planes."""
    gz = data[:2] == GZIP_MAGIC
    head = gunzip(data, 540) if gz else data[:540]
    version, header = _header(head)
    nx, ny, nz, nt, nc = _shape5(header)
    limits.check_plane(ny, nx)
    limits.check_planes(nz * nt)
    try:
        dtype = header.get_data_dtype()
    except (KeyError, nib.spatialimages.HeaderDataError) as e:
        raise ReadError("decode_error", "unknown NIfTI datatype code") from e
    if dtype.kind == "c":
        raise ReadError("unsupported", "complex NIfTI data is not supported")
    offset = int(header["vox_offset"])
    if offset < (352 if version == 1 else 544):
        raise ReadError("decode_error", "NIfTI vox_offset points inside the header")
    end = offset + nx * ny * nz * nt * nc * dtype.itemsize
    raw_bytes = gunzip(data, end) if gz else data
    if len(raw_bytes) < end:
        raise ReadError("truncated", "NIfTI voxel data is shorter than the header says")

    img = _IMAGES[version].from_bytes(raw_bytes)
    proxy = img.dataobj
    raw = np.asarray(proxy.get_unscaled()).reshape((nx, ny, nz, nt, nc), order="F")
    colour = bool(raw.dtype.names)
    if colour:  # RGB24 / RGBA32: one channel per field, never scaled
        if nc != 1:
            raise ReadError("unsupported", "NIfTI RGB data with a vector dimension")
        values = np.stack([raw[name] for name in raw.dtype.names], axis=-1)[..., 0, :]
        nc = values.shape[-1]
    else:
        values = _scaled(raw, float(proxy.slope), float(proxy.inter))
    # (nx, ny, nz, nt, nc) -> (nt, nz, ny, nx, nc) -> (planes, rows, cols, channels)
    planes = np.ascontiguousarray(values.transpose(3, 2, 1, 0, 4)).reshape(nt * nz, ny, nx, nc)
    pixels = to_smallest_exact(planes)

    to_mm = _SPACE_TO_MM.get(header.get_xyzt_units()[0], 1.0)
    pixel_spacing, thickness = _spacing(header, to_mm)
    # vector (5th-dimension) channels are not colours, so they get no photometric
    photometric = "MONOCHROME2" if nc == 1 else ({3: "RGB", 4: "RGBA"}.get(nc) if colour else None)
    return DecodedImage(
        format="nifti",
        pixels=pixels,
        n_planes=nt * nz,
        rows=ny,
        cols=nx,
        channels=nc,
        pixel_spacing_mm=pixel_spacing,
        slice_thickness_mm=thickness,
        slice_positions=_slice_positions(np.asarray(img.affine, dtype=np.float64), nz, nt, to_mm),
        bits_stored=pixels.dtype.itemsize * 8,
        photometric=photometric,
        identifiers={"patient_id": None, "study_uid": None, "series_uid": None, "sop_uid": None,
                     "accession_number": None, "study_date": None},
        attributes=_attributes(version, header),
    )
