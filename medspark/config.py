"""Validated configuration: YAML files checked by pydantic, with `--set a.b=v` overrides.

Every job loads its settings here before Spark starts, so a typo or a wrong type stops the run
with one message naming the file and the key, not a stack trace from inside a Spark task.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from medspark.deep.config import DeepSettings
from medspark.discover.config import DiscoverSettings
from medspark.models.config import TrainSettings
from medspark.nightly.config import NightlySettings

# conf/local.yaml of the source tree; in an installed package, its copy (package data)
DEFAULT_CONFIG = Path(__file__).resolve().parent / "conf" / "local.yaml"


class ConfigError(ValueError):
    """A configuration problem, reported before any Spark work starts."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SparkSettings(_Strict):
    """How the one SparkSession is built."""

    master: str = Field("local[2]", description="Spark master URL; spark-submit's wins if set")
    app_name: str = "medspark"
    conf: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra spark.* settings passed to the builder"
    )
    pin_python: bool = Field(
        True, description="in local mode, run Python workers with the driver's interpreter"
    )
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "OFF"] = "WARN"
    python_jobs_java_options: str = Field(
        "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        description="local mode: extra driver JVM options for jobs whose work runs in Python "
        "workers (ingest, masks, preprocess, features). There the JVM only orchestrates: the "
        "optimising (C2) JIT would spend seconds of CPU compiling code that never pays back, "
        "and G1's concurrent GC threads CPU, on cores the workers need. Empty: none. "
        "JVM-heavy jobs (train, predict) keep the full JIT and G1.")


class LimitsSettings(_Strict):
    """Resource guards: over a limit, a file goes to quarantine instead of exhausting memory."""

    max_file_bytes: PositiveInt = 2 * 1024**3
    max_pixels_per_plane: PositiveInt = 64 * 1024 * 1024
    max_planes_per_file: PositiveInt = 4096
    read_timeout_s: PositiveFloat = Field(
        120.0, description="longest a worker waits to read one source file (a hung mount or "
        "object store); the file is then quarantined as read_timeout and the job goes on")


class PrivacySettings(_Strict):
    """Pseudonymisation: the key comes from MEDSPARK_PSEUDONYM_KEY, never from a file."""

    allow_demo_key: bool = Field(
        False, description="use the built-in demo key when MEDSPARK_PSEUDONYM_KEY is unset"
    )
    max_shift_days: PositiveInt = 365


class IngestSettings(_Strict):
    """The ingest job."""

    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    read_mode: Literal["auto", "python", "jvm"] = Field(
        "auto",
        description="python: each Python worker opens its files (local paths); jvm: Spark's "
        "binaryFile source ships the bytes (any Hadoop URI); auto: python for local paths",
    )
    files_per_task: PositiveInt = Field(
        128, description="files per Spark task (python mode); at least one task per core"
    )
    incremental: bool = Field(
        True, description="skip files already ingested on an earlier date (same path/size/mtime)"
    )
    ingest_date: dt.date | None = Field(None, description="partition date; default today")
    label_key: (
        Literal["auto", "source_path", "sop_instance_uid", "series_instance_uid",
                "accession_number"]
    ) = "auto"
    pixels_compression: Literal["none", "snappy", "zstd", "lz4", "gzip"] = Field(
        "zstd", description="Parquet codec of pixels/: zstd is both smaller and faster than "
        "snappy on CT pixels (measured: 27% smaller, ~3x less CPU)")
    pixel_writer: Literal["auto", "worker", "spark"] = Field(
        "auto",
        description="worker: Python workers write the catalog/, pixels/ and quarantine/ "
        "Parquet files themselves (staged, published by the driver), so rows never travel "
        "through the JVM; spark: the rows go through Spark's writer (any Hadoop URI); auto: "
        "worker for local lakes",
    )
    batch_bytes: PositiveInt = Field(
        16 * 1024 * 1024, description="pixel bytes per batch a worker writes (one pixels/ "
        "file) or sends back to the JVM; 16 MiB measured cheaper than 32 (fewer page faults)"
    )


class ImagingSettings(_Strict):
    """The image-processing chain (see docs/preprocess.md): `segment` mask steps run on the
    stored pixels (HU for CT), then `preprocess` steps, then optional `augment` copies."""

    segment: list[Any] = Field(default_factory=list)
    preprocess: list[Any] = Field(default_factory=list)
    augment: dict[str, Any] | None = None
    modalities: list[str] = Field(default_factory=list, description="empty: every modality")

    @model_validator(mode="after")
    def _steps_valid(self) -> ImagingSettings:
        self.processing()
        return self

    def processing(self):
        """The validated `ProcessingConfig` (raises ValueError naming the bad step)."""
        from medspark.steps import ProcessingConfig

        return ProcessingConfig(segment=self.segment, preprocess=self.preprocess,
                                augment=self.augment)


class FeatureSettings(_Strict):
    """What `medspark features` computes, and on which pixels and masks."""

    families: list[str] = Field(default_factory=list, description="empty: all families")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="pyradiomics settings: binWidth, distances, ...")
    source: Literal["pixels", "preprocessed"] = Field(
        "pixels", description="pixels: as ingested (HU for CT); preprocessed: the output of "
        "`medspark preprocess` for the current imaging config")
    mask: Literal["none", "segment", "table"] = Field(
        "segment", description="none: whole plane; segment: the imaging.segment steps "
        "(whole plane when there are none); table: masks/source=<mask_source>")
    mask_source: str | None = None
    modalities: list[str] = Field(default_factory=list, description="empty: every modality")
    max_matrix_bytes: PositiveInt = Field(
        256 * 1024**2, description="memory budget of one texture family's grey-level matrices "
        "per plane (= medspark.features.MAX_MATRIX_BYTES); over it (GLCM above ~1600 grey "
        "levels, NGTDM's pairwise features above ~2300 at the default) those features are NaN "
        "and feature_warnings says 'over_matrix_budget: <family> needs N bytes > ...'")

    @model_validator(mode="after")
    def _valid(self) -> FeatureSettings:
        from medspark.features import check_settings, feature_names

        check_settings(self.settings)
        feature_names(self.families or None, **self.settings)
        if self.mask == "table" and not self.mask_source:
            raise ValueError("mask: table needs mask_source")
        return self


class Settings(_Strict):
    """All medspark settings; one YAML file holds any subset of them."""

    spark: SparkSettings = Field(default_factory=SparkSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    discover: DiscoverSettings = Field(default_factory=DiscoverSettings)
    deep: DeepSettings = Field(default_factory=DeepSettings)
    nightly: NightlySettings = Field(default_factory=NightlySettings)


# Sections whose keys themselves contain dots (`--set spark.conf.spark.executor.cores=4`).
MAP_SECTIONS = (("spark", "conf"),)


def _set_path(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    for section in MAP_SECTIONS:
        n = len(section)
        if tuple(parts[:n]) == section and len(parts) > n:
            parts = [*section, ".".join(parts[n:])]
    if not all(parts):
        raise ConfigError(f"{source}: malformed key {dotted!r}")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=v` -> ("a.b", v) with v typed by YAML rules (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. ingest.files_per_task=16")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key!r}")
        elif e["type"] == "value_error":  # a model-level check: the message names the problem
            lines.append(f"{source}: {key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{source}: {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, overrides: list[str] | None = None) -> Settings:
    """Load and validate a YAML file (default `conf/local.yaml`) plus `--set` overrides."""
    cfg_path = Path(path) if path else DEFAULT_CONFIG
    tree: dict[str, Any] = {}
    if path is not None or cfg_path.exists():
        if not cfg_path.is_file():
            raise ConfigError(f"config file not found: {cfg_path}")
        try:
            loaded = yaml.safe_load(cfg_path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{cfg_path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{cfg_path}: top level must be a mapping")
        tree = loaded
    source = str(cfg_path)
    try:
        Settings.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    keys = []
    for text in overrides or []:
        key, value = parse_override(text)
        _set_path(tree, key, value, f"--set {key}")
        keys.append(key)
    try:  # all overrides first: some settings only make sense together
        return Settings.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, f"--set {', '.join(keys)}" if keys else source)
                          ) from None


def settings_dict(settings: Settings) -> dict[str, Any]:
    """JSON-ready settings for run manifests."""
    return settings.model_dump(mode="json")
