"""List the input files of a run as a small DataFrame (path, size, mtime, relpath).

Local inputs are listed by the driver itself (`list_local_files`: a streamed directory walk
into a Parquet file, microseconds per file). Any other URI the Spark installation supports is
listed by Spark's own file index (`list_files`, directories recursive, globs expanded); file
contents are not read there: Spark's `binaryFile` source only opens a file when its `content`
column is selected. Spark's file sources skip zero-byte files, so on that path those are listed
separately (`list_empty_files`) rather than silently lost.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError
from medspark.uris import is_local, local_path, uri_scheme

GLOB_CHARS = set("*?[{")


@dataclass(frozen=True)
class InputSpec:
    """One `--input`: the URI Spark loads and the root that relative paths start from."""

    uri: str
    root: str


def _to_uri(path: str) -> str:
    return "file:" + os.path.abspath(local_path(path)) if is_local(path) else path.rstrip("/")


# URI schemes of Hadoop-compatible filesystems Spark installations provide (with the matching
# connector on the classpath); anything else is a typo or a filesystem medspark cannot list.
HADOOP_SCHEMES = ("hdfs", "webhdfs", "swebhdfs", "viewfs", "har", "s3a", "s3", "s3n", "gs",
                  "abfs", "abfss", "wasb", "wasbs", "adl", "oss", "cos", "cosn", "obs", "ofs",
                  "o3fs", "alluxio", "jfs", "dbfs", "maprfs", "ftp", "sftp", "http", "https")


def check_scheme(text: str) -> None:
    """ConfigError (before Spark starts) for an input whose scheme no filesystem handles."""
    scheme = uri_scheme(text)
    if scheme and scheme != "file" and scheme not in HADOOP_SCHEMES:
        raise ConfigError(
            f"input {text!r}: no filesystem handles the URI scheme {scheme!r}; use a local "
            f"path, file:, or a Hadoop filesystem scheme ({', '.join(HADOOP_SCHEMES[:12])}, "
            "...) whose connector the Spark installation has")


def check_scheme_supported(spark: SparkSession, uri: str) -> None:
    """ConfigError when this Spark installation has no Hadoop FileSystem for `uri`'s scheme
    (its connector jar is missing), instead of a Java stack trace from the listing."""
    scheme = uri_scheme(uri)
    if not scheme or scheme == "file":
        return
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, conf)
    except Exception as e:  # noqa: BLE001 - UnsupportedFileSystemException / ClassNotFound
        raise ConfigError(
            f"input {uri!r}: this Spark installation has no filesystem for the URI scheme "
            f"{scheme!r} ({str(e).splitlines()[0][:160]}); add its Hadoop connector to the "
            "classpath (e.g. --packages or --jars) or copy the files somewhere readable"
        ) from None


def resolve_input(text: str) -> InputSpec:
    """Validate one input (before Spark starts, for local paths) and find its root."""
    check_scheme(text)
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
    cols.append(F.lit(None).cast("string").alias("problem"))
    if with_content:
        cols.append(F.col("content"))
    listed = _with_relpath(df.select(*cols), spec.root)
    empty = list_empty_files(spark, spec, with_content)
    return listed if empty is None else listed.unionByName(empty)


def _hidden(name: str) -> bool:
    """Spark's file-source rule (`shouldFilterOutPathName`): names starting with '.' or with
    '_' (unless they hold '=', a partition directory) and in-flight `._COPYING_` copies are not
    data."""
    return (name.startswith(".") or (name.startswith("_") and "=" not in name)
            or name.endswith("._COPYING_"))


def _mtime_ms(path: str) -> int:
    """Modification time in ms, as Spark's binaryFile source reports it (incremental runs
    compare path, size and mtime)."""
    return os.stat(path).st_mtime_ns // 1_000_000


def _walk(root: str) -> Iterator[str]:
    """Files under a directory, recursively, skipping hidden names; symlinked directories are
    followed (as Hadoop's local file system does) but never twice."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(files):
            if not _hidden(name):
                yield os.path.join(folder, name)


def representable(path: str) -> tuple[str, str | None]:
    """(the path as text, None) for a name Spark and Parquet can carry (any character but
    NUL, including newline and tab), else (a readable, unique escaped form, the reason): a
    name that is not valid UTF-8 arrives from the OS as lone surrogates, which no UTF-8
    string column can hold."""
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        return shown, ("unrepresentable_file_name: the file name is not valid UTF-8 "
                       "(shown with \\x escapes); rename it to ingest it")


def local_files(pattern: str) -> Iterator[tuple[str, int | None, int | None]]:
    """(absolute path, size, mtime ms) of every file a local input names, streamed: a file, a
    directory (recursively) or a glob (each match a file or a directory)."""
    roots = sorted(globlib.iglob(pattern)) if set(pattern) & GLOB_CHARS else [pattern]
    for root in roots:
        if os.path.isfile(root):
            if _hidden(os.path.basename(root)):
                continue
            paths: Iterator[str] = iter([root])
        else:
            paths = _walk(root)
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:  # vanished, or a dangling link: the worker's read reports it
                yield os.path.abspath(path), None, None
                continue
            yield os.path.abspath(path), st.st_size, st.st_mtime_ns // 1_000_000


def _local_empty_files(pattern: str) -> Iterator[tuple[str, int]]:
    for path, size, mtime in local_files(pattern):
        if size == 0:
            yield path, mtime


def python_listable(spec: InputSpec) -> bool:
    """True when the driver can list an input itself: a local path or a glob Python's `glob`
    reads as Hadoop does (no `{a,b}` alternatives, no `[^...]` classes)."""
    return is_local(spec.uri) and "{" not in spec.uri and "[^" not in spec.uri


LISTING_ARROW = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("size", pa.int64()),
    pa.field("mtime", pa.int64()),
    pa.field("relpath", pa.string()),
    pa.field("problem", pa.string()),  # `<error_class>: <message>`: quarantined unopened
])


def list_local_files(spark: SparkSession, spec: InputSpec, folder: str,
                     batch_rows: int = 50_000) -> tuple[DataFrame, int]:
    """List a local input in the driver, streamed into a Parquet file under `folder`, and read
    it back as the listing DataFrame.

    A directory walk costs microseconds per file where Spark's `binaryFile` index costs two
    distributed jobs; streaming in batches keeps the driver's memory flat however many files
    there are. Zero-byte files are listed like any other. Returns the frame and its row count.
    """
    prefix = local_path(spec.root).rstrip("/") + "/"
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, f"listing-{len(os.listdir(folder)):04d}.parquet")
    with pq.ParquetWriter(out, LISTING_ARROW) as writer:
        batch: list[tuple[str, int | None, int | None, str | None, str | None]] = []
        count = 0
        for path, size, mtime in local_files(local_path(spec.uri)):
            count += 1
            rel = path[len(prefix):] if path.startswith(prefix) else None
            path, problem = representable(path)
            if problem and rel is not None:
                rel = representable(rel)[0]
            batch.append(("file:" + path, size, mtime, rel, problem))
            if len(batch) >= batch_rows:
                writer.write_table(_listing_table(batch))
                batch = []
        writer.write_table(_listing_table(batch))
    return spark.read.schema(LISTING_SCHEMA).parquet("file:" + out), count


LISTING_SCHEMA = "path string, size long, mtime long, relpath string, problem string"


def _listing_table(batch: list[tuple]) -> pa.Table:
    columns = list(zip(*batch, strict=True)) if batch else [[] for _ in LISTING_ARROW]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, LISTING_ARROW,
                                                                           strict=True)],
                                schema=LISTING_ARROW)


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
    schema = "path string, size long, mtime long, problem string" + (
        ", content binary" if with_content else "")
    rows = [(p, 0, t, None, b"") if with_content else (p, 0, t, None)
            for p, t in sorted(set(paths))]
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
        F.lit(None).cast("string").alias("problem"),
    )
    return _with_relpath(df, base)
