"""Config: YAML validated by pydantic, overrides, and errors that name the key and file."""

from __future__ import annotations

import pytest

from medspark.config import ConfigError, load_settings, parse_override


def test_default_config_loads_and_matches_local_yaml():
    settings = load_settings()
    assert settings.spark.master == "local[2]"
    assert settings.ingest.limits.max_planes_per_file == 4096
    assert settings.spark.conf["spark.sql.shuffle.partitions"] == 8


def test_cluster_example_is_valid():
    settings = load_settings("conf/cluster.yaml")
    assert settings.ingest.read_mode == "jvm"
    assert settings.spark.pin_python is False


def test_unknown_key_names_key_and_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ingest:\n  limits:\n    max_file_byte: 10\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "ingest.limits.max_file_byte" in str(err.value)
    assert str(cfg) in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ingest:\n  files_per_task: many\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "ingest.files_per_task" in str(err.value) and "'many'" in str(err.value)


def test_set_overrides_are_typed_and_validated():
    settings = load_settings(None, ["ingest.files_per_task=7", "privacy.allow_demo_key=true",
                                    "spark.conf.spark.executor.cores=3"])
    assert settings.ingest.files_per_task == 7
    assert settings.privacy.allow_demo_key is True
    assert settings.spark.conf["spark.executor.cores"] == 3
    with pytest.raises(ConfigError, match="--set ingest.read_mod"):
        load_settings(None, ["ingest.read_mod=jvm"])
    with pytest.raises(ConfigError, match="ingest.read_mode"):
        load_settings(None, ["ingest.read_mode=ftp"])


def test_parse_override_requires_equals():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    with pytest.raises(ConfigError):
        parse_override("a.b")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_train_select_names_algorithms_checked_before_spark(capsys, tmp_path):
    from medspark.cli import main

    assert main(["train", "--lake", str(tmp_path), "--select", "LogisticRegresion"]) == 2
    assert "unknown algorithm 'LogisticRegresion'" in capsys.readouterr().err


def test_python_bound_jobs_get_their_jvm_options_in_local_mode_only():
    from medspark.session import session_conf

    spark = load_settings(None, ["spark.conf={spark.driver.extraJavaOptions: -Dx=1}"]).spark
    local = session_conf(spark, "local[2]", None, python_bound=True)
    assert local["spark.driver.extraJavaOptions"] == \
        "-Dx=1 -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    assert session_conf(spark, "local[2]", None)["spark.driver.extraJavaOptions"] == "-Dx=1"
    cluster = session_conf(spark, "spark://127.0.0.1:7077", None, python_bound=True)
    assert cluster["spark.driver.extraJavaOptions"] == "-Dx=1"
    off = load_settings(None, ["spark.python_jobs_java_options="]).spark
    assert "spark.driver.extraJavaOptions" not in session_conf(off, "local[1]", None, True)
