"""The sample's non-DICOM files: PNG/JPEG/TIFF radiographs and photos, NIfTI-1/2 volumes, and
the deliberately broken files ingest must quarantine.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from medspark.sample.anatomy import CHEST_MM, ct_slice
from medspark.sample.images import brain_slice, dermoscopy_image, xray_image
from medspark.sample.people import Patient, rng_for
from medspark.sample.plan import SeriesPlan

XRAY_SIZE = 256


def encode_image(ext: str, img: np.ndarray) -> bytes:
    params = {".png": [cv2.IMWRITE_PNG_COMPRESSION, 6], ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 92]}
    ok, buf = cv2.imencode(ext, img, params.get(ext, []))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {ext}")
    return buf.tobytes()


def write_rasters(images: Path, seed: int, overlay: SeriesPlan) -> list[Path]:
    """2D files: radiographs (8/16-bit PNG, JPEG, 16-bit TIFF), a CT overlay, a dermoscopy."""
    xr = [xray_image(XRAY_SIZE, rng_for(seed, 9, i)) for i in range(4)]
    k = overlay.n_slices // 2
    if overlay.lesion is not None:
        k = min(range(overlay.n_slices),
                key=lambda i: abs(overlay.z_fractions()[i] - overlay.lesion.z))
    window = np.clip((overlay.slice_hu(k) + 1000.0) / 1400.0 * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(window, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(overlay.mask()[k], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(colour, contours, -1, (0, 0, 255), 1)
    files = {
        "png/cxr_0001.png": encode_image(".png", np.round(xr[0] * 255).astype(np.uint8)),
        "png/cxr_0002_16bit.png": encode_image(".png", np.round(xr[1] * 4095).astype(np.uint16)),
        "png/ct_overlay_rgb.png": encode_image(".png", colour),
        "jpeg/cxr_0003.jpg": encode_image(".jpg", np.round(xr[2] * 255).astype(np.uint8)),
        "jpeg/dermoscopy_0001.jpg": encode_image(".jpg",
                                                 dermoscopy_image(XRAY_SIZE, rng_for(seed, 10))),
        "tiff/cxr_0004_16bit.tif": encode_image(".tiff", np.round(xr[3] * 4095).astype(np.uint16)),
    }
    return write_files(images, files)


def write_files(root: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_nifti(images: Path, seed: int, patient: Patient) -> list[Path]:
    """NIfTI-1 CT volume (.nii.gz), NIfTI-2 T1 head (.nii) and a small 4D NIfTI-1 series."""
    n, size, thk = 8, 64, 5.0
    sp = patient.fov_mm / size
    ct = np.stack([ct_slice(size, 0.5 + (k - 3.5) * thk / CHEST_MM, rng_for(seed, 11, k),
                            body=patient.body) for k in range(n)], axis=-1)
    ct_img = nib.Nifti1Image(np.ascontiguousarray(ct.transpose(1, 0, 2)),
                             np.diag([-sp, -sp, thk, 1.0]))
    head = np.stack([brain_slice(48, z, rng_for(seed, 12, i))
                     for i, z in enumerate(np.linspace(0.2, 0.8, 6))], axis=-1)
    mr_img = nib.Nifti2Image(np.ascontiguousarray(head.transpose(1, 0, 2)),
                             np.diag([1.2, 1.2, 4.0, 1.0]))
    base = np.stack([brain_slice(32, z, rng_for(seed, 13, i))
                     for i, z in enumerate(np.linspace(0.35, 0.65, 4))], axis=-1)
    t = np.arange(5, dtype=np.float32)
    bold = base[..., None] * (1 + 0.02 * np.sin(t * np.pi / 2))  # (y, x, z, t)
    fmri = nib.Nifti1Image(np.round(bold.transpose(1, 0, 2, 3)).astype(np.int16),
                           np.diag([3.0, 3.0, 4.0, 1.0]))
    fmri.header.set_xyzt_units("mm", "sec")
    fmri.header["pixdim"][4] = 2.0
    for img, text in ((ct_img, "synthetic CT"), (mr_img, "synthetic T1"), (fmri, "synthetic BOLD")):
        img.header["descrip"] = text.encode()
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
    return write_files(images, {
        "nifti/ct_chest.nii.gz": gzip.compress(ct_img.to_bytes(), mtime=0),
        "nifti/t1_head_nifti2.nii": mr_img.to_bytes(),
        "nifti/bold_4d.nii": fmri.to_bytes(),
    })


def write_broken(images: Path, seed: int, valid_dicom: Path) -> list[Path]:
    """Files ingest must quarantine (or, for the mislabelled PNG, sniff correctly)."""
    data = valid_dicom.read_bytes()
    xr = np.round(xray_image(64, rng_for(seed, 14)) * 255).astype(np.uint8)
    return write_files(images, {
        "broken/truncated.dcm": data[: int(len(data) * 0.6)],
        "broken/empty.dcm": b"",
        "broken/notes.txt": b"Transfer notes: files in this folder failed the export QA check.\n"
                            b"Re-send requested from the modality; do not use for research.\n",
        "broken/random.dcm": rng_for(seed, 15).bytes(4096),
        "broken/png_named.dcm": encode_image(".png", xr),
    })
