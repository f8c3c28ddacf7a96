"""Set-up at the start of every Python-worker task (pure Python: no Spark import here).

pyspark's worker daemon runs a full `gc.collect()` after each task of a reused worker. With
pydicom, pandas, pyarrow and scikit-image imported that walks about 100k long-lived objects,
~80 ms per task, and every automatic full collection during the task walks them again.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Move every object alive now (modules, caches: nothing of the task to come) to the
    collector's permanent generation, so the collections of this task and the daemon's one
    after it only walk what the task itself allocates.

    Safe at a task's start: the previous task's garbage was collected by the daemon, and a frozen
    object is only kept, never corrupted. Cost: a list splice, microseconds.
    """
    gc.freeze()
