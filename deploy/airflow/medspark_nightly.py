"""Apache Airflow DAG: medspark's nightly batch, once a day, `spark-submit jobs/nightly.py`.

Copy this file into the DAGs folder of Airflow 3 (tested with 3.3.2; it needs the
`apache-airflow-providers-standard` package that Airflow 3 installs). Settings are read when the
DAG is parsed, from the environment of the Airflow processes (same names as deploy/nightly.env):

    MEDSPARK_INPUT   input URIs, space separated          (default /data/incoming)
    MEDSPARK_LAKE    the lake                             (default /data/lake)
    MEDSPARK_HOME    folder holding jobs/nightly.py       (default /opt/medspark)
    SPARK_SUBMIT     spark-submit                         (default spark-submit)
    MEDSPARK_SPARK_SUBMIT_ARGS, MEDSPARK_NIGHTLY_ARGS     extra options, shell words
    MEDSPARK_SCHEDULE                                     (default "0 2 * * *")

The night is the run's logical date, `{{ ds }}`: with Airflow 3's cron timetable that is the day
the run starts, so the 02:00 run of 14 March processes the night of 14 March, and a retry after
midnight still processes the same night.

Retries rely on the nightly's resume guarantee: a task killed at any point (worker lost, timeout,
OOM) or refused because another run holds the lake's lock (exit 3) is simply started again and
completes the night without redoing published stages. Exit 2 (configuration error) and exit 1
(finished, but something needs a person) fail the task without retries: a retry would do the
same again.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta
from functools import cached_property

from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException

DAG_ID = "medspark_nightly"
NO_RETRY = {
    1: "the night finished but needs a person: see its report and _runs/nightly-<date>.json",
    2: "configuration error (nothing ran): fix the configuration, then clear the task",
}


class _ExitCodeHook(SubprocessHook):
    """SubprocessHook that remembers the last command's exit code."""

    last_exit_code: int | None = None

    def run_command(self, *args, **kwargs):
        result = super().run_command(*args, **kwargs)
        self.last_exit_code = result.exit_code
        return result


class NightlyOperator(BashOperator):
    """BashOperator that fails without retries on exit codes 1 and 2 of jobs/nightly.py.

    Any other failure (3: lake locked; a crash) is an ordinary failure, retried as configured."""

    def __init__(self, **kwargs):
        kwargs.setdefault("skip_on_exit_code", None)  # no exit code means "skipped" here
        super().__init__(**kwargs)

    @cached_property
    def subprocess_hook(self) -> _ExitCodeHook:
        return _ExitCodeHook()

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as err:
            code = self.subprocess_hook.last_exit_code
            if code in NO_RETRY:
                raise AirflowFailException(f"exit code {code}: {NO_RETRY[code]}") from err
            raise


def nightly_command(env: dict[str, str] | None = None) -> str:
    """The task's bash command (with the `{{ ds }}` template), from the environment."""
    env = dict(os.environ if env is None else env)
    spark_submit = shlex.quote(env.get("SPARK_SUBMIT", "spark-submit"))
    words = [spark_submit, *map(shlex.quote, shlex.split(env.get("MEDSPARK_SPARK_SUBMIT_ARGS",
                                                                  ""))), "jobs/nightly.py"]
    for uri in shlex.split(env.get("MEDSPARK_INPUT", "/data/incoming")):
        words += ["--input", shlex.quote(uri)]
    words += ["--lake", shlex.quote(env.get("MEDSPARK_LAKE", "/data/lake")), "--date", "{{ ds }}"]
    words += map(shlex.quote, shlex.split(env.get("MEDSPARK_NIGHTLY_ARGS", "")))
    return " ".join(words)


with DAG(
    dag_id=DAG_ID,
    description="medspark nightly batch: ingest -> masks -> preprocess -> features -> predict "
                "-> report, resumable",
    schedule=os.environ.get("MEDSPARK_SCHEDULE", "0 2 * * *"),
    start_date=datetime(2025, 1, 1),
    catchup=False,  # ingest takes every file not ingested yet; old nights need no replay
    max_active_runs=1,  # one night at a time (the lake lock would refuse a second anyway)
    default_args={
        "owner": "medspark",
        "retries": 6,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(hours=2),
        "execution_timeout": timedelta(hours=10),
    },
    tags=["medspark", "nightly"],
    doc_md=__doc__,
) as dag:
    NightlyOperator(
        task_id="nightly",
        bash_command=nightly_command(),
        cwd=os.environ.get("MEDSPARK_HOME", "/opt/medspark"),
        append_env=True,
    )
