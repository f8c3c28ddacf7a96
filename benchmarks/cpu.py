"""CPU accounting for the benchmarks (Linux /proc): robust where wall time is not, e.g. on a
machine that other jobs share. Imported by the benchmark scripts as `cpu` (they run with
`benchmarks/` first on sys.path)."""

from __future__ import annotations

import os


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of the children it reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    return stats


def tree_cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds so far of `root` itself, and of its live descendants (and what they
    reaped)."""
    stats = _proc_stats()
    below, todo = 0.0, [c for c, (p, _) in stats.items() if p == root]
    while todo:
        pid = todo.pop()
        below += stats[pid][1]
        todo += [c for c, (p, _) in stats.items() if p == pid]
    return stats.get(root, (0, 0.0))[1], below


def jvm_pid() -> int:
    """The driver JVM: the child of this process that spark-submit started."""
    for pid, (parent, _) in _proc_stats().items():
        if parent == os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if b"SparkSubmit" in fh.read():
                        return pid
            except OSError:
                continue
    raise RuntimeError("driver JVM not found among this process's children")


