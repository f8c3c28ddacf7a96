"""A folder on any filesystem pyarrow can reach: where models and imputers are written and read.

`Folder.at("hdfs://nn/lake/models/m1")`, `Folder.at("file:///lake/models/m1")`,
`Folder.at("/lake/models/m1")`, or `Folder(filesystem, "base/path")` for a filesystem object
(a `SubTreeFileSystem`, an fsspec filesystem wrapped in `PyFileSystem(FSSpecHandler(...))`).
Model files go through it, so a lake on HDFS or an object store holds models like a local one.
`spark_uri` is the folder as Spark's Hadoop writers name it (MLlib pipelines are written by
Spark); a folder on a filesystem object has none.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from medspark.jsonable import dumps
from medspark.uris import is_local, local_path, uri_scheme

# Hadoop scheme -> the scheme pyarrow knows the same store by
PYARROW_SCHEME = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


@dataclass(frozen=True)
class Folder:
    """A directory `path` on `fs`; `uri` is set when it was given as a path or URI."""

    fs: pafs.FileSystem
    path: str
    uri: str | None = None

    @classmethod
    def at(cls, where: str | Path | Folder, filesystem: pafs.FileSystem | None = None
           ) -> Folder:
        """A folder from a local path, a URI, or `(filesystem, path)`."""
        if isinstance(where, Folder):
            return where
        where = str(where)
        if filesystem is not None:
            return cls(filesystem, where.rstrip("/") or "/")
        if is_local(where):
            path = os.path.abspath(local_path(where))
            return cls(pafs.LocalFileSystem(), path, path)
        scheme = uri_scheme(where)
        target = PYARROW_SCHEME.get(scheme)
        fs, path = pafs.FileSystem.from_uri(
            target + where[len(scheme):] if target else where)
        return cls(fs, path.rstrip("/"), where.rstrip("/"))

    # -- names -------------------------------------------------------------------------------
    def child(self, name: str) -> Folder:
        return Folder(self.fs, f"{self.path}/{name}", f"{self.uri}/{name}" if self.uri else None)

    def spark_uri(self) -> str | None:
        """The folder as Spark's writers name it (`file:/...` for a local one)."""
        if self.uri is None:
            return None
        return "file:" + self.uri if self.uri.startswith("/") else self.uri

    def local(self) -> str | None:
        """The local path, for a folder on the local filesystem."""
        return self.path if isinstance(self.fs, pafs.LocalFileSystem) else None

    def __str__(self) -> str:
        return self.uri or f"{self.fs.type_name}:{self.path}"

    # -- files -------------------------------------------------------------------------------
    def exists(self, name: str = "") -> bool:
        info = self.fs.get_file_info(f"{self.path}/{name}".rstrip("/"))
        return info.type != pafs.FileType.NotFound

    def make(self) -> Folder:
        self.fs.create_dir(self.path, recursive=True)
        return self

    def remove(self) -> None:
        """Delete the folder and everything in it (nothing when it does not exist)."""
        if self.exists():
            self.fs.delete_dir(self.path)

    def names(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def write_bytes(self, name: str, data: bytes) -> str:
        self.fs.create_dir(self.path, recursive=True)
        with self.fs.open_output_stream(f"{self.path}/{name}") as out:
            out.write(data)
        return name

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(f"{self.path}/{name}") as src:
            return src.read()

    def write_json(self, name: str, doc: Any) -> str:
        """Strict, indented, key-sorted JSON (NaN written as null)."""
        return self.write_bytes(name, dumps(doc).encode())

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def write_parquet(self, name: str, frame: Any) -> str:
        """A pandas frame as one Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.fs.create_dir(self.path, recursive=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       f"{self.path}/{name}", filesystem=self.fs)
        return name

    def read_parquet(self, name: str) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(f"{self.path}/{name}", filesystem=self.fs).to_pandas()

    def write_pickle(self, name: str, obj: Any) -> str:
        """`obj` as a joblib pickle (numpy arrays stored efficiently)."""
        import joblib

        buf = io.BytesIO()
        joblib.dump(obj, buf)
        return self.write_bytes(name, buf.getvalue())

    def read_pickle(self, name: str) -> Any:
        """A pickle this code wrote (trusted: load only folders you wrote)."""
        import joblib

        return joblib.load(io.BytesIO(self.read_bytes(name)))

    def copy_from_local(self, local_dir: str) -> None:
        """Copy a local directory tree into this folder."""
        for root, _, files in os.walk(local_dir):
            rel = os.path.relpath(root, local_dir)
            target = self if rel == "." else self.child(rel.replace(os.sep, "/"))
            target.make()
            for name in files:
                with open(os.path.join(root, name), "rb") as fh:
                    target.write_bytes(name, fh.read())

    def copy_to_local(self, local_dir: str) -> None:
        """Copy this folder's tree into a local directory."""
        base = self.path.strip("/")
        for info in self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True)):
            rel = info.path.strip("/")[len(base):].lstrip("/")  # some filesystems add a "/"
            target = os.path.join(local_dir, *rel.split("/"))
            if info.type == pafs.FileType.Directory:
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with self.fs.open_input_stream(info.path) as src, open(target, "wb") as out:
                out.write(src.read())
