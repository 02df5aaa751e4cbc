"""The dbt side of the DAG's data checks, with the real dbt-duckdb (tests/rig/dbt.sh):

* the generic tests of dbt/tests/generic/ (row_count_between, volume_anomaly) on small tables
  with known daily volumes, in a scratch project: steady traffic passes, a planted drop, spike
  or outage fails, and the thresholds and severity follow the dbt vars;
* the project's wiring: every fact and mart has its row-count and anomaly tests, tagged so the
  DAG's dbt_build leaves the anomaly tests to dbt_test_anomaly;
* `dbt source freshness` of the project's sources (dbt/models/sources.yml) over a lake whose
  Parquet files look like lake-sink's, fresh, late, stale and missing.

dbt is installed by tests/rig/dbt.sh on first use (~20 s) unless HAPPYSTREAMS_DBT_BIN names it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = ROOT / "dbt"


@pytest.fixture(scope="module")
def dbt_bin() -> str:
    given = os.environ.get("HAPPYSTREAMS_DBT_BIN")
    if given:
        return given
    out = subprocess.run([str(ROOT / "tests" / "rig" / "dbt.sh"), "bin"], capture_output=True, text=True,
                         check=True, timeout=900)
    return out.stdout.strip()


def run_dbt(dbt_bin: str, project: Path, target: Path, args: list[str], lake: Path | None = None):
    """dbt with nothing of the caller's environment but PATH and HOME; artifacts under target/."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target / "logs"),
        "HAPPYTIMES_LAKE_DIR": str(lake or target / "no-lake"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return subprocess.run([dbt_bin, *args, "--project-dir", str(project), "--profiles-dir", str(project)],
                          env=env, capture_output=True, text=True, timeout=600)


def statuses(target: Path, artifact: str = "run_results.json") -> dict[str, str]:
    results = json.loads((target / artifact).read_text())["results"]
    return {r["unique_id"].split(".")[2] if artifact == "run_results.json" else r["unique_id"]: r["status"]
            for r in results}


# --------------------------------------------------------------------------- generic tests

TODAY = datetime.now(timezone.utc).date()
# 28 days of history varying by up to ~22 % from day to day (median 100.5).
HISTORY = [100, 118, 87, 104, 95, 122, 80, 109, 97, 113, 91, 101, 124, 84,
           106, 99, 116, 89, 103, 94, 120, 82, 111, 96, 108, 92, 115, 86]


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def series(yesterday: int | None, history: list[int] = HISTORY, today: int = 30) -> dict[date, int]:
    """Rows per day: the history up to two days ago, yesterday (the day judged), a partial today."""
    counts = {days_ago(len(history) + 1 - i): n for i, n in enumerate(history)}
    if yesterday is not None:
        counts[days_ago(1)] = yesterday
    counts[TODAY] = today
    return counts


def event_table(counts: dict[date, int]) -> pa.Table:
    """One row per event, spread over its day."""
    times = []
    for day, n in counts.items():
        start = datetime(day.year, day.month, day.day)  # UTC, as the models' event times
        times += [start + timedelta(seconds=i * 86400 // max(n, 1)) for i in range(n)]
    return pa.table({"event_time": pa.array(times, type=pa.timestamp("ms"))})


def mart_table(counts: dict[date, int]) -> pa.Table:
    """A mart-like table: 24 hourly windows per day (epoch ms) and a measure summing to the count,
    and the epoch day of each window."""
    window, day_col, views = [], [], []
    for day, n in counts.items():
        start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
        for hour in range(24):
            window.append(start + hour * 3_600_000)
            day_col.append((day - date(1970, 1, 1)).days)
            views.append(n // 24 + (1 if hour < n % 24 else 0))
    return pa.table({"window_start_ms": pa.array(window, pa.int64()), "click_day": pa.array(day_col, pa.int64()),
                     "views": pa.array(views, pa.int64())})


CASES = {
    # model: (table, [(test name, test, arguments, expected status)])
    "steady": (event_table(series(HISTORY[-1] + 5)), [
        ("anomaly_steady", "volume_anomaly", {"timestamp_column": "event_time"}, "pass"),
        ("anomaly_steady_linear", "volume_anomaly", {"timestamp_column": "event_time", "scale": "linear"}, "pass"),
        ("rows_steady", "row_count_between", {"min_rows": 1}, "pass"),
        ("rows_steady_max", "row_count_between", {"min_rows": 1, "max_rows": 100}, "fail"),
    ]),
    # A 30 % dip on traffic that varies by 20 % is no anomaly (robust z -2.4).
    "dip": (event_table(series(70)), [
        ("anomaly_dip", "volume_anomaly", {"timestamp_column": "event_time"}, "pass"),
    ]),
    # Planted: yesterday lost 95 % of its rows (z -19), or all of them, or got five times more.
    "drop": (event_table(series(5)), [
        ("anomaly_drop", "volume_anomaly", {"timestamp_column": "event_time"}, "fail"),
        ("anomaly_drop_linear", "volume_anomaly", {"timestamp_column": "event_time", "scale": "linear"}, "fail"),
    ]),
    "outage": (event_table(series(None)), [
        ("anomaly_outage", "volume_anomaly", {"timestamp_column": "event_time"}, "fail"),
    ]),
    "spike": (event_table(series(500)), [
        ("anomaly_spike", "volume_anomaly", {"timestamp_column": "event_time"}, "fail"),
    ]),
    # An outage two weeks ago does not move the baseline (median and MAD).
    "old_outage": (event_table({d: (0 if 12 <= (TODAY - d).days <= 14 else n)
                                for d, n in series(100).items()}), [
        ("anomaly_old_outage", "volume_anomaly", {"timestamp_column": "event_time"}, "pass"),
    ]),
    # Five days of history are too few for a verdict (anomaly_min_history_days: 7).
    "young": (event_table(series(5, history=HISTORY[-5:])), [
        ("anomaly_young", "volume_anomaly", {"timestamp_column": "event_time"}, "pass"),
    ]),
    # Rows dated a year ahead do not move the day judged: yesterday's drop still fails.
    "future_rows": (event_table({**series(5), TODAY + timedelta(days=400): 3}), [
        ("anomaly_future_rows", "volume_anomaly", {"timestamp_column": "event_time"}, "fail"),
    ]),
    # Marts: the measure dropped, the row count (24 windows a day) did not.
    "mart": (mart_table(series(10)), [
        ("anomaly_mart_views", "volume_anomaly",
         {"timestamp_column": "window_start_ms", "timestamp_unit": "epoch_ms", "value": "sum(views)"}, "fail"),
        ("anomaly_mart_rows", "volume_anomaly",
         {"timestamp_column": "window_start_ms", "timestamp_unit": "epoch_ms"}, "pass"),
        ("anomaly_mart_epoch_day", "volume_anomaly",
         {"timestamp_column": "click_day", "timestamp_unit": "epoch_day", "value": "sum(views)"}, "fail"),
    ]),
    "empty": (event_table({}), [
        ("rows_empty", "row_count_between", {"min_rows": 1}, "fail"),
        ("anomaly_empty", "volume_anomaly", {"timestamp_column": "event_time"}, "pass"),
    ]),
}


@pytest.fixture(scope="module")
def cases_project(tmp_path_factory) -> Path:
    """A scratch dbt project: one view per case over its Parquet file, with the project's generic
    tests and vars (copied from dbt/, so their defaults are the ones tested)."""
    project = tmp_path_factory.mktemp("dbt-cases")
    real = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text())
    (project / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": "cases", "version": "1.0", "config-version": 2, "profile": "cases",
        "flags": {"send_anonymous_usage_stats": False},
        "models": {"cases": {"+materialized": "view"}},
        "vars": real["vars"],
    }))
    (project / "profiles.yml").write_text(yaml.safe_dump({"cases": {"target": "dev", "outputs": {
        "dev": {"type": "duckdb", "path": str(project / "cases.duckdb"), "threads": 2}}}}))
    shutil.copytree(DBT_PROJECT / "tests" / "generic", project / "tests" / "generic")
    models = project / "models"
    models.mkdir()
    schema = []
    for model, (table, tests) in CASES.items():
        pq.write_table(table, project / f"{model}.parquet")
        (models / f"{model}.sql").write_text(f"select * from read_parquet('{project / model}.parquet')\n")
        schema.append({"name": model, "data_tests": [
            {test: {"name": name, "arguments": arguments}} for name, test, arguments, _ in tests
        ]})
    (models / "schema.yml").write_text(yaml.safe_dump({"version": 2, "models": schema}, sort_keys=False))
    return project


def test_generic_tests_pass_on_steady_traffic_and_fail_on_planted_anomalies(dbt_bin, cases_project, tmp_path):
    target = tmp_path / "target"
    result = run_dbt(dbt_bin, cases_project, target, ["build"])
    expected = {name: status for _, tests in CASES.values() for name, _, _, status in tests}
    got = statuses(target)
    assert {name: got.get(name) for name in expected} == expected, result.stdout[-4000:]
    assert result.returncode == 1  # the planted failures fail the run
    # The tags the DAG selects by.
    listed = run_dbt(dbt_bin, cases_project, target, ["--quiet", "ls", "--resource-type", "test",
                                                      "--select", "tag:anomaly", "--output", "name"])
    names = set(listed.stdout.split())
    assert {n for n in expected if n.startswith("anomaly_")} <= names
    assert not {n for n in expected if n.startswith("rows_")} & names


def test_anomaly_threshold_and_severity_are_vars(dbt_bin, cases_project, tmp_path):
    target = tmp_path / "target"
    # A lower threshold flags the 30 % dip too; severity warn reports without failing.
    result = run_dbt(dbt_bin, cases_project, target, [
        "test", "--select", "anomaly_dip anomaly_drop anomaly_steady",
        "--vars", "{anomaly_z_threshold: 2, anomaly_severity: warn}",
    ])
    assert statuses(target) == {"anomaly_dip": "warn", "anomaly_drop": "warn", "anomaly_steady": "pass"}, \
        result.stdout[-4000:]
    assert result.returncode == 0
    # With a longer minimum history the planted drop gets no verdict.
    result = run_dbt(dbt_bin, cases_project, target, [
        "test", "--select", "anomaly_drop", "--vars", "{anomaly_min_history_days: 40}",
    ])
    assert statuses(target) == {"anomaly_drop": "pass"}, result.stdout[-4000:]


# --------------------------------------------------------------------------- the project's wiring

FACTS = ["fct_visitor_activity", "fct_conversion", "fct_retention", "fct_social_sentiment"]
MARTS = ["funnel_awareness", "funnel_consideration", "funnel_consideration_top", "funnel_conversion",
         "funnel_loyalty", "funnel_advocacy"]


def test_every_fact_and_mart_has_row_count_and_anomaly_tests(dbt_bin, tmp_path):
    target = tmp_path / "target"

    def ls(*select: str) -> set[str]:
        result = run_dbt(dbt_bin, DBT_PROJECT, target, ["--quiet", "ls", "--resource-type", "test",
                                                        "--output", "name", *select])
        assert result.returncode == 0, result.stdout[-4000:]
        return set(result.stdout.split())

    anomaly = ls("--select", "tag:anomaly")
    # funnel_loyalty is per cohort week: no day to compare.
    assert anomaly == {f"volume_anomaly_{m}" for m in FACTS + MARTS if m != "funnel_loyalty"}
    assert ls("--select", "tag:volume") == {f"row_count_{m}" for m in FACTS + MARTS}
    # What the DAG's dbt_build runs (--exclude tag:anomaly) keeps the row counts, not the anomalies.
    build = ls("--exclude", "tag:anomaly")
    assert not anomaly & build
    assert {f"row_count_{m}" for m in FACTS + MARTS} <= build
    # Sources: every raw topic, every stream fact, the partner landing.
    result = run_dbt(dbt_bin, DBT_PROJECT, target, ["--quiet", "ls", "--resource-type", "source", "--output", "name"])
    assert set(result.stdout.split()) == {
        *(f"lake_raw.{t}" for t in ["clicks", "weblogs", "social_mentions", "visitors", "content", "ads",
                                    "subscriptions", "social_outlets"]),
        *(f"lake_facts.{f}" for f in ["visitor_activity", "conversion", "retention", "social_sentiment"]),
        "lake_landing.partner_files",
    }


# --------------------------------------------------------------------------- source freshness

NOW = datetime.now(timezone.utc)


def land(lake: Path, table: str, newest_age_hours: float) -> None:
    """A lake-sink-like Parquet file (raw: key, value; every table: _topic, _partition, _offset,
    _timestamp) whose newest record is newest_age_hours old."""
    times = [NOW - timedelta(hours=newest_age_hours + h) for h in (30, 5, 0)]
    day = times[-1].strftime("%Y-%m-%d")
    directory = lake / table / f"date={day}" / f"hour={times[-1]:%H}"
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "key": pa.array(["1", "2", "3"]),
        "value": pa.array(['{"a": 1}'] * 3),
        "_topic": pa.array([table] * 3),
        "_partition": pa.array([0] * 3, pa.int32()),
        "_offset": pa.array([0, 1, 2], pa.int64()),
        "_timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")),
    }), directory / "topic+0+0.parquet")


def test_source_freshness(dbt_bin, tmp_path):
    lake, target = tmp_path / "lake", tmp_path / "target"
    ages = {
        "raw/clicks": 1, "raw/weblogs": 30, "raw/social_mentions": 60,       # pass, warn, error (26 h / 50 h)
        "raw/visitors": 48, "raw/content": 24 * 10, "raw/ads": 24 * 100,      # Debezium: warn after 168 h, no error
        "raw/subscriptions": 2, "raw/social_outlets": 24 * 30,
        "facts/visitor_activity": 0.5, "facts/conversion": 51, "facts/retention": 27,
        # facts/social_sentiment: never landed
    }
    for table, hours in ages.items():
        land(lake, table, hours)
    manifest = lake / "landing" / "adnet" / "_manifest"
    manifest.mkdir(parents=True)
    (manifest / "orders.csv.json").write_text(json.dumps({
        "remote_path": "/outgoing/orders.csv", "size": 10, "mtime": 1, "sha256": "00",
        "lake_path": "landing/adnet/date=2026-11-25/orders.csv",
        "landed_at": (NOW - timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
    }))
    args = ["source", "freshness", "--target", "freshness"]
    result = run_dbt(dbt_bin, DBT_PROJECT, target, args, lake=lake)
    expected = {
        "lake_raw.clicks": "pass", "lake_raw.weblogs": "warn", "lake_raw.social_mentions": "error",
        "lake_raw.visitors": "pass", "lake_raw.content": "warn", "lake_raw.ads": "warn",
        "lake_raw.subscriptions": "pass", "lake_raw.social_outlets": "warn",
        "lake_facts.visitor_activity": "pass", "lake_facts.conversion": "error", "lake_facts.retention": "warn",
        "lake_landing.partner_files": "pass",
    }
    got = {k.removeprefix("source.happytimes."): v for k, v in statuses(target, "sources.json").items()}
    assert got == expected, result.stdout[-4000:]
    assert result.returncode == 1  # an error fails the DAG task
    # The fact never landed is a runtime error, named in the output (dbt leaves it out of
    # sources.json).
    assert "Runtime Error in source social_sentiment" in result.stdout
    assert f'No files found that match the pattern "{lake}/facts/social_sentiment/**/*.parquet"' in result.stdout

    # The thresholds are vars: with 72 h to error, only the missing table fails; without it, none.
    result = run_dbt(dbt_bin, DBT_PROJECT, target, [*args, "--vars", "{freshness_error_hours: 72}",
                                                    "--exclude", "source:lake_facts.social_sentiment"], lake=lake)
    got = statuses(target, "sources.json")
    assert "error" not in got.values() and got["source.happytimes.lake_raw.social_mentions"] == "warn", \
        result.stdout[-4000:]
    assert result.returncode == 0
    # An error threshold for the Debezium topics (none by default).
    result = run_dbt(dbt_bin, DBT_PROJECT, target, [*args, "--vars", "{cdc_freshness_error_hours: 720}",
                                                    "--select", "source:lake_raw.ads source:lake_raw.content"],
                     lake=lake)
    assert statuses(target, "sources.json") == {"source.happytimes.lake_raw.ads": "error",
                                                "source.happytimes.lake_raw.content": "warn"}
    assert result.returncode == 1
