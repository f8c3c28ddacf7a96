"""Bounded memory on planes with huge grey-level ranges (issue 14, defect 5).

pydicom's 100x100 32-bit RGB test image (values up to 4.3e9) has ~1.7e8 grey levels at
``binWidth`` 25: matrices sized by the largest level took >6 GiB in one call and the kernel
killed the worker. Now nothing is sized by the largest level, GLRLM/GLSZM/GLDM keep only their
non-zero cells, and GLCM and the pairwise NGTDM features check ``max_matrix_bytes`` before
allocating: over it they are NaN with an ``over_matrix_budget`` warning. The big planes run in a
child process under an address-space limit, so a regression fails the test instead of
exhausting the machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medspark.config import ConfigError, FeatureSettings, load_settings
from medspark.features import (
    FAMILIES,
    MAX_MATRIX_BYTES,
    OVER_MATRIX_BUDGET,
    REGISTRY,
    extract,
    extract_result,
    feature_names,
    glcm,
    ngtdm,
)
from medspark.features.context import Context
from medspark.features.discretize import discretize
from medspark.features.settings import validate

GIB = 1024 ** 3
# the whole child process: the interpreter and imports (~180 MB), the planes and the feature
# matrices (allocator slack included; measured 0.95-1.05 GB). The defect this guards against
# reached 12 GB in one Python worker.
RSS_LIMIT = 1.5 * GIB
AS_LIMIT = 3 * GIB  # the child's address space: the old code needed > 10 GiB on the RGB plane
PAIRWISE = {f"ngtdm_{n}" for n in ngtdm.PAIRWISE}


def rgb32_dicom(path) -> str:
    """pydicom's SC_rgb_32bit.dcm, or (not shipped in every pydicom) the same image written
    uncompressed from its RLE twin, or an equivalent 100x100 RGB 32-bit image."""
    shipped = get_testdata_file("SC_rgb_32bit.dcm", download=False)
    if shipped:
        return shipped
    twin = get_testdata_file("SC_rgb_rle_32bit.dcm", download=False)
    if twin:
        pixels = pydicom.dcmread(twin).pixel_array
    else:  # SC_rgb_32bit's pattern: bands of 0, 0x40404040, ..., 0xFFFFFFFF per channel
        band = np.array([0, 0x40404040, 0x80808080, 0xC0C0C0C0, 0xFFFFFFFF], dtype=np.uint32)
        rows = band[np.arange(100) // 20]
        pixels = np.stack([rows[:, None].repeat(100, 1), rows[None, :].repeat(100, 0),
                           rows[::-1, None].repeat(100, 1)], axis=-1)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "OT", "budget"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 100, 100, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(path)


# The child: decode like ingest, reduce to luminance like FeatureExtractor, extract with
# pyradiomics' default binWidth and no mask; report values, warnings and peak memory.
CHILD = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
    import numpy as np
    from medspark.features import extract_result
    from medspark.io.read import read_image
    from medspark.io.types import Limits
    from medspark.ml.stages import _luminance

    def run(plane, **kw):
        tracemalloc.start()
        result = extract_result(plane, None, binWidth=25, **kw)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {"values": result.values, "warnings": list(result.warnings), "peak": peak}

    decoded = read_image(open(sys.argv[1], "rb").read(), Limits())
    rgb = run(_luminance(decoded.pixels[0]))
    rgb_small_budget = run(_luminance(decoded.pixels[0]), max_matrix_bytes=4096)
    wide = np.random.default_rng(0).integers(0, 65536, (2000, 2000), dtype=np.uint16)
    out = {"dtype": str(decoded.pixels.dtype), "max": float(decoded.pixels.max()),
           "shape": list(decoded.pixels.shape), "rgb": rgb, "rgb_small": rgb_small_budget,
           "wide": run(wide),
           "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def child(tmp_path_factory) -> dict:
    path = rgb32_dicom(tmp_path_factory.mktemp("rgb32") / "SC_rgb_32bit.dcm")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, path, str(AS_LIMIT)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_rgb_plane_is_the_hostile_one(child):
    assert child["dtype"] == "uint32" and child["shape"] == [1, 100, 100, 3]
    assert child["max"] > 4e9  # ~1.7e8 grey levels at binWidth 25


def test_rgb32_plane_gives_every_feature_in_bounded_memory(child):
    """GLCM and NGTDM span only the ~10 levels present: every feature has a value."""
    rgb = child["rgb"]
    assert list(rgb["values"]) == feature_names()
    assert all(math.isfinite(v) for v in rgb["values"].values())
    assert rgb["warnings"] == []
    assert rgb["peak"] < 64 * 1024 ** 2
    assert child["maxrss"] < RSS_LIMIT


def test_rgb32_plane_over_a_small_budget_names_the_families(child):
    small = child["rgb_small"]
    nan = {k for k, v in small["values"].items() if math.isnan(v)}
    assert nan == {n for n in feature_names("glcm")} | PAIRWISE
    assert [w.split(":")[0] for w in small["warnings"]] == [OVER_MATRIX_BUDGET] * 2
    assert small["warnings"][0].startswith("over_matrix_budget: glcm needs ")
    assert small["warnings"][1].startswith("over_matrix_budget: ngtdm (")


def test_thousands_of_levels_on_a_2000x2000_16bit_plane(child):
    """2622 grey levels present: GLCM (~660 MB) and the pairwise NGTDM features (~330 MB) are
    over the default 256 MiB and NaN with a reason; every other feature has a value."""
    wide = child["wide"]
    nan = {k for k, v in wide["values"].items() if math.isnan(v)}
    assert nan == set(feature_names("glcm")) | PAIRWISE
    reasons = [w.split(":")[0] for w in wide["warnings"]]
    assert reasons == [OVER_MATRIX_BUDGET] * 2
    needs = [int(w.split(" needs ")[1].split()[0]) for w in wide["warnings"]]
    assert all(n > MAX_MATRIX_BYTES for n in needs)
    assert wide["peak"] < GIB
    assert child["maxrss"] < RSS_LIMIT


# ---- the budget is an upper bound, checked before allocating ----------------------------------

def _context(levels: int, shape=(100, 100), **settings) -> Context:
    image = np.random.default_rng(3).integers(0, levels, shape).astype(np.float64)
    roi = np.ones(shape, bool)
    ctx = Context(image, roi, (1.0, 1.0), validate({"binWidth": 1, **settings}), {})
    assert ctx.plane.n_levels == levels  # built (and its arrays allocated) before measuring
    return ctx


def _peak_of(fn) -> int:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


@pytest.mark.parametrize("settings", [{}, {"distances": [1, 2]}, {"weightingNorm": "infinity"},
                                      {"symmetricalGLCM": False}])
def test_glcm_estimate_bounds_what_it_allocates(settings):
    """All angles' temporaries at once (4 angles), or in chunks (12 angles: distances 1, 2)."""
    ctx = _context(200, **settings)
    n_angles = 12 if settings.get("distances") else 4
    need = glcm.matrix_bytes(n_angles, 200, "weightingNorm" in settings)
    ctx.max_matrix_bytes = need
    used = _peak_of(lambda: glcm.compute(ctx))
    assert ctx.warnings == []
    assert 0.25 * need < used <= need


def test_ngtdm_estimate_bounds_what_it_allocates():
    ctx = _context(1200, shape=(200, 200))
    n, s, i = ngtdm.matrix(ctx.plane, ctx.settings)
    need = ngtdm.pairwise_bytes(len(i))
    used = _peak_of(lambda: ngtdm.pairwise(n, s, i))
    assert 0.25 * need < used <= need


def test_budget_threshold_is_inclusive_and_reported():
    image = np.random.default_rng(4).integers(0, 60, (40, 40)).astype(float)
    need = glcm.matrix_bytes(4, len(np.unique(image)))
    fits = extract_result(image, families=["glcm"], binWidth=1, max_matrix_bytes=need)
    over = extract_result(image, families=["glcm"], binWidth=1, max_matrix_bytes=need - 1)
    assert fits.warnings == () and all(math.isfinite(v) for v in fits.values.values())
    assert all(math.isnan(v) for v in over.values.values())
    assert over.warnings == (f"over_matrix_budget: glcm needs {need} bytes > "
                             f"max_matrix_bytes {need - 1}",)
    assert extract(image, families=["glcm"], binWidth=1, max_matrix_bytes=need) == fits.values


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_budget_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_matrix_bytes"):
        extract(np.ones((4, 4)), max_matrix_bytes=bad)


def test_budget_setting_in_the_config():
    assert FeatureSettings().max_matrix_bytes == MAX_MATRIX_BYTES
    cfg = load_settings(None, ["features.max_matrix_bytes=1048576"])
    assert cfg.features.max_matrix_bytes == 1 << 20
    with pytest.raises(ConfigError, match="max_matrix_bytes"):
        load_settings(None, ["features.max_matrix_bytes=0"])


# ---- no array sized by the largest grey level --------------------------------------------------

def test_wide_range_discretisation_is_exact_without_materialising_edges():
    """More bins than pixels: edges computed on demand equal numpy.arange's, bit for bit."""
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.uniform(-3e4, 2e5, 400), [-3e4, 2e5, 25.0 * 7]])
    for width in (25, 0.7, 3.3):
        low = values.min() - values.min() % width
        edges = np.arange(low, values.max() + 2 * width, width)
        assert len(edges) > len(values)
        np.testing.assert_array_equal(discretize(values, width), np.digitize(values, edges))


def test_sparse_levels_match_dense_ones():
    """The same plane with its grey levels spread 1e6 apart (~1.1e7 levels, 12 present): the
    features that depend only on the levels' order are unchanged, the others scale."""
    small = np.random.default_rng(6).integers(0, 12, (48, 48)).astype(float)
    a = extract(small, binWidth=1)
    b = extract(small * 1e6, binWidth=1)
    order_only = [n for n in feature_names() if n.split("_", 1)[0] in ("glrlm", "glszm", "gldm")
                  and "GrayLevel" not in n] + ["firstorder_Entropy", "firstorder_Uniformity",
                                               "glcm_JointEnergy", "glcm_JointEntropy",
                                               "glcm_MaximumProbability", "glcm_Imc1"]
    for name in order_only:
        assert b[name] == pytest.approx(a[name], rel=1e-9), name
    assert b["glcm_Contrast"] == pytest.approx(a["glcm_Contrast"] * 1e12, rel=1e-9)
    assert b["ngtdm_Coarseness"] == pytest.approx(a["ngtdm_Coarseness"] / 1e6, rel=1e-9)
    assert b["ngtdm_Strength"] == pytest.approx(a["ngtdm_Strength"] * 1e6, rel=1e-9)


# ---- in Spark ----------------------------------------------------------------------------------

def test_feature_extractor_applies_the_budget_per_plane(spark):
    from medspark.ml.stages import FeatureExtractor
    from medspark.planes import encode_plane

    rng = np.random.default_rng(7)
    rows = [{"image_id": "few", **encode_plane(rng.integers(0, 16, (48, 48)).astype(np.int16))},
            {"image_id": "many", **encode_plane(rng.integers(0, 400, (48, 48)).astype(np.int16))}]
    fx = FeatureExtractor(families=["glcm", "ngtdm"], settings={"binWidth": 1},
                          maxMatrixBytes=1 << 20)
    out = fx.transform(spark.createDataFrame(rows)).toPandas().set_index("image_id")
    assert out.feature_error.isna().all()
    assert list(out.loc["few", "feature_warnings"]) == []
    assert np.isfinite(out.loc["few", "features"].toArray()).all()
    warnings = list(out.loc["many", "feature_warnings"])
    assert [w.split(":")[0] for w in warnings] == [OVER_MATRIX_BUDGET] * 2
    assert "max_matrix_bytes 1048576" in warnings[0]
    vector = dict(zip(fx.featureNames(), out.loc["many", "features"].toArray(), strict=True))
    nan = {k for k, v in vector.items() if np.isnan(v)}
    assert nan == set(feature_names("glcm")) | PAIRWISE
    assert np.isnan(out.loc["many", "glcm_Contrast"])
    assert np.isfinite(out.loc["many", "ngtdm_Coarseness"])


# ---- the registry ------------------------------------------------------------------------------

def test_registry_drives_names_and_order():
    assert tuple(n for n, f in REGISTRY.items() if f.default) == FAMILIES
    assert feature_names() == [f"{fam}_{name}" for fam in FAMILIES
                               for name in REGISTRY[fam].feature_names({})]
    hog = REGISTRY["hog"].feature_names({"hogOrientations": 4})
    assert hog[-1] == "Orientation3" and len(hog) == 8
