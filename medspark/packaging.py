"""What a cluster's `spark-submit` needs of medspark: `python -m medspark.packaging DIR` writes
`DIR/medspark.zip` for `--py-files` (the package's modules and data files; the executors
import medspark from it) beside the wheel `make dist` builds for driver-side installs.

    spark-submit --master spark://HOST:7077 --py-files dist/medspark.zip \\
        jobs/nightly.py --input /exports/today --lake /data/lake

The executors still need medspark's dependencies (pyarrow, pydicom, ...) in their Python:
install the wheel there, or ship a packed virtualenv with `--archives` (docs/cluster.md).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
DATA_SUFFIXES = {".py", ".typed", ".yaml", ".json"}


def build_zip(dest: str | Path) -> Path:
    """medspark/ as a zip of its modules and data files (no caches): the `--py-files`
    archive. Deterministic (sorted, fixed timestamps), so the same code gives the same
    bytes."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and path.suffix in DATA_SUFFIXES \
                    and "__pycache__" not in path.parts:
                info = zipfile.ZipInfo(path.relative_to(PACKAGE.parent).as_posix(),
                                       date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    return dest


if __name__ == "__main__":
    out = build_zip(Path(sys.argv[1] if len(sys.argv) > 1 else "dist") / "medspark.zip")
    print(out)
