"""The one SparkSession factory used by every job, the CLI and the tests."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from medspark.config import SparkSettings

log = logging.getLogger(__name__)

# Settings every medspark session needs, whatever the config says.
REQUIRED_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # lake tables are Delta tables: a run's files are committed by the driver, so Spark's own
    # `_SUCCESS` markers would only be litter in the run's folder
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
}


def under_spark_submit() -> bool:
    """True when this Python process was launched by spark-submit (it then owns --master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def java_major_version() -> int | None:
    """Major version of the `java` Spark will use, or None if there is no Java."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for token in (out.stderr + out.stdout).split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            major = int(token.split(".")[1]) if head == "1" else int(head.split("-")[0])
            return major
    return None


def check_java() -> None:
    """Fail with a clear message when Java 17+ (required by Spark 4) is missing."""
    major = java_major_version()
    if major is None:
        raise RuntimeError("Java not found: Spark 4 needs Java 17 or newer (set JAVA_HOME)")
    if major < 17:
        raise RuntimeError(f"Java {major} found: Spark 4 needs Java 17 or newer")


def build_session(
    settings: SparkSettings,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    python_bound: bool = False,
):
    """Build (or reuse) the SparkSession.

    Precedence for the master URL: explicit `master` argument, then spark-submit's `--master`,
    then `settings.master`. In local mode Python workers are pinned to this interpreter so they
    see the same pandas/pyarrow as the driver, and a `python_bound` job (its work runs in the
    Python workers) launches its JVM with `settings.python_jobs_java_options`.
    """
    from pyspark.sql import SparkSession

    if not under_spark_submit():
        check_java()
    builder = SparkSession.builder.appName(settings.app_name)
    chosen = master or (None if under_spark_submit() else settings.master)
    if chosen:
        builder = builder.master(chosen)
    merged = session_conf(settings, chosen, conf, python_bound)
    for key, value in merged.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    log.info("spark session: master=%s version=%s", spark.sparkContext.master, spark.version)
    return spark


def session_conf(settings: SparkSettings, master: str | None, conf: dict[str, str] | None,
                 python_bound: bool = False) -> dict[str, str]:
    """The Spark settings a session is built with: the config's, the required ones, the
    caller's, and in local mode the pinned Python, loopback addresses and JVM options."""
    merged: dict[str, str] = {k: _conf_str(v) for k, v in settings.conf.items()}
    merged.update(REQUIRED_CONF)
    merged.update(conf or {})
    is_local = (master or "").startswith("local")
    if settings.pin_python and is_local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        merged.setdefault("spark.pyspark.python", sys.executable)
        merged.setdefault("spark.pyspark.driver.python", sys.executable)
    if is_local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        merged.setdefault("spark.driver.host", "127.0.0.1")
        merged.setdefault("spark.driver.bindAddress", "127.0.0.1")
    if python_bound and is_local and not under_spark_submit() and \
            settings.python_jobs_java_options:
        merged["spark.driver.extraJavaOptions"] = " ".join(filter(None, [
            merged.get("spark.driver.extraJavaOptions", ""), settings.python_jobs_java_options]))
    return merged


def driver_jvm_flags(spark) -> list[str]:
    """The `-XX:` options the driver JVM actually runs with (recorded in run manifests)."""
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    return [str(a) for a in bean.getInputArguments() if str(a).startswith("-XX:")]


def _conf_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
