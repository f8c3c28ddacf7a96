"""End-to-end on the lake: ingest -> preprocess -> features, with the default config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from lake_io import read

from medspark.config import ConfigError, load_settings
from medspark.features import extract, feature_names
from medspark.planes import decode_mask, decode_plane
from medspark.spark.imaging import run_features, run_preprocess
from medspark.spark.ingest import IngestRequest, run_ingest
from medspark.steps import SEGMENT_KINDS, Pipeline

DAY = dt.date(2026, 2, 1)


@pytest.fixture(scope="module")
def lake(spark, sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("imaging-lake")
    settings = load_settings(None, [f"ingest.ingest_date={DAY.isoformat()}"])
    request = IngestRequest(inputs=[str(sample_dir / "images")], lake=str(root),
                            labels=str(sample_dir / "labels.csv"))
    run_ingest(spark, settings, request, request.validate(settings))
    return root


def ct_planes(lake: Path):
    catalog = read(str(lake / "catalog"))
    return catalog[(catalog.modality == "CT") & catalog.plane_index.notna()]


def test_preprocess_writes_images_and_masks(spark, lake):
    settings = load_settings(None)
    manifest = run_preprocess(spark, settings, str(lake))
    counts = manifest["counts"]
    assert counts["images"] == len(ct_planes(lake)) and counts["errors"] == 0
    assert counts["with_mask"] == counts["images"]
    out = read(manifest["outputs"]["preprocessed"])
    assert set(out.ingest_date.astype(str)) == {DAY.isoformat()}
    row = out.iloc[0].to_dict()
    image = decode_plane(row)
    assert image.shape == (256, 256, 1) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1  # lung window
    masks = read(manifest["outputs"]["masks"])
    assert len(masks) == counts["images"]
    first = masks.iloc[0].to_dict()
    mask = decode_mask(first, "data")
    assert mask.dtype == bool and mask.shape == (first["height"], first["width"]) == (256, 256)
    assert 0.02 < mask.mean() < 0.6  # lungs: a real part of the slice, not all or nothing
    assert Path(manifest["manifest_path"]).is_file()
    # lineage: every output row points at an ingested image and keeps its pseudonyms/labels
    catalog = ct_planes(lake).set_index("image_id")
    assert set(out.source_image_id) == set(catalog.index)
    assert out.patient_pseudo_id.notna().all() and out.label.notna().any()


def test_features_match_the_plain_function(spark, lake):
    settings = load_settings(None)
    manifest = run_features(spark, settings, str(lake))
    assert manifest["counts"]["errors"] == 0
    features = read(manifest["outputs"]["features"])
    names = feature_names()
    assert len(names) == manifest["n_features"] and set(names) <= set(features.columns)
    assert len(features) == len(ct_planes(lake))
    assert "data" not in features.columns
    # recompute one plane by hand: raw HU from pixels/, lung mask from the same segment steps
    row = features.iloc[len(features) // 2]
    pixels = read(str(lake / "pixels")).set_index("image_id").loc[row.image_id].to_dict()
    image = decode_plane(pixels)[..., 0]
    segment = Pipeline.from_config(settings.imaging.segment, kinds=SEGMENT_KINDS)
    _, _, mask = segment.apply(image, tuple(row.pixel_spacing_mm))
    want = extract(image, mask, tuple(row.pixel_spacing_mm), **settings.features.settings)
    got = row[names].astype(float).to_numpy()
    np.testing.assert_allclose(got, [want[n] for n in names], rtol=1e-10, equal_nan=True)
    assert np.asarray(row.features.toArray() if hasattr(row.features, "toArray")
                      else row.features["values"]).size == len(names)
    # a re-run finds every plane done for this feature set: it computes and commits nothing
    again = run_features(spark, settings, str(lake), [DAY])
    assert again["counts"]["rows"] == 0
    assert again["outputs"]["features"]["version"] is None
    assert len(read(manifest["outputs"]["features"])) == len(features)


def test_features_on_preprocessed_images(spark, lake):
    settings = load_settings(None, ["features.source=preprocessed",
                                    "features.families=[firstorder, glcm]"])
    run_preprocess(spark, settings, str(lake))
    manifest = run_features(spark, settings, str(lake))
    features = read(manifest["outputs"]["features"])
    assert len(features) == len(ct_planes(lake)) and manifest["n_features"] == 42
    assert features.firstorder_Maximum.max() <= 1.0  # windowed [0, 1] intensities


def test_missing_inputs_are_config_errors(spark, tmp_path, lake):
    with pytest.raises(ConfigError, match="run `medspark ingest` first"):
        run_preprocess(spark, load_settings(None), str(tmp_path / "empty"))
    settings = load_settings(None, ["features.source=preprocessed",
                                    "imaging.preprocess=[{step: flip, axis: vertical}]"])
    with pytest.raises(ConfigError, match="run `medspark preprocess`"):
        run_features(spark, settings, str(lake))

