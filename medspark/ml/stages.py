"""medspark's imaging stages as `pyspark.ml` Transformers.

Each stage runs its whole per-image chain inside one `mapInPandas` call per Arrow batch (pixels
are decoded once per stage, not once per step), keeps every other input column, and persists
with `save()` / `load()` like any MLlib stage. Input rows are plane rows (`medspark.planes`):
an id, the pixel bytes with `height`, `width`, `channels` and `dtype`, optionally a pixel
spacing and a mask; the id, pixel, spacing and mask columns are params (`idCol`, `imageCol`,
`spacingCol`, `maskCol`, mixins in :mod:`medspark.ml.params`; defaults `image_id`, `data`,
`pixel_spacing_mm`, `mask`). Columns of Spark map types are not passed through (select them
away first).

As in `pyspark.ml`, the constructors and `setParams` take keywords only and set just the
params passed (`None` leaves a param at its default); every param has `getX`/`setX`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasOutputCol
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

from medspark.ml.params import HasIdCol, HasImageCol, HasMaskCol, HasSpacingCol

RowFn = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class PlaneColumns:
    """Where a stage reads and writes the parts of a plane row."""

    image: str = "data"
    mask: str = "mask"
    spacing: str = "pixel_spacing_mm"
    id: str = "image_id"

    @classmethod
    def of(cls, stage: Params) -> PlaneColumns:
        """The columns of ``stage``'s column params (defaults for those it lacks)."""
        names = {"image": "imageCol", "mask": "maskCol", "spacing": "spacingCol", "id": "idCol"}
        return cls(**{field: stage.getOrDefault(param) for field, param in names.items()
                      if stage.hasParam(param)})

    def image_of(self, rec: dict[str, Any]) -> np.ndarray:
        """(height, width, channels) array of a row."""
        from medspark.planes import decode_plane

        return decode_plane(rec if self.image == "data" else {**rec, "data": rec[self.image]})

    def mask_of(self, rec: dict[str, Any]) -> np.ndarray | None:
        from medspark.planes import decode_mask

        return decode_mask(rec, self.mask)

    def spacing_of(self, rec: dict[str, Any]) -> tuple[float, float] | None:
        from medspark.planes import spacing_of

        return spacing_of({"pixel_spacing_mm": rec.get(self.spacing)})

    def encoded(self, image: np.ndarray, spacing: tuple[float, float] | None,
                mask: np.ndarray | None) -> dict[str, Any]:
        """Output columns of a processed image, its spacing and mask."""
        from medspark.planes import encode_mask, encode_plane

        plane = encode_plane(image)
        plane[self.image] = plane.pop("data")
        return {**plane, self.spacing: list(spacing) if spacing else None,
                self.mask: encode_mask(mask)}

    def plane_fields(self) -> list[StructField]:
        """Spark fields of what :meth:`encoded` writes."""
        return [StructField("height", IntegerType()), StructField("width", IntegerType()),
                StructField("channels", IntegerType()), StructField("dtype", StringType()),
                StructField(self.image, BinaryType()),
                StructField(self.spacing, ArrayType(DoubleType())),
                StructField(self.mask, BinaryType())]


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


def _error_text(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:500]


class _Stage(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Shared setter and persistence behaviour."""

    _input_kwargs: dict[str, Any]
    #: params given as JSON text or as Python lists/dicts
    _json_params: tuple[str, ...] = ()

    def _set_passed(self, kwargs: dict[str, Any]) -> Any:
        """Set the params passed (``None``: leave at default); JSON params may be given as
        Python values; then validate."""
        values = {k: v for k, v in kwargs.items() if v is not None}
        for name in self._json_params:
            if name in values:
                values[name] = _json_param(values[name], name)
        self._set(**values)
        self._validate()
        return self

    def _validate(self) -> None:
        """Check the params now, so a bad value fails at construction, not in a task."""


class ImagePreprocessor(_Stage, HasIdCol, HasImageCol, HasMaskCol, HasSpacingCol):
    """The `segment` + `preprocess` chain (and optional `augment` copies) of a YAML config.

    Params take the YAML sections as JSON (or Python lists/dicts). Output: the plane columns
    replaced by the processed image (`imageCol`, geometry, `spacingCol`), `maskCol` (from the
    segmentation steps, if any), `source_image_id`, `augment_index` (0 = the image itself; a
    copy gets a derived `idCol`), `pipeline_hash`, and `preprocess_error` (the failing step;
    then `imageCol` is null).

    >>> import numpy as np
    >>> from medspark.planes import decode_plane, encode_plane
    >>> planes = spark.createDataFrame([{"image_id": "a", "pixel_spacing_mm": [1.0, 1.0],
    ...                                  **encode_plane(np.arange(64.0).reshape(8, 8))}])
    >>> stage = ImagePreprocessor(preprocess=[{"step": "resize", "size": 4}],
    ...                           augment={"n_copies": 1, "seed": 1})
    >>> rows = stage.transform(planes).orderBy("augment_index").collect()
    >>> [(r.augment_index, decode_plane(r.asDict()).shape) for r in rows], rows[0].pixel_spacing_mm
    ([(0, (4, 4, 1)), (1, (4, 4, 1))], [2.0, 2.0])
    >>> stage.setPreprocess([]).save(temp_path + "/preprocessor")
    >>> ImagePreprocessor.load(temp_path + "/preprocessor").getAugment()
    '{"n_copies": 1, "seed": 1}'
    """

    segment: Param[str] = Param(Params._dummy(), "segment", "segmentation steps (JSON list)",
                                TypeConverters.toString)
    preprocess: Param[str] = Param(Params._dummy(), "preprocess",
                                   "preprocessing steps (JSON list)", TypeConverters.toString)
    augment: Param[str] = Param(Params._dummy(), "augment",
                                "augmentation settings (JSON object or '')",
                                TypeConverters.toString)
    _json_params = ("segment", "preprocess")

    @keyword_only
    def __init__(self, *, segment: Any = None, preprocess: Any = None, augment: Any = None,
                 idCol: str | None = None, imageCol: str | None = None,
                 maskCol: str | None = None, spacingCol: str | None = None):
        super().__init__()
        self._setDefault(segment="[]", preprocess="[]", augment="")
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, segment: Any = None, preprocess: Any = None, augment: Any = None,
                  idCol: str | None = None, imageCol: str | None = None,
                  maskCol: str | None = None, spacingCol: str | None = None
                  ) -> ImagePreprocessor:
        """Sets the params passed."""
        kwargs = dict(self._input_kwargs)
        if kwargs.get("augment") is not None:
            kwargs["augment"] = _augment_param(kwargs["augment"])
        return self._set_passed(kwargs)

    def getSegment(self) -> str:
        return self.getOrDefault(self.segment)

    def setSegment(self, value: Any) -> ImagePreprocessor:
        return self._set_passed({"segment": value})

    def getPreprocess(self) -> str:
        return self.getOrDefault(self.preprocess)

    def setPreprocess(self, value: Any) -> ImagePreprocessor:
        return self._set_passed({"preprocess": value})

    def getAugment(self) -> str:
        return self.getOrDefault(self.augment)

    def setAugment(self, value: Any) -> ImagePreprocessor:
        return self._set_passed({"augment": _augment_param(value)})

    def _validate(self) -> None:
        self.config()

    def config(self):
        """The validated `ProcessingConfig` of this stage's params."""
        from medspark.steps import ProcessingConfig

        augment = self.getAugment()
        return ProcessingConfig(segment=json.loads(self.getSegment()),
                                preprocess=json.loads(self.getPreprocess()),
                                augment=json.loads(augment) if augment else None)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        cols = PlaneColumns.of(self)
        new = [*cols.plane_fields(), StructField("source_image_id", StringType()),
               StructField("augment_index", IntegerType()),
               StructField("pipeline_hash", StringType()),
               StructField("preprocess_error", StringType())]
        return map_rows(dataset, _preprocess_fn(self.config(), cols), new)


def _augment_param(value: Any) -> str:
    return "" if value in ("", {}) else _json_param(value, "augment")


def _preprocess_fn(cfg, cols: PlaneColumns) -> RowFn:
    from medspark.planes import derived_id

    pipeline, digest, augment = cfg.pipeline(), cfg.hash(), cfg.augment

    def fn(rec: dict[str, Any]) -> list[dict[str, Any]]:
        image_id = rec[cols.id]
        base = {**rec, "source_image_id": image_id, "augment_index": 0,
                "pipeline_hash": digest, "preprocess_error": None}
        try:
            image, spacing, mask = pipeline.apply(cols.image_of(rec), cols.spacing_of(rec),
                                                  cols.mask_of(rec))
        except Exception as e:  # noqa: BLE001 - one bad image is a row, not a failed job
            return [{**base, cols.image: None, cols.mask: None,
                     "preprocess_error": _error_text(e)}]
        rows = [{**base, **cols.encoded(image, spacing, mask)}]
        for copy in range(1, (augment.n_copies if augment else 0) + 1):
            aug = augment.copy_of(image, spacing, image_id, copy, mask)
            rows.append({**base, **cols.encoded(aug.image, aug.spacing, aug.mask),
                         cols.id: derived_id(image_id, "augment", digest, copy),
                         "augment_index": copy})
        return rows

    return fn


class Segmenter(_Stage, HasImageCol, HasMaskCol, HasSpacingCol):
    """Segmentation steps only: writes `maskCol` (uint8 0/1 bytes; an input mask there is the
    steps' starting mask), `mask_source` and `segment_error`; the image is left as it is.

    >>> import numpy as np
    >>> from medspark.planes import decode_mask, encode_plane
    >>> image = np.zeros((8, 8), np.int16); image[2:6, 2:6] = 100
    >>> planes = spark.createDataFrame([{"image_id": "a", **encode_plane(image)}])
    >>> seg = Segmenter(steps=[{"step": "hu_range", "lower": 50, "upper": 200}])
    >>> row = seg.transform(planes).first()
    >>> int(decode_mask(row.asDict()).sum()), row.mask_source, row.segment_error
    (16, 'segment', None)
    >>> seg.setMaskSource("hu").save(temp_path + "/segmenter")
    >>> Segmenter.load(temp_path + "/segmenter").getMaskSource()
    'hu'
    """

    steps: Param[str] = Param(Params._dummy(), "steps", "segmentation steps (JSON list)",
                              TypeConverters.toString)
    maskSource: Param[str] = Param(Params._dummy(), "maskSource", "name recorded in mask_source",
                                   TypeConverters.toString)
    _json_params = ("steps",)

    @keyword_only
    def __init__(self, *, steps: Any = None, maskSource: str | None = None,
                 imageCol: str | None = None, maskCol: str | None = None,
                 spacingCol: str | None = None):
        super().__init__()
        self._setDefault(steps="[]", maskSource="segment")
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, steps: Any = None, maskSource: str | None = None,
                  imageCol: str | None = None, maskCol: str | None = None,
                  spacingCol: str | None = None) -> Segmenter:
        """Sets the params passed."""
        return self._set_passed(self._input_kwargs)

    def getSteps(self) -> str:
        return self.getOrDefault(self.steps)

    def setSteps(self, value: Any) -> Segmenter:
        return self._set_passed({"steps": value})

    def getMaskSource(self) -> str:
        return self.getOrDefault(self.maskSource)

    def setMaskSource(self, value: str) -> Segmenter:
        return self._set_passed({"maskSource": value})

    def _validate(self) -> None:
        self.pipeline()

    def pipeline(self):
        from medspark.steps import SEGMENT_KINDS, Pipeline

        return Pipeline.from_config(json.loads(self.getSteps()), section="segment",
                                    kinds=SEGMENT_KINDS)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from medspark.planes import encode_mask

        pipeline, source, cols = self.pipeline(), self.getMaskSource(), PlaneColumns.of(self)

        def fn(rec: dict[str, Any]) -> list[dict[str, Any]]:
            try:
                _, _, mask = pipeline.apply(cols.image_of(rec), cols.spacing_of(rec),
                                            cols.mask_of(rec))
                return [{**rec, cols.mask: encode_mask(mask), "mask_source": source,
                         "segment_error": None}]
            except Exception as e:  # noqa: BLE001
                return [{**rec, cols.mask: None, "mask_source": source,
                         "segment_error": _error_text(e)}]

        return map_rows(dataset, fn, [StructField(cols.mask, BinaryType()),
                                      StructField("mask_source", StringType()),
                                      StructField("segment_error", StringType())])


class FeatureExtractor(_Stage, HasImageCol, HasMaskCol, HasSpacingCol, HasOutputCol):
    """pyradiomics-compatible features per plane (within `maskCol` when present), one double
    column per feature (`firstorder_Entropy`, ...), `feature_error`, `feature_warnings` and an
    `outputCol` vector (default `features`) for MLlib.

    `settings` take pyradiomics setting names (JSON object). Colour planes are reduced to
    luminance first. With `dropPixels` (default) the pixel and mask bytes are not kept.
    `feature_error` is the error of a plane whose features all failed; `feature_warnings`
    (array of `<reason>: <detail>`, empty when none) says why some features of an otherwise
    good plane are undefined: `over_matrix_budget: glcm needs N bytes > max_matrix_bytes M`
    when a family's grey-level matrices would exceed `maxMatrixBytes`
    (:mod:`medspark.features.context`). An undefined feature is null in its column and NaN in
    the vector.

    >>> import numpy as np
    >>> from medspark.planes import encode_plane
    >>> image = np.arange(256, dtype=np.int16).reshape(16, 16)
    >>> planes = spark.createDataFrame([{"image_id": "a", **encode_plane(image)}])
    >>> fx = FeatureExtractor(families=["firstorder", "glcm"], settings={"binWidth": 16},
    ...                       maxMatrixBytes=1000)
    >>> row = fx.transform(planes).first()
    >>> row.firstorder_Mean, row.glcm_Contrast, len(row.features), row.feature_error
    (127.5, None, 42, None)
    >>> row.feature_warnings
    ['over_matrix_budget: glcm needs 73728 bytes > max_matrix_bytes 1000']
    >>> fx.setMaxMatrixBytes(1 << 20).save(temp_path + "/extractor")
    >>> FeatureExtractor.load(temp_path + "/extractor").getMaxMatrixBytes()
    1048576
    """

    families: Param[list[str]] = Param(Params._dummy(), "families",
                                       "feature families (empty: the pyradiomics ones)",
                                       TypeConverters.toListString)
    settings: Param[str] = Param(Params._dummy(), "settings",
                                 "pyradiomics settings (JSON object)", TypeConverters.toString)
    useMask: Param[bool] = Param(Params._dummy(), "useMask",
                                 "restrict to the mask column when present",
                                 TypeConverters.toBoolean)
    dropPixels: Param[bool] = Param(Params._dummy(), "dropPixels", "drop the image/mask columns",
                                    TypeConverters.toBoolean)
    maxMatrixBytes: Param[int] = Param(
        Params._dummy(), "maxMatrixBytes",
        "memory budget of one family's grey-level matrices per plane (bytes); over it those "
        "features are NaN with an over_matrix_budget warning", TypeConverters.toInt)
    _json_params = ("settings",)

    @keyword_only
    def __init__(self, *, families: list[str] | None = None, settings: Any = None,
                 useMask: bool | None = None, outputCol: str | None = None,
                 dropPixels: bool | None = None, maxMatrixBytes: int | None = None,
                 imageCol: str | None = None, maskCol: str | None = None,
                 spacingCol: str | None = None):
        super().__init__()
        from medspark.features import MAX_MATRIX_BYTES

        self._setDefault(families=[], settings="{}", useMask=True, outputCol="features",
                         dropPixels=True, maxMatrixBytes=MAX_MATRIX_BYTES)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, families: list[str] | None = None, settings: Any = None,
                  useMask: bool | None = None, outputCol: str | None = None,
                  dropPixels: bool | None = None, maxMatrixBytes: int | None = None,
                  imageCol: str | None = None, maskCol: str | None = None,
                  spacingCol: str | None = None) -> FeatureExtractor:
        """Sets the params passed."""
        return self._set_passed(self._input_kwargs)

    def getFamilies(self) -> list[str]:
        return self.getOrDefault(self.families)

    def setFamilies(self, value: list[str]) -> FeatureExtractor:
        return self._set_passed({"families": value})

    def getSettings(self) -> str:
        return self.getOrDefault(self.settings)

    def setSettings(self, value: Any) -> FeatureExtractor:
        return self._set_passed({"settings": value})

    def getUseMask(self) -> bool:
        return self.getOrDefault(self.useMask)

    def setUseMask(self, value: bool) -> FeatureExtractor:
        return self._set_passed({"useMask": value})

    def getDropPixels(self) -> bool:
        return self.getOrDefault(self.dropPixels)

    def setDropPixels(self, value: bool) -> FeatureExtractor:
        return self._set_passed({"dropPixels": value})

    def getMaxMatrixBytes(self) -> int:
        return self.getOrDefault(self.maxMatrixBytes)

    def setMaxMatrixBytes(self, value: int) -> FeatureExtractor:
        return self._set_passed({"maxMatrixBytes": value})

    def setOutputCol(self, value: str) -> FeatureExtractor:
        return self._set_passed({"outputCol": value})

    def _validate(self) -> None:
        from medspark.features.context import check_budget

        self.featureNames()  # validates families and settings
        check_budget(self.getMaxMatrixBytes())

    def _families(self) -> list[str] | None:
        return list(self.getFamilies()) or None

    def _settings(self) -> dict[str, Any]:
        from medspark.features import check_settings

        settings = json.loads(self.getSettings())
        check_settings(settings)
        return settings

    def featureNames(self) -> list[str]:
        """The feature columns this stage adds, in order."""
        from medspark.features import feature_names

        return feature_names(self._families(), **self._settings())

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from medspark.features import extract_result

        names, families, settings = self.featureNames(), self._families(), self._settings()
        cols, budget = PlaneColumns.of(self), self.getMaxMatrixBytes()
        use_mask = self.getUseMask() and cols.mask in dataset.columns
        vector = self.getOutputCol()

        def fn(rec: dict[str, Any]) -> list[dict[str, Any]]:
            out = {**rec, "feature_error": None, "feature_warnings": []}
            try:
                image = cols.image_of(rec)
                plane = image[..., 0] if image.shape[2] == 1 else _luminance(image)
                result = extract_result(plane, cols.mask_of(rec) if use_mask else None,
                                        cols.spacing_of(rec) or (1.0, 1.0), families=families,
                                        max_matrix_bytes=budget, **settings)
                values, out["feature_warnings"] = result.values, list(result.warnings)
            except Exception as e:  # noqa: BLE001
                values = dict.fromkeys(names, float("nan"))
                out["feature_error"] = _error_text(e)
            out.update({k: float(values[k]) for k in names})
            return [out]

        new = [StructField(n, DoubleType()) for n in names] + [
            StructField("feature_error", StringType()),
            StructField("feature_warnings", ArrayType(StringType()))]
        result = map_rows(dataset, fn, new)  # undefined features arrive as null
        # ML attribute metadata: vector size and feature names, as VectorAssembler writes them
        meta = {"ml_attr": {"attrs": {"numeric": [{"idx": i, "name": n}
                                                  for i, n in enumerate(names)]},
                            "num_attrs": len(names)}}
        # in the vector an undefined feature is NaN (MLlib vectors cannot hold nulls)
        values = F.array(*[F.coalesce(F.col(n), F.lit(float("nan"))) for n in names])
        result = result.withColumn(vector, array_to_vector(values).alias(vector, metadata=meta))
        if self.getDropPixels():
            result = result.drop(cols.image, cols.mask)
        return result


def _luminance(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB(A) plane, as float64."""
    rgb = image[..., :3].astype(np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])
