"""deploy/: the cron/systemd wrapper's retry policy, the unit files, and the Airflow DAG.

The DAG is loaded by Airflow itself (apache-airflow 3.3.2 in a separate virtualenv, made once
and cached under build/airflow-venv; Airflow is not a dependency of medspark). Without PyPI the
Airflow test is skipped and says so.
"""

from __future__ import annotations

import configparser
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
WRAPPER = DEPLOY / "medspark-nightly.sh"
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_VENV = Path(os.environ.get("MEDSPARK_AIRFLOW_VENV", ROOT / "build" / "airflow-venv"))


# ---------------------------------------------------------------- the cron/systemd wrapper ---

@pytest.fixture
def fake_submit(tmp_path):
    """A stand-in spark-submit: logs its cwd and arguments, exits with the next queued code."""
    script = tmp_path / "spark-submit"
    script.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        echo "$PWD|$*" >> {tmp_path}/calls
        code=$(head -n 1 {tmp_path}/codes); sed -i 1d {tmp_path}/codes
        exit "$code"
        """))
    script.chmod(0o755)
    home = tmp_path / "home"
    (home / "jobs").mkdir(parents=True)

    def run(codes: list[int], *args: str, retries: int = 3) -> tuple[int, list[str]]:
        (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
        (tmp_path / "calls").unlink(missing_ok=True)
        env = {"PATH": os.environ["PATH"], "SPARK_SUBMIT": str(script),
               "MEDSPARK_HOME": str(home), "MEDSPARK_INPUT": "/in/site-a s3a://b/in",
               "MEDSPARK_LAKE": "/data/lake", "MEDSPARK_RETRIES": str(retries),
               "MEDSPARK_RETRY_DELAY": "0",
               "MEDSPARK_SPARK_SUBMIT_ARGS": "--master local[2]",
               "MEDSPARK_NIGHTLY_ARGS": "--model none --set nightly.lock_timeout=3600"}
        proc = subprocess.run(["bash", str(WRAPPER), *args], env=env, capture_output=True,
                              text=True, timeout=30)
        calls = (tmp_path / "calls").read_text().splitlines()
        return proc.returncode, calls

    run.home = home
    return run


@pytest.mark.parametrize("codes,retries,rc,tries", [
    ([0], 3, 0, 1),
    ([3, 137, 0], 3, 0, 3),  # lock held, then a killed driver: both retried, night completes
    ([1], 3, 1, 1),  # needs a person: not retried
    ([2], 3, 2, 1),  # configuration error: not retried
    ([3, 3, 3], 1, 3, 2),  # gives up after the retries, with the last exit code
])
def test_wrapper_retry_policy(fake_submit, codes, retries, rc, tries):
    code, calls = fake_submit(codes, "2025-03-14", retries=retries)
    assert code == rc
    assert len(calls) == tries
    cwd, args = calls[0].split("|")
    assert cwd == str(fake_submit.home)
    assert args == ("--master local[2] jobs/nightly.py --input /in/site-a --input s3a://b/in "
                    "--lake /data/lake --date 2025-03-14 --model none "
                    "--set nightly.lock_timeout=3600")
    assert len(set(calls)) == 1  # every retry is the same night with the same arguments


def test_wrapper_defaults_to_today_and_needs_its_settings(fake_submit):
    code, calls = fake_submit([0])
    assert code == 0
    assert f"--date {dt.date.today().isoformat()}" in calls[0]
    proc = subprocess.run(["bash", str(WRAPPER)], env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "MEDSPARK_INPUT" in proc.stderr


def test_env_example_is_what_the_wrapper_reads():
    out = subprocess.run(["bash", "-c", f"set -a; . {DEPLOY / 'nightly.env.example'}; "
                          'read -r -a a <<< "$MEDSPARK_INPUT"; echo "${#a[@]} $MEDSPARK_LAKE"'],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.split() == ["2", "/data/lake"]


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(path)
    return parser


def test_systemd_units_and_crontab():
    service = _unit(DEPLOY / "systemd" / "medspark-nightly.service")
    timer = _unit(DEPLOY / "systemd" / "medspark-nightly.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("/deploy/medspark-nightly.sh")
    assert service["Service"]["EnvironmentFile"] == "/etc/medspark/nightly.env"
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:00:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "medspark-nightly.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(["systemd-analyze", "calendar", timer["Timer"]["OnCalendar"]],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in (DEPLOY / "crontab").read_text().splitlines()
             if ln.strip() and not ln.startswith("#") and not re.match(r"^[A-Z_]+=", ln)]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    assert fields[:5] == ["0", "2", "*", "*", "*"] and fields[5] == "medspark"
    assert "/deploy/medspark-nightly.sh" in fields[6]
    assert os.access(WRAPPER, os.X_OK)


# ------------------------------------------------------------------------- the Airflow DAG ---

def _airflow_python() -> Path:
    """The cached virtualenv's python with apache-airflow installed (made once; file-locked)."""
    marker = AIRFLOW_VENV / f".medspark-airflow-{AIRFLOW_VERSION}"
    python = AIRFLOW_VENV / "bin" / "python"
    AIRFLOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(AIRFLOW_VENV.parent / f".{AIRFLOW_VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and python.exists():
            return python
        shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(AIRFLOW_VENV)], check=True,
                       timeout=120)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q",
                               f"apache-airflow=={AIRFLOW_VERSION}"], capture_output=True,
                              text=True, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)
            tail = (proc.stdout + proc.stderr).strip()[-600:]
            raise AssertionError(f"pip install apache-airflow failed:\n{tail}")
        marker.touch()
        return python


PROBE = r"""
import json, sys
from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
       "dag_ids": sorted(bag.dag_ids)}
dag = bag.dags.get("medspark_nightly")
if dag is not None:
    task = dag.get_task("nightly")
    out.update(task_class=type(task).__name__, command=task.bash_command,
               rendered=task.render_template(task.bash_command, {"ds": "2025-03-14"}),
               retries=task.retries, retry_delay_s=task.retry_delay.total_seconds(),
               cwd=task.cwd, max_active_runs=dag.max_active_runs, catchup=dag.catchup)
    outcome = {}
    for code in (0, 1, 2, 3, 137):  # how the task ends for each exit code of jobs/nightly.py
        op = type(task)(task_id=f"exit{code}", bash_command=f"exit {code}", cwd=sys.argv[2])
        try:
            op.execute(context={})
            outcome[code] = "success"
        except Exception as err:
            outcome[code] = type(err).__name__
    out["outcome"] = outcome
print("PROBE " + json.dumps(out))
"""


def test_airflow_dag_imports_and_retries(tmp_path):
    python = _airflow_python()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "MEDSPARK_INPUT": "/in/site-a /in/site-b", "MEDSPARK_LAKE": "/data/lake",
           "MEDSPARK_HOME": str(tmp_path), "SPARK_SUBMIT": "/opt/spark/bin/spark-submit",
           "MEDSPARK_NIGHTLY_ARGS": "--model latest"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(python), "-c", PROBE, str(DEPLOY / "airflow"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("PROBE "))
    assert out["import_errors"] == {}
    assert out["dag_ids"] == ["medspark_nightly"]
    assert out["task_class"] == "NightlyOperator"
    assert out["command"] == ("/opt/spark/bin/spark-submit jobs/nightly.py --input /in/site-a "
                              "--input /in/site-b --lake /data/lake --date {{ ds }} "
                              "--model latest")
    assert "--date 2025-03-14 " in out["rendered"]
    assert out["retries"] >= 3 and out["retry_delay_s"] >= 60
    assert out["cwd"] == str(tmp_path)
    assert out["max_active_runs"] == 1 and out["catchup"] is False
    # 1 and 2 fail without retry; a held lock (3) and a crash (137) are retried
    assert out["outcome"] == {"0": "success", "1": "AirflowFailException",
                              "2": "AirflowFailException", "3": "AirflowException",
                              "137": "AirflowException"}
