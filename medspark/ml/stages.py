"""medspark's imaging stages as `pyspark.ml` Transformers.

Each stage runs its whole per-image chain inside one `mapInPandas` call per Arrow batch (pixels
are decoded once per stage, not once per step), keeps every other input column, and persists
with `save()` / `load()` like any MLlib stage. Input rows are plane rows (`medspark.planes`):
`image_id`, `height`, `width`, `channels`, `dtype`, `data`, optional `pixel_spacing_mm` and
`mask`. Columns of Spark map types are not passed through (select them away first).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DoubleType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

RowFn = Callable[[dict[str, Any]], list[dict[str, Any]]]

PLANE_FIELDS = [
    StructField("height", IntegerType()),
    StructField("width", IntegerType()),
    StructField("channels", IntegerType()),
    StructField("dtype", StringType()),
    StructField("data", BinaryType()),
    StructField("pixel_spacing_mm", ArrayType(DoubleType())),
]
MASK_FIELD = StructField("mask", BinaryType())


def _worker_setup() -> None:
    """One OpenCV thread per task (Spark already runs one task per core); long-lived objects
    frozen out of the task's garbage collections (`medspark.worker`)."""
    import cv2

    from medspark.worker import freeze_long_lived

    cv2.setNumThreads(1)
    freeze_long_lived()


def _clean(value: Any, field: StructField) -> Any:
    """pandas NaN for a missing non-floating value -> None (Arrow rejects NaN there)."""
    if isinstance(value, float) and np.isnan(value) and not isinstance(
            field.dataType, DoubleType | FloatType):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def map_rows(df: DataFrame, fn: RowFn, new_fields: list[StructField]) -> DataFrame:
    """Apply `fn` (one input row dict -> output row dicts) over `df` with mapInPandas.

    Output schema: the input columns (those replaced by `new_fields` take the new type) in
    their order, then the new columns.
    """
    replaced = {f.name: f for f in new_fields}
    fields = [replaced.pop(f.name, f) for f in df.schema.fields] + list(replaced.values())
    schema = StructType(fields)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        _worker_setup()
        for batch in batches:
            out: list[dict[str, Any]] = []
            for record in batch.to_dict("records"):
                out.extend(fn(record))
            yield pd.DataFrame({f.name: pd.Series([_clean(r.get(f.name), f) for r in out],
                                                  dtype=object) for f in schema.fields})

    return df.mapInPandas(run, schema)


def _json_param(value: Any, what: str) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what}: not valid JSON: {e}") from None
        return value
    return json.dumps(value, sort_keys=True)


class _Stage(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Shared setter and persistence behaviour."""

    def _set_params(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            if value is not None:
                self._set(**{name: value})


class ImagePreprocessor(_Stage):
    """The `segment` + `preprocess` chain (and optional `augment` copies) of a YAML config.

    Params take the YAML sections as JSON (or Python lists/dicts). Output: the plane columns
    replaced by the processed image, `mask` (from segmentation steps, if any),
    `source_image_id`, `augment_index` (0 = the image itself), `pipeline_hash`, and
    `preprocess_error` (the failing step; then `data` is null).
    """

    segment = Param(Params._dummy(), "segment", "segmentation steps (JSON list)",
                    TypeConverters.toString)
    preprocess = Param(Params._dummy(), "preprocess", "preprocessing steps (JSON list)",
                       TypeConverters.toString)
    augment = Param(Params._dummy(), "augment", "augmentation settings (JSON object or '')",
                    TypeConverters.toString)

    @keyword_only
    def __init__(self, *, segment: Any = None, preprocess: Any = None, augment: Any = None):
        super().__init__()
        self._setDefault(segment="[]", preprocess="[]", augment="")
        self.setParams(segment=segment, preprocess=preprocess, augment=augment)

    @keyword_only
    def setParams(self, *, segment: Any = None, preprocess: Any = None, augment: Any = None):
        self._set_params(
            segment=None if segment is None else _json_param(segment, "segment"),
            preprocess=None if preprocess is None else _json_param(preprocess, "preprocess"),
            augment=None if augment is None else (
                "" if augment in ("", {}) else _json_param(augment, "augment")))
        self.config()  # validate now: a bad step fails at construction, not in a task
        return self

    def config(self):
        """The validated `ProcessingConfig` of this stage's params."""
        from medspark.preprocess import ProcessingConfig

        augment = self.getOrDefault(self.augment)
        return ProcessingConfig(segment=json.loads(self.getOrDefault(self.segment)),
                                preprocess=json.loads(self.getOrDefault(self.preprocess)),
                                augment=json.loads(augment) if augment else None)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        cfg = self.config()
        new = [*PLANE_FIELDS, MASK_FIELD, StructField("source_image_id", StringType()),
               StructField("augment_index", IntegerType()),
               StructField("pipeline_hash", StringType()),
               StructField("preprocess_error", StringType())]
        return map_rows(dataset, _preprocess_fn(cfg), new)


def _preprocess_fn(cfg) -> RowFn:
    from medspark.planes import (
        decode_mask,
        decode_plane,
        derived_id,
        encode_mask,
        encode_plane,
        spacing_of,
    )

    pipeline, digest, augment = cfg.pipeline(), cfg.hash(), cfg.augment

    def fn(rec: dict[str, Any]) -> list[dict[str, Any]]:
        base = {**rec, "source_image_id": rec["image_id"], "augment_index": 0,
                "pipeline_hash": digest, "preprocess_error": None}
        try:
            image, spacing, mask = pipeline.apply(decode_plane(rec), spacing_of(rec),
                                                  decode_mask(rec))
        except Exception as e:  # noqa: BLE001 - one bad image is a row, not a failed job
            return [{**base, "data": None, "mask": None,
                     "preprocess_error": f"{type(e).__name__}: {e}"[:500]}]
        rows = [{**base, **encode_plane(image), "mask": encode_mask(mask),
                 "pixel_spacing_mm": list(spacing) if spacing else None}]
        for copy in range(1, (augment.n_copies if augment else 0) + 1):
            aug = augment.copy_of(image, spacing, rec["image_id"], copy, mask)
            rows.append({**base, **encode_plane(aug.image), "mask": encode_mask(aug.mask),
                         "pixel_spacing_mm": list(aug.spacing) if aug.spacing else None,
                         "image_id": derived_id(rec["image_id"], "augment", digest, copy),
                         "augment_index": copy})
        return rows

    return fn


class Segmenter(_Stage):
    """Segmentation steps only: adds `mask` (uint8 0/1 bytes), `mask_source` and
    `segment_error`; the image is left as it is."""

    steps = Param(Params._dummy(), "steps", "segmentation steps (JSON list)",
                  TypeConverters.toString)
    maskSource = Param(Params._dummy(), "maskSource", "name recorded in mask_source",
                       TypeConverters.toString)

    @keyword_only
    def __init__(self, *, steps: Any = None, maskSource: str | None = None):
        super().__init__()
        self._setDefault(steps="[]", maskSource="segment")
        self.setParams(steps=steps, maskSource=maskSource)

    @keyword_only
    def setParams(self, *, steps: Any = None, maskSource: str | None = None):
        self._set_params(steps=None if steps is None else _json_param(steps, "steps"),
                         maskSource=maskSource)
        self.pipeline()
        return self

    def pipeline(self):
        from medspark.preprocess.pipeline import SEGMENT_KINDS, Pipeline

        return Pipeline.from_config(json.loads(self.getOrDefault(self.steps)),
                                    section="segment", kinds=SEGMENT_KINDS)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from medspark.planes import decode_mask, decode_plane, encode_mask, spacing_of

        pipeline, source = self.pipeline(), self.getOrDefault(self.maskSource)

        def fn(rec: dict[str, Any]) -> list[dict[str, Any]]:
            try:
                _, _, mask = pipeline.apply(decode_plane(rec), spacing_of(rec),
                                            decode_mask(rec))
                return [{**rec, "mask": encode_mask(mask), "mask_source": source,
                         "segment_error": None}]
            except Exception as e:  # noqa: BLE001
                return [{**rec, "mask": None, "mask_source": source,
                         "segment_error": f"{type(e).__name__}: {e}"[:500]}]

        return map_rows(dataset, fn, [MASK_FIELD, StructField("mask_source", StringType()),
                                      StructField("segment_error", StringType())])


class FeatureExtractor(_Stage):
    """pyradiomics-compatible features per plane (within `mask` when present), one double
    column per feature (`firstorder_Entropy`, ...) plus a `features` vector for MLlib.

    `settings` take pyradiomics setting names (JSON object). Colour planes are reduced to
    luminance first. With `dropPixels` (default) the pixel and mask bytes are not kept.
    """

    families = Param(Params._dummy(), "families", "feature families (empty: all)",
                     TypeConverters.toListString)
    settings = Param(Params._dummy(), "settings", "pyradiomics settings (JSON object)",
                     TypeConverters.toString)
    useMask = Param(Params._dummy(), "useMask", "restrict to the mask column when present",
                    TypeConverters.toBoolean)
    outputCol = Param(Params._dummy(), "outputCol", "vector column", TypeConverters.toString)
    dropPixels = Param(Params._dummy(), "dropPixels", "drop data/mask columns",
                       TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, families: list[str] | None = None, settings: Any = None,
                 useMask: bool | None = None, outputCol: str | None = None,
                 dropPixels: bool | None = None):
        super().__init__()
        self._setDefault(families=[], settings="{}", useMask=True, outputCol="features",
                         dropPixels=True)
        self.setParams(families=families, settings=settings, useMask=useMask,
                       outputCol=outputCol, dropPixels=dropPixels)

    @keyword_only
    def setParams(self, *, families: list[str] | None = None, settings: Any = None,
                  useMask: bool | None = None, outputCol: str | None = None,
                  dropPixels: bool | None = None):
        self._set_params(families=families,
                         settings=None if settings is None else _json_param(settings,
                                                                            "settings"),
                         useMask=useMask, outputCol=outputCol, dropPixels=dropPixels)
        self.featureNames()  # validates families and settings
        return self

    def _families(self) -> list[str] | None:
        return list(self.getOrDefault(self.families)) or None

    def _settings(self) -> dict[str, Any]:
        from medspark.features import check_settings

        settings = json.loads(self.getOrDefault(self.settings))
        check_settings(settings)
        return settings

    def featureNames(self) -> list[str]:
        """The feature columns this stage adds, in order."""
        from medspark.features import feature_names

        return feature_names(self._families(), **self._settings())

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from medspark.features import extract
        from medspark.planes import decode_mask, decode_plane, spacing_of

        names, families, settings = self.featureNames(), self._families(), self._settings()
        use_mask = self.getOrDefault(self.useMask) and "mask" in dataset.columns
        vector = self.getOrDefault(self.outputCol)

        def fn(rec: dict[str, Any]) -> list[dict[str, Any]]:
            out = {**rec, "feature_error": None}
            try:
                image = decode_plane(rec)
                plane = image[..., 0] if image.shape[2] == 1 else _luminance(image)
                mask = decode_mask(rec) if use_mask else None
                values = extract(plane, mask, spacing_of(rec) or (1.0, 1.0),
                                 families=families, **settings)
            except Exception as e:  # noqa: BLE001
                values = dict.fromkeys(names, float("nan"))
                out["feature_error"] = f"{type(e).__name__}: {e}"[:500]
            out.update({k: float(values[k]) for k in names})
            return [out]

        new = [StructField(n, DoubleType()) for n in names] + [
            StructField("feature_error", StringType())]
        result = map_rows(dataset, fn, new)  # undefined features arrive as null
        # ML attribute metadata: vector size and feature names, as VectorAssembler writes them
        meta = {"ml_attr": {"attrs": {"numeric": [{"idx": i, "name": n}
                                                  for i, n in enumerate(names)]},
                            "num_attrs": len(names)}}
        # in the vector an undefined feature is NaN (MLlib vectors cannot hold nulls)
        values = F.array(*[F.coalesce(F.col(n), F.lit(float("nan"))) for n in names])
        result = result.withColumn(vector, array_to_vector(values).alias(vector, metadata=meta))
        if self.getOrDefault(self.dropPixels):
            result = result.drop("data", "mask")
        return result


def _luminance(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB(A) plane, as float64."""
    rgb = image[..., :3].astype(np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])
