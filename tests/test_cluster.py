"""A real Spark standalone cluster (one master, one worker, all on 127.0.0.1) running
`spark-submit jobs/ingest.py` with medspark shipped to the executors as `--py-files`.

This is exactly the recipe of docs/cluster.md: zip the package, start the daemons from the
pip-installed pyspark, submit the job, read the lake back with pyarrow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medspark.session import java_major_version

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(java_major_version() is None, reason="no Java: cannot start Spark"),
]

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60
SUBMIT_TIMEOUT_S = 300


def spark_home() -> Path:
    try:
        from pyspark.find_spark_home import _find_spark_home

        return Path(_find_spark_home())
    except Exception:  # pragma: no cover - fall back to the package directory
        import pyspark

        return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tail(path_or_text: Path | str, lines: int = 40) -> str:
    text = path_or_text.read_text(errors="replace") if isinstance(path_or_text, Path) \
        else path_or_text
    return "\n".join(text.splitlines()[-lines:])


def zip_package(dest: Path) -> Path:
    """The `--py-files` archive exactly as `make dist` builds it."""
    from medspark.packaging import build_zip

    return build_zip(dest)


def cluster_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_WORKER_DIR=str(tmp / "work"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_DIRS=str(tmp / "local"),  # driver/executor scratch, fetched --py-files
        PYTHONUNBUFFERED="1",  # driver prints reach the (merged) stdout in order
    )
    # A developer's SPARK_CONF_DIR / master URL must not leak into the test cluster.
    for var in ("SPARK_CONF_DIR", "MASTER", "SPARK_MASTER_HOST", "PYSPARK_SUBMIT_ARGS"):
        env.pop(var, None)
    return env


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


class Cluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.env = cluster_env(tmp)
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        for sub in ("work", "local"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        self.zip = zip_package(tmp / "medspark.zip")

    def daemon(self, name: str, *args: str) -> subprocess.Popen:
        spark_class = spark_home() / "bin" / "spark-class"
        with open(self.logs / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [str(spark_class), *args], env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
            )

    def wait_for(self, what: str, proc: subprocess.Popen, ready, deadline: float) -> None:
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n"
                                   f"{tail(self.logs / f'{what}.log')}")
            if time.time() > deadline:
                raise RuntimeError(f"{what} not ready after {STARTUP_TIMEOUT_S}s:\n"
                                   f"{tail(self.logs / f'{what}.log')}")
            time.sleep(0.25)

    def submit(self, script: Path, *args: str, conf: dict[str, str] | None = None,
               timeout: float = SUBMIT_TIMEOUT_S) -> subprocess.CompletedProcess:
        confs = {
            "spark.pyspark.python": sys.executable,
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.executor.memory": "1g",
            "spark.cores.max": "2",
            **(conf or {}),
        }
        cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", self.url,
               "--py-files", str(self.zip)]
        for key, value in confs.items():
            cmd += ["--conf", f"{key}={value}"]
        cmd += [str(script), *args]
        return subprocess.run(cmd, env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    c = Cluster(tmp)
    procs: list[subprocess.Popen] = []
    try:
        deadline = time.time() + STARTUP_TIMEOUT_S
        master = c.daemon("master", "org.apache.spark.deploy.master.Master",
                          "--host", "127.0.0.1", "--port", str(c.port),
                          "--webui-port", str(free_port()))
        procs.append(master)
        c.wait_for("master", master, lambda: port_open(c.port), deadline)
        worker = c.daemon("worker", "org.apache.spark.deploy.worker.Worker",
                          "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
                          "--webui-port", str(free_port()), "--work-dir", str(tmp / "work"),
                          c.url)
        procs.append(worker)
        worker_log = c.logs / "worker.log"
        c.wait_for("worker", worker, lambda: "Successfully registered with master"
                   in worker_log.read_text(errors="replace"), deadline)
        yield c
    finally:
        for proc in reversed(procs):
            stop(proc)


def check(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, (
        f"{what}: spark-submit exited with {result.returncode}\n"
        f"--- stderr (tail) ---\n{tail(result.stderr, 60)}\n"
        f"--- stdout (tail) ---\n{tail(result.stdout, 20)}"
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from medspark.sample import generate_sample

    out = tmp_path_factory.mktemp("cluster-sample")
    generate_sample(out, patients=2, seed=1)
    return out


def test_executors_import_the_shipped_zip(cluster, tmp_path):
    """Executors import medspark from the --py-files zip, not the driver's source tree."""
    script = tmp_path / "where.py"
    script.write_text(
        "import json, os, sys\n"
        "from pyspark.sql import SparkSession\n"
        "def where(_):\n"
        "    import medspark\n"
        "    return {'file': medspark.__file__, 'cwd': os.getcwd(), 'sys_path': sys.path,\n"
        "            'editable_finder': any('Editable' in repr(f) for f in sys.meta_path)}\n"
        "spark = SparkSession.builder.appName('medspark-where').getOrCreate()\n"
        "sc = spark.sparkContext\n"
        "executors = sc.parallelize(range(2), 2).map(where).collect()\n"
        "print('WHERE ' + json.dumps({'master': sc.master, 'executors': executors,\n"
        "                             'driver': where(None)}))\n"
        "spark.stop()\n"
    )
    result = cluster.submit(script)
    check(result, "where.py")
    line = next(x for x in result.stdout.splitlines() if x.startswith("WHERE "))
    found = json.loads(line[len("WHERE "):])
    assert found["master"] == cluster.url
    assert len(found["executors"]) == 2
    editable_here = any("Editable" in repr(f) for f in sys.meta_path)
    shipped = cluster.zip.read_bytes()
    for ex in found["executors"]:
        # The executor runs in <SPARK_WORKER_DIR>/<app-id>/<executor-id>/, fetches the zip
        # there and PySpark puts "./medspark.zip" on sys.path ahead of site-packages; the
        # editable install's finder (appended to sys.meta_path) is present but never asked.
        assert ex["file"] == "./medspark.zip/medspark/__init__.py", ex
        cwd = Path(ex["cwd"]).resolve()
        assert cwd.parent.parent == (cluster.tmp / "work").resolve(), ex["cwd"]
        assert cwd.parent.name.startswith("app-"), ex["cwd"]
        assert (cwd / "medspark.zip").read_bytes() == shipped
        site = next(i for i, p in enumerate(ex["sys_path"]) if p.endswith("site-packages"))
        assert ex["sys_path"].index("./medspark.zip") < site
        assert ex["editable_finder"] == editable_here
    # The driver too: spark-submit puts the --py-files (its local copy) on the PYTHONPATH.
    driver = Path(found["driver"]["file"])
    assert driver.parts[-3:] == ("medspark.zip", "medspark", "__init__.py"), driver
    assert driver.resolve().is_relative_to((cluster.tmp / "local").resolve()), driver
    assert not driver.is_relative_to(REPO), driver


def manifest_from_stdout(stdout: str) -> dict:
    """The `--json` manifest out of spark-submit's stdout.

    Spark's PythonRunner merges the Python driver's stderr into its stdout, so medspark's log
    lines (and any worker traceback) share the stream with the JSON: take the last top-level
    `{` ... `}` block (json.dumps(indent=2) puts both braces alone on their lines) that parses.
    """
    lines = stdout.splitlines()
    for start in reversed([i for i, line in enumerate(lines) if line == "{"]):
        end = next((i for i in range(start, len(lines)) if lines[i] == "}"), None)
        if end is not None:
            try:
                return json.loads("\n".join(lines[start:end + 1]))
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON manifest on stdout:\n{tail(stdout, 40)}")


def test_ingest_on_standalone_cluster(cluster, sample, tmp_path):
    lake = tmp_path / "lake"
    result = cluster.submit(
        REPO / "jobs" / "ingest.py",
        "--input", str(sample / "images"), "--lake", str(lake),
        "--labels", str(sample / "labels.csv"),
        "--set", "privacy.allow_demo_key=true", "--json",
    )
    check(result, "jobs/ingest.py")
    manifest = manifest_from_stdout(result.stdout)
    run_file = lake / "_runs" / f"{manifest['run_id']}.json"
    assert Path(manifest["manifest_path"]) == run_file
    written = json.loads(run_file.read_text())
    for key in ("run_id", "spark", "counts", "outputs", "config"):
        assert written[key] == manifest[key], key

    assert manifest["spark"]["master"].startswith("spark://127.0.0.1")
    assert manifest["spark"]["master"] == cluster.url
    counts = manifest["counts"]
    rows = counts["rows"]
    assert counts["all_files_accounted"] is True
    assert counts["files_listed"] > 0
    assert counts["files_cataloged"] + counts["files_quarantined"] == counts["files_listed"]
    assert counts["files_quarantined"] > 0, "the sample has broken files"
    assert rows["pixels"] > 0
    assert rows["catalog"] == rows["pixels"] + counts["non_image_objects"]
    assert rows["quarantine"] == counts["files_quarantined"]

    from deltalake import DeltaTable

    tables = {name: DeltaTable(str(lake / name)).to_pyarrow_table()
              for name in ("catalog", "pixels", "quarantine")}
    for name, table in tables.items():
        assert table.num_rows == rows[name], name
        assert manifest["outputs"][name]["version"] == 0, name
    image_ids = tables["pixels"].column("image_id").to_pylist()
    assert len(set(image_ids)) == len(image_ids)


def test_nightly_on_standalone_cluster(cluster, sample, tmp_path):
    """The scheduled command, shipped as `make dist` ships it, on the real cluster: a night and
    its morning report (what a second night and a re-run do is tested in local mode, in
    tests/test_nightly.py)."""
    lake = tmp_path / "lake"
    args = ("--input", str(sample / "images"), "--lake", str(lake), "--model", "none",
            "--config", str(REPO / "conf" / "local.yaml"), "--set", "privacy.allow_demo_key=true",
            "--set", "features.families=[firstorder]", "--set", "nightly.discover=false",
            "--json")
    first = cluster.submit(REPO / "jobs" / "nightly.py", *args, "--date", "2026-07-01",
                           timeout=3 * SUBMIT_TIMEOUT_S)
    check(first, "jobs/nightly.py")
    state = manifest_from_stdout(first.stdout)
    assert state["spark"]["master"] == cluster.url
    assert state["exit_code"] == 0, state["attention"]
    assert [s["status"] for s in state["stages"]] == [
        "ok", "ok", "ok", "ok", "skipped", "skipped", "ok"]
    ingest = next(s for s in state["stages"] if s["name"] == "ingest")
    assert ingest["counts"]["files_cataloged"] + ingest["counts"]["files_quarantined"] == \
        ingest["counts"]["files_listed"] > 0
    assert (lake / "reports" / "2026-07-01" / "index.html").is_file()
