"""RTSTRUCT objects in the lake become per-slice masks, then features per ROI."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from lake_io import read

from medspark.config import load_settings
from medspark.planes import decode_mask
from medspark.privacy.pseudonym import resolve_key
from medspark.segment.rtstruct import SliceGeometry, rasterise_rtstruct
from medspark.spark.imaging import run_features
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.spark.masks import run_masks

DAY = dt.date(2026, 3, 1)
PHANTOM = Path(__file__).resolve().parents[2] / "shared" / "ibsi" / "ct_phantom"


def ingest(spark, src: Path, lake: Path) -> None:
    settings = load_settings(None, [f"ingest.ingest_date={DAY.isoformat()}"])
    request = IngestRequest(inputs=[str(src)], lake=str(lake))
    run_ingest(spark, settings, request, request.validate(settings))


def masks_of(lake: Path, source: str):
    return read(lake / "masks" / f"source={source}")


@pytest.fixture(scope="module")
def lake(spark, sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("masks-lake")
    ingest(spark, sample_dir / "images", root)
    return root


def test_rtstruct_masks_equal_the_generators_nodules(spark, lake, sample_dir):
    manifest = run_masks(spark, load_settings(None), str(lake), resolve_key(False))
    counts = manifest["counts"]
    rts = sorted((sample_dir / "images" / "rtstruct").glob("*.dcm"))
    assert counts["rtstructs_cataloged"] == len(rts)
    assert counts["objects_with_slices"] == len(rts) + counts["segs_cataloged"]
    assert counts["errors"] == 0 and counts["roi_names"] == 2  # GTV-nodule, SEG "nodule"
    masks = masks_of(lake, "rtstruct")
    catalog = read(lake / "catalog").set_index("image_id")
    for rt in rts:
        series = rt.name.removesuffix("_rtstruct.dcm")
        truth = np.load(sample_dir / "masks" / f"{series}.npy")
        planes = catalog[catalog.source_path.str.contains(f"/ct/{series}/")]
        got = masks[masks.image_id.isin(planes.index)]
        assert len(got) == int(truth.any(axis=(1, 2)).sum())
        for row in got.to_dict("records"):
            k = int(Path(planes.loc[row["image_id"], "source_path"]).stem.split("_")[1])
            np.testing.assert_array_equal(decode_mask(row, "data"), truth[k])
    assert set(masks.roi_name) == {"GTV-nodule"}


def test_seg_masks_equal_the_generators_nodule(spark, lake, sample_dir):
    manifest = run_masks(spark, load_settings(None), str(lake), resolve_key(False))
    assert manifest["counts"]["segs_cataloged"] == 1
    # the first test's run rasterised everything: this one has nothing left to do
    assert manifest["counts"]["objects_processed"] == 0
    assert manifest["outputs"]["masks_seg"]["version"] is None
    masks = masks_of(lake, "seg")
    assert set(masks.roi_name) == {"nodule"} and set(masks.mask_source) == {"seg"}
    seg = next((sample_dir / "images" / "seg").glob("*.dcm"))
    series = seg.name.removesuffix("_seg.dcm")
    truth = np.load(sample_dir / "masks" / f"{series}.npy")
    catalog = read(lake / "catalog").set_index("image_id")
    assert len(masks) == int(truth.any(axis=(1, 2)).sum())
    for row in masks.to_dict("records"):
        path = catalog.loc[row["image_id"], "source_path"]
        assert f"/ct/{series}/" in path
        np.testing.assert_array_equal(decode_mask(row, "data"),
                                      truth[int(Path(path).stem.split("_")[1])])


def test_features_per_rtstruct_roi(spark, lake):
    settings = load_settings(None, ["features.mask=table", "features.mask_source=rtstruct",
                                    "features.families=[firstorder, shape2D]"])
    run_masks(spark, settings, str(lake), resolve_key(False))
    manifest = run_features(spark, settings, str(lake))
    features = read(manifest["outputs"]["features"])
    masks = masks_of(lake, "rtstruct")
    assert len(features) == len(masks) and set(features.roi_name) == {"GTV-nodule"}
    # a nodule is dense tissue inside the lung: its mean HU is far above lung parenchyma
    assert features.firstorder_Mean.between(-300, 200).all()
    assert (features.shape2D_PixelSurface > 0).all()


@pytest.mark.skipif(not PHANTOM.exists(), reason="IBSI CT phantom (../shared) not present")
def test_ibsi_phantom_through_the_lake_matches_the_pure_rasteriser(spark, tmp_path):
    src = tmp_path / "phantom"
    shutil.copytree(PHANTOM / "dicom", src)
    lake = tmp_path / "lake"
    ingest(spark, src, lake)
    manifest = run_masks(spark, load_settings(None), str(lake), resolve_key(False))
    assert manifest["counts"]["errors"] == 0
    masks = masks_of(lake, "rtstruct")
    catalog = read(lake / "catalog").set_index("image_id")
    images = sorted((src / "image").glob("*.dcm"))
    by_path = {f"file:{p.resolve()}": p for p in images}
    slices = [SliceGeometry.from_dicom(p.read_bytes(), key=f"file:{p.resolve()}")
              for p in images]
    rt = next((src / "mask").glob("*.dcm")).read_bytes()
    expected = rasterise_rtstruct(rt, slices, roi="GTV-1")["GTV-1"].masks
    gtv = masks[masks.roi_name == "GTV-1"]
    assert len(gtv) == len(expected) > 0
    for row in gtv.to_dict("records"):
        path = catalog.loc[row["image_id"], "source_path"]
        assert path in by_path
        np.testing.assert_array_equal(decode_mask(row, "data"), expected[path])
    assert int(sum(m.sum() for m in expected.values())) == 125_256  # == the NIfTI mask
    assert pydicom.dcmread(next((src / "mask").glob("*.dcm"))).Modality == "RTSTRUCT"
