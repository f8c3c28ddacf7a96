"""List the input files of a run as a small DataFrame (path, size, mtime, relpath).

Directories are read recursively and globs expanded by Spark's own file index, so any URI the
Spark installation supports works. File contents are not read here: Spark's `binaryFile` source
only opens a file when its `content` column is selected. Spark's file sources skip zero-byte
files, so those are listed separately (`list_empty_files`) rather than silently lost.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterator
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
    listed = _with_relpath(df.select(*cols), spec.root)
    empty = list_empty_files(spark, spec, with_content)
    return listed if empty is None else listed.unionByName(empty)


def _hidden(name: str) -> bool:
    """Hadoop's file-source convention: names starting with '.' or '_' are not data."""
    return name.startswith((".", "_"))


def _mtime_ms(path: str) -> int:
    """Modification time in ms, as Spark's binaryFile source reports it (incremental runs
    compare path, size and mtime)."""
    return os.stat(path).st_mtime_ns // 1_000_000


def _local_empty_files(pattern: str) -> Iterator[tuple[str, int]]:
    roots = globlib.iglob(pattern, recursive=True) if set(pattern) & GLOB_CHARS else [pattern]
    for root in roots:
        if os.path.isfile(root):
            if os.path.getsize(root) == 0 and not _hidden(os.path.basename(root)):
                yield os.path.abspath(root), _mtime_ms(root)
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            for name in files:
                path = os.path.join(folder, name)
                if not _hidden(name) and os.path.getsize(path) == 0:
                    yield os.path.abspath(path), _mtime_ms(path)


def _remote_empty_files(spark: SparkSession, uri: str) -> Iterator[tuple[str, int]]:
    """Zero-length files under a Hadoop URI, listed by the JVM's Hadoop FileSystem."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(conf)
    for status in fs.globStatus(path) or []:
        it = fs.listFiles(status.getPath(), True)
        while it.hasNext():
            st = it.next()
            if st.getLen() == 0 and not _hidden(st.getPath().getName()):
                yield st.getPath().toString(), st.getModificationTime()


def list_empty_files(spark: SparkSession, spec: InputSpec, with_content: bool = False
                     ) -> DataFrame | None:
    """Zero-byte files under one input, which Spark's file sources silently skip.

    They must still reach quarantine (`empty_file`), so they are listed apart: with a streaming
    directory walk for local paths, with the Hadoop FileSystem API otherwise.
    """
    if is_local(spec.uri):
        paths = [("file:" + p, t) for p, t in _local_empty_files(local_path(spec.uri))]
    else:
        paths = list(_remote_empty_files(spark, spec.uri))
    if not paths:
        return None
    schema = "path string, size long, mtime long" + (", content binary" if with_content else "")
    rows = [(p, 0, t, b"") if with_content else (p, 0, t) for p, t in sorted(set(paths))]
    return _with_relpath(spark.createDataFrame(rows, schema), spec.root)


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
