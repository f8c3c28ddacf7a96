"""List the input files of a run as a small DataFrame (path, size, mtime, relpath).

Directories are read recursively and globs expanded by Spark's own file index, so any URI the
Spark installation supports works. File contents are not read here: Spark's `binaryFile` source
only opens a file when its `content` column is selected.
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError
from medspark.lake import is_local, local_path

GLOB_CHARS = set("*?[{")


@dataclass(frozen=True)
class InputSpec:
    """One `--input`: the URI Spark loads and the root that relative paths start from."""

    uri: str
    root: str


def _to_uri(path: str) -> str:
    return "file:" + os.path.abspath(local_path(path)) if is_local(path) else path.rstrip("/")


def resolve_input(text: str) -> InputSpec:
    """Validate one input (before Spark starts, for local paths) and find its root."""
    if is_local(text):
        path = local_path(text)
        has_glob = any(c in path for c in GLOB_CHARS)
        if has_glob:
            if not globlib.glob(path, recursive=True):
                raise ConfigError(f"input glob matches nothing: {text}")
            prefix = path.split("*")[0].split("?")[0].split("[")[0].split("{")[0]
            root = prefix if prefix.endswith("/") else os.path.dirname(prefix)
            return InputSpec(_to_uri(path), _to_uri(root or "."))
        if not os.path.exists(path):
            raise ConfigError(f"input not found: {text}")
        root = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        return InputSpec(_to_uri(path), _to_uri(root))
    parts = text.rstrip("/").split("/")
    first_glob = next((i for i, p in enumerate(parts) if set(p) & GLOB_CHARS), None)
    root = "/".join(parts[:first_glob]) if first_glob is not None else text.rstrip("/")
    return InputSpec(text.rstrip("/"), root)


def _with_relpath(df: DataFrame, root: str) -> DataFrame:
    prefix = root.rstrip("/") + "/"
    return df.withColumn(
        "relpath",
        F.when(F.col("path").startswith(prefix), F.expr(f"substring(path, {len(prefix) + 1})")),
    )


def list_files(spark: SparkSession, spec: InputSpec, with_content: bool = False) -> DataFrame:
    """Files under one input; `content` only when the JVM should ship the bytes."""
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    df = reader.load(spec.uri)
    cols = [
        F.col("path"),
        F.col("length").alias("size"),
        (F.unix_millis(F.col("modificationTime"))).alias("mtime"),
    ]
    if with_content:
        cols.append(F.col("content"))
    return _with_relpath(df.select(*cols), spec.root)


def list_from_file(spark: SparkSession, list_file: str) -> DataFrame:
    """Paths named one per line in a text file (blank lines and '#' comments skipped).

    Relative entries resolve against the list file's directory; size and mtime are filled in
    by the worker that reads the file, and a missing file becomes a quarantine row.
    """
    if is_local(list_file) and not os.path.isfile(local_path(list_file)):
        raise ConfigError(f"input list not found: {list_file}")
    base = _to_uri(os.path.dirname(os.path.abspath(local_path(list_file)))) \
        if is_local(list_file) else list_file.rsplit("/", 1)[0]
    lines = spark.read.text(_to_uri(list_file)).select(F.trim("value").alias("entry"))
    lines = lines.where((F.col("entry") != "") & ~F.col("entry").startswith("#"))
    path = (
        F.when(F.col("entry").rlike(r"^[A-Za-z][A-Za-z0-9+.-]*:"), F.col("entry"))
        .when(F.col("entry").startswith("/"), F.concat(F.lit("file:"), F.col("entry")))
        .otherwise(F.concat(F.lit(base + "/"), F.regexp_replace("entry", r"^(\./)+", "")))
    )
    df = lines.select(
        path.alias("path"),
        F.lit(None).cast("long").alias("size"),
        F.lit(None).cast("long").alias("mtime"),
    )
    return _with_relpath(df, base)
