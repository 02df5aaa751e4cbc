"""The happytimes DAG loads without errors, has the right shape, and its checks and alerts work."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import happytimes_checks as checks
from happytimes_checks import CheckFailed, TableSpec

DEFAULT_SFTP = ["sftp_sync_adnet", "sftp_sync_affiliates"]
DBT_CHECKS = ["dbt_source_freshness", "dbt_test_anomaly"]
DEFAULT_CHECKS = [
    f"check_{kind}_{table}"
    for table in checks.DEFAULT_TABLES
    for kind in ("freshness", "volume")
]


def load_dag(dags_dir: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_dir))
    assert bag.import_errors == {}, bag.import_errors
    assert "happytimes" in bag.dags
    return bag.dags["happytimes"]


@pytest.fixture
def dag(dags_dir):
    return load_dag(dags_dir)


# --------------------------------------------------------------------------- DAG shape


def test_task_ids(dag):
    assert sorted(dag.task_ids) == sorted(DEFAULT_SFTP + ["dbt_build"] + DBT_CHECKS + DEFAULT_CHECKS)


def test_dependencies(dag):
    dbt = dag.get_task("dbt_build")
    assert dbt.upstream_task_ids == set(DEFAULT_SFTP)
    assert dbt.downstream_task_ids == set(DBT_CHECKS + DEFAULT_CHECKS)
    for task_id in DEFAULT_SFTP:
        assert dag.get_task(task_id).upstream_task_ids == set()
    # Every check runs after the build, each on its own: one failing does not stop the others.
    for task_id in DBT_CHECKS + DEFAULT_CHECKS:
        assert dag.get_task(task_id).upstream_task_ids == {"dbt_build"}
        assert dag.get_task(task_id).downstream_task_ids == set()
        assert dag.get_task(task_id).trigger_rule == "all_success"


def test_schedule_retries_and_alerts(dag):
    assert dag.schedule == "@daily"
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.retry_exponential_backoff > 1, task.task_id
        assert task.retry_delay == timedelta(minutes=5)
        assert checks.alert_on_failure in task.on_failure_callback, task.task_id


def test_retries_can_be_lowered_for_local_runs(dags_dir, monkeypatch):
    monkeypatch.setenv("HAPPYTIMES_RETRIES", "0")
    monkeypatch.setenv("HAPPYTIMES_RETRY_DELAY_SECONDS", "2")
    dag = load_dag(dags_dir)
    assert {(t.retries, t.retry_delay) for t in dag.tasks} == {(0, timedelta(seconds=2))}


def test_commands(dag):
    assert dag.get_task("sftp_sync_adnet").bash_command == (
        '"${HAPPYSTREAMS_BIN:-happystreams}" sftp-sync '
        '--config "${HAPPYTIMES_CONFIG:?HAPPYTIMES_CONFIG is not set}" --source adnet'
    )
    assert "build --project-dir" in dag.get_task("dbt_build").bash_command
    assert "source freshness --project-dir" in dag.get_task("dbt_source_freshness").bash_command
    assert "test --project-dir" in dag.get_task("dbt_test_anomaly").bash_command


def _stub(tmp_path: Path) -> Path:
    stub = tmp_path / "stub"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n')
    stub.chmod(0o755)
    return stub


def _stub_pwd(tmp_path: Path) -> Path:
    """A stub that prints its working directory, then its arguments, one per line."""
    stub = tmp_path / "stub-pwd"
    stub.write_text('#!/bin/sh\npwd\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    return stub


def test_commands_run_in_a_shell(dag, tmp_path):
    """The commands are valid shell and pass the configured binaries their arguments."""
    stub = _stub(tmp_path)
    dbt_stub = _stub_pwd(tmp_path)
    project = tmp_path / "dbt project"
    project.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HAPPYSTREAMS_BIN": str(stub),
        "DBT_BIN": str(dbt_stub),
        "HAPPYTIMES_CONFIG": "/etc/happytimes.yaml",
        "HAPPYTIMES_DBT_DIR": str(project),
    }
    run = lambda cmd: subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, check=True)
    out = run(dag.get_task("sftp_sync_affiliates").bash_command).stdout.split()
    assert out == [str(stub), "sftp-sync", "--config", "/etc/happytimes.yaml", "--source", "affiliates"]
    dbt = lambda task: run(dag.get_task(task).bash_command).stdout.splitlines()
    # dbt runs in the project directory: the relative target/ (artifacts, DuckDB catalog) of
    # dbt_build is the one dbt_test_anomaly reads.
    common = ["--project-dir", ".", "--profiles-dir", "."]
    assert dbt("dbt_build") == [str(project), "build", *common, "--exclude", "tag:anomaly"]
    assert dbt("dbt_test_anomaly") == [str(project), "test", *common, "--select", "tag:anomaly"]
    assert dbt("dbt_source_freshness") == [
        str(project), "source", "freshness", *common, "--target", "freshness", "--target-path", "target/freshness",
    ]

    # Selections, vars and the target path from the environment.
    env.update({
        "HAPPYTIMES_DBT_SELECT": "stg_partner_files",
        "HAPPYTIMES_DBT_FRESHNESS_SELECT": "source:lake_raw source:lake_landing",
        "HAPPYTIMES_DBT_ANOMALY_SELECT": "tag:anomaly,fct_visitor_activity",
        "HAPPYTIMES_DBT_VARS": "{anomaly_z_threshold: 8, anomaly_severity: warn}",
        "DBT_TARGET_PATH": "/var/dbt target",
    })
    vars_ = ["--vars", "{anomaly_z_threshold: 8, anomaly_severity: warn}"]
    assert dbt("dbt_build") == [str(project), "build", *common, *vars_, "--exclude", "tag:anomaly",
                                "--select", "stg_partner_files"]
    assert dbt("dbt_test_anomaly") == [str(project), "test", *common, *vars_,
                                       "--select", "tag:anomaly,fct_visitor_activity"]
    assert dbt("dbt_source_freshness") == [
        str(project), "source", "freshness", *common, *vars_, "--target", "freshness",
        "--target-path", "/var/dbt target/freshness", "--select", "source:lake_raw source:lake_landing",
    ]

    del env["HAPPYTIMES_CONFIG"]
    failed = subprocess.run(["bash", "-c", dag.get_task("sftp_sync_adnet").bash_command], env=env,
                            capture_output=True, text=True)
    assert failed.returncode != 0
    assert "HAPPYTIMES_CONFIG is not set" in failed.stderr
    del env["HAPPYTIMES_DBT_DIR"]
    for task in ("dbt_build", "dbt_source_freshness", "dbt_test_anomaly"):
        failed = subprocess.run(["bash", "-c", dag.get_task(task).bash_command], env=env,
                                capture_output=True, text=True)
        assert failed.returncode != 0, task
        assert "HAPPYTIMES_DBT_DIR is not set" in failed.stderr, task


def test_partners_and_tables_from_config(dags_dir, tmp_path, monkeypatch):
    sftp = tmp_path / "sftp.yaml"
    sftp.write_text("sftp:\n  sources:\n    - name: adnet\n      host: 127.0.0.1\n    - name: partner-x\n")
    tables = tmp_path / "checks.json"
    tables.write_text(json.dumps({
        "defaults": {"max_age_hours": 48},
        "tables": {"clicks": {}, "sentiment": {"path": "facts/sentiment", "min_rows": 10}},
    }))
    monkeypatch.setenv("HAPPYTIMES_SFTP_CONFIG", str(sftp))
    monkeypatch.setenv("HAPPYTIMES_CHECKS_CONFIG", str(tables))
    dag = load_dag(dags_dir)
    assert sorted(dag.task_ids) == sorted([
        "sftp_sync_adnet", "sftp_sync_partner-x", "dbt_build", *DBT_CHECKS,
        "check_freshness_clicks", "check_volume_clicks",
        "check_freshness_sentiment", "check_volume_sentiment",
    ])
    assert dag.get_task("dbt_build").upstream_task_ids == {"sftp_sync_adnet", "sftp_sync_partner-x"}
    assert dag.get_task("check_volume_sentiment").op_kwargs["table"]["min_rows"] == 10
    assert dag.get_task("check_volume_sentiment").op_kwargs["table"]["max_age_hours"] == 48


@pytest.mark.parametrize("text, partners", [
    ("[adnet, affiliates, social]", ["adnet", "affiliates", "social"]),
    ('{"partners": {"a": {}, "b": {}}}', ["a", "b"]),
    ("remotes:\n  - {name: one}\n", ["one"]),
])
def test_partner_config_shapes(tmp_path, text, partners):
    path = tmp_path / "sftp.yaml"
    path.write_text(text)
    assert checks.load_partners(path) == partners


def test_bad_config_is_refused(tmp_path):
    path = tmp_path / "sftp.yaml"
    path.write_text("[adnet, 'bad name']")
    with pytest.raises(checks.ConfigError, match="invalid partner name 'bad name'"):
        checks.load_partners(path)
    path.write_text("tables: {t: {max_age: 3}}")
    with pytest.raises(checks.ConfigError, match="unknown settings"):
        checks.load_tables(path)


def test_tables_from_env_list(monkeypatch):
    monkeypatch.setenv("HAPPYTIMES_LAKE_TABLES", "a, b")
    assert [t.name for t in checks.load_tables()] == ["a", "b"]


# --------------------------------------------------------------------------- checks

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def write_table(lake: Path, name: str, times: list[datetime], *, partition="date=2026-11-25",
                as_epoch_ms=False) -> Path:
    directory = lake / name / partition
    directory.mkdir(parents=True, exist_ok=True)
    if as_epoch_ms:
        column = pa.array([int(t.timestamp() * 1000) for t in times], type=pa.int64())
    else:
        column = pa.array(times, type=pa.timestamp("ms", tz="UTC"))
    table = pa.table({"event_id": pa.array(range(len(times)), type=pa.int64()), "event_time": column})
    pq.write_table(table, directory / "part-00000.parquet")
    return directory


def test_fresh_table_passes(tmp_path):
    write_table(tmp_path, "visitor_activity", [NOW - timedelta(hours=30), NOW - timedelta(hours=1)])
    spec = TableSpec(name="visitor_activity", path="visitor_activity")
    result = checks.check_freshness(spec, lake_dir=str(tmp_path), now=NOW)
    assert result["newest"] == (NOW - timedelta(hours=1)).isoformat()
    assert result["age_hours"] == 1.0
    assert checks.check_volume(spec, lake_dir=str(tmp_path)) == {"table": "visitor_activity", "rows": 2}


def test_epoch_millis_and_several_partitions(tmp_path):
    write_table(tmp_path, "clicks", [NOW - timedelta(days=3)], partition="date=2026-11-22", as_epoch_ms=True)
    write_table(tmp_path, "clicks", [NOW - timedelta(hours=2)], partition="date=2026-11-25", as_epoch_ms=True)
    spec = TableSpec(name="clicks", path="clicks")
    assert checks.check_freshness(spec, lake_dir=str(tmp_path), now=NOW)["age_hours"] == 2.0
    assert checks.check_volume(spec, lake_dir=str(tmp_path))["rows"] == 2


def test_old_table_fails_freshness_with_a_clear_message(tmp_path):
    write_table(tmp_path, "conversion", [NOW - timedelta(days=3)])
    spec = TableSpec(name="conversion", path="conversion", max_age_hours=26)
    with pytest.raises(CheckFailed) as err:
        checks.check_freshness(spec, lake_dir=str(tmp_path), now=NOW)
    assert str(err.value) == (
        "freshness check failed for table conversion: newest event_time is "
        "2026-11-22T12:00:00+00:00, 72.0 h old, over the 26.0 h limit"
    )


def test_empty_table_fails_volume(tmp_path):
    write_table(tmp_path, "retention", [])
    spec = TableSpec(name="retention", path="retention")
    with pytest.raises(CheckFailed, match=r"volume check failed for table retention: 0 rows in .*retention, "
                                          r"expected at least 1"):
        checks.check_volume(spec, lake_dir=str(tmp_path))
    with pytest.raises(CheckFailed, match="freshness check failed for table retention: no rows with a event_time"):
        checks.check_freshness(spec, lake_dir=str(tmp_path), now=NOW)


def test_volume_below_minimum(tmp_path):
    write_table(tmp_path, "social_sentiment", [NOW] * 3)
    spec = TableSpec(name="social_sentiment", path="social_sentiment", min_rows=5)
    with pytest.raises(CheckFailed, match="3 rows .* expected at least 5"):
        checks.check_volume(spec, lake_dir=str(tmp_path))


def test_missing_table_and_missing_column(tmp_path):
    spec = TableSpec(name="nothing", path="nothing")
    with pytest.raises(CheckFailed, match="table nothing: no Parquet data at"):
        checks.check_volume(spec, lake_dir=str(tmp_path))
    write_table(tmp_path, "t", [NOW])
    spec = TableSpec(name="t", path="t", timestamp_column="ts")
    with pytest.raises(CheckFailed, match="no column 'ts'.*columns: event_id, event_time, date"):
        checks.check_freshness(spec, lake_dir=str(tmp_path), now=NOW)


def test_in_progress_files_are_ignored(tmp_path):
    directory = write_table(tmp_path, "t", [NOW])
    (directory / ".part-00001.parquet.tmp").write_bytes(b"PAR1 not finished")
    (directory / "_part-00002.parquet").write_bytes(b"PAR1 not finished")
    assert checks.check_volume(TableSpec(name="t", path="t"), lake_dir=str(tmp_path))["rows"] == 1


def test_task_entry_points_read_the_lake_from_env(tmp_path, monkeypatch):
    write_table(tmp_path, "visitor_activity", [datetime.now(timezone.utc)])
    monkeypatch.setenv("HAPPYTIMES_LAKE_DIR", str(tmp_path))
    table = {"name": "visitor_activity", "path": "visitor_activity"}
    assert checks.volume_task(table=table, ti=None)["rows"] == 1
    assert checks.freshness_task(table=table, ti=None)["age_hours"] < 1


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A moto S3 server from the test rig (installed into the tools venv on first use)."""
    rig = Path(__file__).resolve().parents[2] / "tests" / "rig" / "moto.sh"
    state = tmp_path_factory.mktemp("moto")
    endpoint = subprocess.run([str(rig), "start", str(state)], capture_output=True, text=True,
                              check=True, timeout=300).stdout.strip()
    yield endpoint
    subprocess.run([str(rig), "stop", str(state)], check=False, timeout=60)


def test_checks_read_a_lake_on_s3(s3_endpoint, monkeypatch):
    from pyarrow import fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    s3, _ = checks._filesystem("s3://lake")
    fs.S3FileSystem(endpoint_override=s3_endpoint.split("://")[1], scheme="http",
                    allow_bucket_creation=True).create_dir("lake")
    times = pa.array([NOW - timedelta(hours=2), NOW - timedelta(hours=1)], type=pa.timestamp("ms", tz="UTC"))
    pq.write_table(pa.table({"event_time": times}),
                   "lake/facts/visitor_activity/date=2026-11-25/part-00000.parquet", filesystem=s3)
    monkeypatch.setenv("HAPPYTIMES_LAKE_DIR", "s3://lake")
    spec = TableSpec(name="visitor_activity", path="facts/visitor_activity")
    assert checks.check_volume(spec)["rows"] == 2
    assert checks.check_freshness(spec, now=NOW)["age_hours"] == 1.0
    with pytest.raises(CheckFailed, match="table missing: no Parquet data at s3://lake/facts/missing"):
        checks.check_volume(TableSpec(name="missing", path="facts/missing"))


# --------------------------------------------------------------------------- alerts


def failure_context():
    ti = SimpleNamespace(dag_id="happytimes", task_id="dbt_build", run_id="scheduled__2026-11-25", try_number=3)
    return {"ti": ti, "logical_date": NOW, "exception": RuntimeError("dbt exited with 1")}


def test_alert_logs_without_webhook(caplog, monkeypatch):
    monkeypatch.delenv("HAPPYTIMES_ALERT_WEBHOOK", raising=False)
    with caplog.at_level(logging.INFO, logger="happytimes_checks"):
        checks.alert_on_failure(failure_context())
    assert ("ALERT happytimes: task dbt_build failed (run scheduled__2026-11-25, try 3): "
            "RuntimeError: dbt exited with 1") in caplog.text


def test_alert_posts_json_and_never_logs_the_webhook(caplog, monkeypatch):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/alert?token=s3cret-token"
        monkeypatch.setenv("HAPPYTIMES_ALERT_WEBHOOK", url)
        with caplog.at_level(logging.INFO, logger="happytimes_checks"):
            checks.alert_on_failure(failure_context())
    finally:
        server.shutdown()
        server.server_close()
    assert received == [("/hooks/alert?token=s3cret-token", "application/json", {
        "event": "task_failed", "dag_id": "happytimes", "task_id": "dbt_build",
        "run_id": "scheduled__2026-11-25", "logical_date": NOW.isoformat(), "try_number": 3,
        "error": "RuntimeError: dbt exited with 1",
    })]
    assert "alert sent to the webhook (HTTP 204)" in caplog.text
    assert "s3cret" not in caplog.text and "/hooks/alert" not in caplog.text


def test_unreachable_webhook_does_not_raise(caplog, monkeypatch):
    monkeypatch.setenv("HAPPYTIMES_ALERT_WEBHOOK", "http://127.0.0.1:9/secret-path")
    with caplog.at_level(logging.INFO, logger="happytimes_checks"):
        checks.alert_on_failure(failure_context())
    assert "alert webhook failed: URLError" in caplog.text
    assert "secret-path" not in caplog.text
