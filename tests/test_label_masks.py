"""Masks from NIfTI / PNG label images, joined to ingested planes by rewritten relative path."""

from __future__ import annotations

import datetime as dt

import cv2
import nibabel as nib
import numpy as np
import pytest
from lake_io import read

from medspark.config import ConfigError, load_settings
from medspark.planes import decode_mask
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.spark.masks import run_label_masks

DAY = dt.date(2026, 4, 1)
REWRITE = (r"_(seg|mask)(\.nii\.gz|\.png)$", r"\2")


@pytest.fixture(scope="module")
def dataset(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    images, labels = root / "images", root / "labels"
    (images / "ct").mkdir(parents=True)
    (labels / "ct").mkdir(parents=True)
    rng = np.random.default_rng(5)
    volume = rng.integers(-1000, 1000, (24, 32, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.0, 1.0])), images / "ct" / "a.nii.gz")
    seg = np.zeros((24, 32, 3), np.uint8)
    seg[4:10, 5:15, 0] = 1
    seg[12:20, 8:30, 1] = 2
    seg[2:5, 2:5, 1] = 1
    nib.save(nib.Nifti1Image(seg, np.diag([0.8, 0.8, 2.0, 1.0])), labels / "ct" / "a_seg.nii.gz")
    xray = rng.integers(0, 255, (40, 50)).astype(np.uint8)
    cv2.imwrite(str(images / "x.png"), xray)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 20:40] = 255
    cv2.imwrite(str(labels / "x_mask.png"), mask)
    cv2.imwrite(str(labels / "ghost_mask.png"), mask)            # no such image
    cv2.imwrite(str(labels / "ct" / "b.png"), np.zeros((3, 3), np.uint8))  # no non-zero label
    lake = root / "lake"
    settings = load_settings(None, [f"ingest.ingest_date={DAY.isoformat()}"])
    request = IngestRequest(inputs=[str(images)], lake=str(lake))
    run_ingest(spark, settings, request, request.validate(settings))
    return {"lake": lake, "labels": labels, "seg": seg, "mask": mask}


def test_label_images_become_masks_per_plane_and_value(spark, dataset):
    manifest = run_label_masks(spark, load_settings(None), str(dataset["lake"]),
                               str(dataset["labels"]), "manual", *REWRITE)
    masks = read(manifest["outputs"]["masks"])
    catalog = read(dataset["lake"] / "catalog").set_index("image_id")
    masks["relpath"] = catalog.loc[masks.image_id, "source_relpath"].to_numpy()
    masks["plane"] = catalog.loc[masks.image_id, "plane_index"].to_numpy()
    got = {(r.relpath, int(r.plane), r.roi_name): decode_mask(r._asdict(), "data")
           for r in masks.itertuples()}
    seg = dataset["seg"]
    want = {("ct/a.nii.gz", 0, "label-1"): seg[:, :, 0].T == 1,
            ("ct/a.nii.gz", 1, "label-1"): seg[:, :, 1].T == 1,
            ("ct/a.nii.gz", 1, "label-2"): seg[:, :, 1].T == 2,
            ("x.png", 0, "label-255"): dataset["mask"] > 0}
    assert set(got) == set(want)
    for key, mask in want.items():
        np.testing.assert_array_equal(got[key], mask)
    counts = manifest["counts"]
    assert counts["masks"] == 4 and counts["errors_by_reason"] == {"no_matching_image_plane": 1}
    assert counts["label_files"] == 3  # the all-zero label image has no ROI and no error


def test_bad_source_name_and_regex_are_config_errors(spark, dataset):
    with pytest.raises(ConfigError, match="mask source name"):
        run_label_masks(spark, load_settings(None), str(dataset["lake"]),
                        str(dataset["labels"]), "../x")
    with pytest.raises(ConfigError, match="rewrite"):
        run_label_masks(spark, load_settings(None), str(dataset["lake"]),
                        str(dataset["labels"]), "ok", "(", "x")
