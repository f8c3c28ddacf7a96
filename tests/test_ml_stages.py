"""medspark stages inside ordinary pyspark.ml Pipelines: transform, compose, save/load."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler

import medspark.ml.stages
from medspark.features import MAX_MATRIX_BYTES, extract, feature_names
from medspark.ml.stages import FeatureExtractor, ImagePreprocessor, Segmenter
from medspark.planes import decode_mask, decode_plane, encode_plane


def ct_like(seed: int, lesion: bool) -> np.ndarray:
    """A 64x64 int16 'lung' slice in HU: dark field, a bright blob when `lesion`."""
    rng = np.random.default_rng(seed)
    img = np.full((64, 64), -850, np.int16) + rng.normal(0, 20, (64, 64)).astype(np.int16)
    img[:4] = 40  # a strip of soft tissue
    if lesion:
        yy, xx = np.mgrid[:64, :64]
        img[(yy - 32) ** 2 + (xx - 30) ** 2 < 36] = 45
    return img


@pytest.fixture(scope="module")
def planes(spark):
    rows = []
    for i in range(12):
        plane = encode_plane(ct_like(i, lesion=i % 2 == 1))
        rows.append({"image_id": f"img{i:02d}", **plane, "pixel_spacing_mm": [0.8, 0.8],
                     "label": float(i % 2), "patient": f"p{i // 2}"})
    return spark.createDataFrame(rows)


def test_preprocessor_runs_chain_and_augments(planes):
    stage = ImagePreprocessor(
        segment=[{"step": "hu_range", "lower": -1000, "upper": -500}],
        preprocess=[{"step": "window", "preset": "lung"}, {"step": "resize", "size": 32}],
        augment={"n_copies": 2, "seed": 3})
    out = stage.transform(planes).toPandas()
    assert len(out) == 36
    originals = out[out.augment_index == 0]
    assert (originals.image_id == originals.source_image_id).all()
    assert out.image_id.is_unique and out.pipeline_hash.nunique() == 1
    row = originals.iloc[0].to_dict()
    image = decode_plane(row)
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert row["pixel_spacing_mm"].tolist() == pytest.approx([1.6, 1.6])
    mask = decode_mask(row)
    assert mask.shape == (32, 32) and 0 < mask.mean() < 1
    # the same config and input give the same augmented copies
    again = stage.transform(planes).toPandas().set_index("image_id")
    assert again.loc[out.image_id, "data"].tolist() == out.data.tolist()


def test_bad_step_fails_at_construction_and_bad_image_is_a_row(planes, spark):
    with pytest.raises(ValueError, match="resise"):
        ImagePreprocessor(preprocess=[{"step": "resise", "size": 3}])
    stage = ImagePreprocessor(preprocess=[{"step": "zscore", "within_mask": True}])
    out = stage.transform(planes).toPandas()  # no mask: every row fails, the job does not
    assert out.preprocess_error.str.contains("zscore").all() and out.data.isna().all()


def test_feature_extractor_matches_plain_function(planes):
    seg = Segmenter(steps=[{"step": "hu_range", "lower": -100, "upper": 200}])
    fx = FeatureExtractor(families=["firstorder", "glcm"], settings={"binWidth": 10},
                          dropPixels=False)
    out = fx.transform(seg.transform(planes)).toPandas()
    names = feature_names(["firstorder", "glcm"])
    assert list(out.columns[-len(names) - 3:-3]) == names
    row = out.iloc[3].to_dict()
    want = extract(decode_plane(row)[..., 0], decode_mask(row), (0.8, 0.8),
                   families=["firstorder", "glcm"], binWidth=10)
    for name in names:
        np.testing.assert_allclose(row[name], want[name], rtol=1e-12, equal_nan=True)
    assert row["features"].size == len(names)
    assert out.feature_error.isna().all()
    assert all(len(w) == 0 for w in out.feature_warnings)


def test_stages_compose_with_mllib_and_round_trip(planes, tmp_path):
    fx = FeatureExtractor(families=["firstorder"], outputCol="radiomics")
    pipeline = Pipeline(stages=[
        Segmenter(steps=[{"step": "hu_range", "lower": -1000, "upper": 200}]),
        fx,
        VectorAssembler(inputCols=["radiomics"], outputCol="features", handleInvalid="keep"),
        LogisticRegression(labelCol="label", maxIter=50),
    ])
    model = pipeline.fit(planes)
    scores = model.transform(planes).select("image_id", "probability").toPandas()
    path = str(tmp_path / "model")
    model.save(path)
    loaded = PipelineModel.load(path)
    again = loaded.transform(planes).select("image_id", "probability").toPandas()
    assert [v.toArray().tolist() for v in scores.probability] == [
        v.toArray().tolist() for v in again.probability]
    restored = loaded.stages[1]
    assert isinstance(restored, FeatureExtractor)
    assert restored.getOrDefault("outputCol") == "radiomics"
    assert restored.featureNames() == fx.featureNames()


def test_each_stage_saves_and_loads(tmp_path):
    stages = [ImagePreprocessor(preprocess=[{"step": "flip", "axis": "horizontal"}],
                                augment={"n_copies": 1}),
              Segmenter(steps=["otsu"], maskSource="otsu"),
              FeatureExtractor(families=["shape2D"], settings={"binCount": 16})]
    for i, stage in enumerate(stages):
        path = str(tmp_path / f"s{i}")
        stage.save(path)
        loaded = type(stage).load(path)
        assert {p.name: v for p, v in loaded.extractParamMap().items()} == {
            p.name: v for p, v in stage.extractParamMap().items()}


def test_stages_saved_before_the_column_params_still_load(spark):
    """Stages saved by medspark before the column params and maxMatrixBytes existed."""
    saved = Path(__file__).parent / "data" / "saved_stages_v1"
    pre = ImagePreprocessor.load(str(saved / "image_preprocessor"))
    assert pre.getPreprocess() == '[{"axis": "horizontal", "step": "flip"}]'
    assert pre.config().augment.n_copies == 1
    seg = Segmenter.load(str(saved / "segmenter"))
    assert seg.getMaskSource() == "hu" and seg.getMaskCol() == "mask"
    fx = FeatureExtractor.load(str(saved / "feature_extractor"))
    assert fx.getOutputCol() == "radiomics" and fx.getDropPixels() is False
    assert fx.getMaxMatrixBytes() == MAX_MATRIX_BYTES and fx.getImageCol() == "data"
    assert fx.featureNames() == feature_names(["firstorder", "glcm"])


def test_only_the_params_passed_are_set():
    fx = FeatureExtractor(families=["shape2D"], maskCol=None)
    assert fx.isSet(fx.families) and not fx.isSet(fx.maskCol) and not fx.isSet(fx.settings)
    fx.setParams(useMask=False)
    assert fx.isSet(fx.families) and fx.getUseMask() is False
    with pytest.raises(ValueError, match="max_matrix_bytes"):
        fx.setMaxMatrixBytes(0)
    with pytest.raises(ValueError, match="resise"):
        Segmenter().setSteps([{"step": "resise"}])


def test_columns_are_params(planes):
    seg = Segmenter(steps=[{"step": "hu_range", "lower": -100, "upper": 200}], maskCol="roi")
    fx = FeatureExtractor(families=["firstorder"], imageCol="pixels", maskCol="roi",
                          spacingCol="spacing", dropPixels=False)
    renamed = planes.withColumnRenamed("data", "pixels") \
        .withColumnRenamed("pixel_spacing_mm", "spacing")
    segmented = seg.setImageCol("pixels").setSpacingCol("spacing").transform(renamed)
    row = fx.transform(segmented).where("image_id = 'img03'").first().asDict()
    want = extract(decode_plane({**row, "data": row["pixels"]})[..., 0],
                   decode_mask(row, "roi"), (0.8, 0.8), families=["firstorder"])
    assert decode_mask(row, "roi").any()
    assert row["firstorder_Mean"] == pytest.approx(want["firstorder_Mean"], rel=1e-12)
    dropped = fx.setDropPixels(True).transform(segmented).columns  # the plan: no job
    assert "pixels" not in dropped and "roi" not in dropped and "firstorder_Mean" in dropped


def test_docstring_examples_run(spark, tmp_path):
    result = doctest.testmod(medspark.ml.stages, extraglobs={"spark": spark,
                                                             "temp_path": str(tmp_path)},
                             optionflags=doctest.ELLIPSIS, report=False)
    assert result.attempted >= 18 and result.failed == 0
