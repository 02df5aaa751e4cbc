"""Configuration, data checks and failure alerts for the ``happytimes`` DAG.

Kept free of Airflow imports so it can be unit-tested on its own. The checks read the lake's
Parquet tables (Hive-style partitions) with pyarrow:

* freshness: the newest value of the table's timestamp column is at most ``max_age_hours`` old;
* volume: the table has at least ``min_rows`` rows.

A failed check raises :class:`CheckFailed` with a message that names the table, what was found and
the limit, which fails the Airflow task (and so triggers its retries and the failure alert).
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PARTNERS = ("adnet", "affiliates")
# The HappyTimes fact tables in the lake (see HAPPYTIMES.md: Facts).
DEFAULT_TABLES = ("visitor_activity", "conversion", "retention", "social_sentiment")
DEFAULT_TIMESTAMP_COLUMN = "event_time"
DEFAULT_MAX_AGE_HOURS = 26.0  # a daily load plus slack
DEFAULT_MIN_ROWS = 1
DEFAULT_LAKE_DIR = "lake"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EPOCH_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class CheckFailed(Exception):
    """A data check found the table stale, too small, missing or unreadable."""


class ConfigError(ValueError):
    """The DAG's configuration file is malformed."""


# --------------------------------------------------------------------------- configuration


def _load_file(path: str | os.PathLike) -> Any:
    text = Path(path).read_text(encoding="utf-8")
    try:
        import yaml  # Airflow depends on PyYAML; YAML is a superset of JSON
    except ImportError:  # pragma: no cover - only without PyYAML
        return json.loads(text)
    return yaml.safe_load(text)


def _check_name(name: Any, what: str, path: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{path}: invalid {what} name {name!r} (letters, digits, '_', '-', '.'; "
            "it becomes part of a task id)"
        )
    return name


def load_partners(path: str | os.PathLike | None = None) -> list[str]:
    """The SFTP partners (sources) to sync, in file order.

    ``path`` defaults to env ``HAPPYTIMES_SFTP_CONFIG``; without it, :data:`DEFAULT_PARTNERS`.
    The file (YAML or JSON) is a list of names or of ``{name: ...}`` objects, or a mapping whose
    ``sources`` / ``partners`` / ``remotes`` key (optionally under ``sftp``) is such a list or a
    mapping keyed by name -- so the sftp-sync configuration itself can be used.
    """
    path = path if path is not None else os.environ.get("HAPPYTIMES_SFTP_CONFIG")
    if not path:
        return list(DEFAULT_PARTNERS)
    doc = _load_file(path)
    if isinstance(doc, dict) and isinstance(doc.get("sftp"), dict):
        doc = doc["sftp"]
    if isinstance(doc, dict):
        for key in ("sources", "partners", "remotes"):
            if key in doc:
                doc = doc[key]
                break
        else:
            raise ConfigError(f"{path}: expected a list of partners or a 'sources' key")
    if isinstance(doc, dict):
        names = list(doc)
    elif isinstance(doc, list):
        names = [item.get("name") if isinstance(item, dict) else item for item in doc]
    else:
        raise ConfigError(f"{path}: expected a list of partners, got {type(doc).__name__}")
    names = [_check_name(n, "partner", path) for n in names]
    if not names:
        raise ConfigError(f"{path}: no partners configured")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate partner names")
    return names


@dataclass(frozen=True)
class TableSpec:
    """One lake table and its check thresholds."""

    name: str
    path: str  # relative to the lake root, or absolute / a URI
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN
    timestamp_unit: str = "ms"  # for integer columns: epoch s, ms, us or ns
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS
    min_rows: int = DEFAULT_MIN_ROWS

    def location(self, lake_dir: str | None = None) -> str:
        """The table's path: ``path`` joined to the lake root unless it is absolute or a URI."""
        if "://" in self.path or os.path.isabs(self.path):
            return self.path
        root = lake_dir or lake_root()
        return f"{root.rstrip('/')}/{self.path}"


_TABLE_KEYS = {"path", "timestamp_column", "timestamp_unit", "max_age_hours", "min_rows"}


def _table(name: str, settings: dict, defaults: dict, path: Any) -> TableSpec:
    unknown = set(settings) - _TABLE_KEYS - {"name"}
    if unknown:
        raise ConfigError(f"{path}: table {name}: unknown settings {sorted(unknown)}")
    merged = {**defaults, **{k: v for k, v in settings.items() if k != "name"}}
    spec = TableSpec(name=name, path=merged.pop("path", name), **merged)
    if spec.timestamp_unit not in _EPOCH_UNITS:
        raise ConfigError(f"{path}: table {name}: timestamp_unit must be one of {sorted(_EPOCH_UNITS)}")
    return spec


def load_tables(path: str | os.PathLike | None = None) -> list[TableSpec]:
    """The lake tables to check.

    ``path`` defaults to env ``HAPPYTIMES_CHECKS_CONFIG``; without it, env
    ``HAPPYTIMES_LAKE_TABLES`` (comma-separated names) or :data:`DEFAULT_TABLES`, each at
    ``<lake>/<name>`` with the default thresholds. The file (YAML or JSON)::

        defaults: {timestamp_column: event_time, max_age_hours: 26, min_rows: 1}
        tables:
          visitor_activity: {}
          conversion: {timestamp_column: click_time, max_age_hours: 48}
          social_sentiment: {path: facts/social_sentiment, min_rows: 10}

    ``tables`` may also be a list of names or of objects with a ``name``.
    """
    path = path if path is not None else os.environ.get("HAPPYTIMES_CHECKS_CONFIG")
    if not path:
        env = os.environ.get("HAPPYTIMES_LAKE_TABLES", "")
        names = [n.strip() for n in env.split(",") if n.strip()] or list(DEFAULT_TABLES)
        return [TableSpec(name=_check_name(n, "table", "HAPPYTIMES_LAKE_TABLES"), path=n) for n in names]
    doc = _load_file(path) or {}
    if isinstance(doc, list):
        doc = {"tables": doc}
    if not isinstance(doc, dict) or "tables" not in doc:
        raise ConfigError(f"{path}: expected a 'tables' key")
    defaults = doc.get("defaults") or {}
    unknown = (set(defaults) - _TABLE_KEYS) | ({"path"} & set(defaults))
    if unknown:
        raise ConfigError(f"{path}: unknown or per-table-only defaults {sorted(unknown)}")
    tables = doc["tables"]
    specs: list[TableSpec] = []
    if isinstance(tables, dict):
        for name, settings in tables.items():
            specs.append(_table(_check_name(name, "table", path), settings or {}, defaults, path))
    elif isinstance(tables, list):
        for item in tables:
            settings = item if isinstance(item, dict) else {"name": item}
            specs.append(_table(_check_name(settings.get("name"), "table", path), settings, defaults, path))
    else:
        raise ConfigError(f"{path}: 'tables' must be a mapping or a list")
    if not specs:
        raise ConfigError(f"{path}: no tables configured")
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"{path}: duplicate table names")
    return specs


def lake_root() -> str:
    """The lake root: env ``HAPPYTIMES_LAKE_DIR`` (a directory or an ``s3://`` URI)."""
    return os.environ.get("HAPPYTIMES_LAKE_DIR", DEFAULT_LAKE_DIR)


# --------------------------------------------------------------------------- checks


def _filesystem(location: str):
    """(filesystem, path) for pyarrow; S3 honours AWS_ENDPOINT_URL(_S3) and AWS_REGION."""
    if not location.startswith("s3://"):
        return None, location
    from pyarrow import fs

    kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, sep, host = endpoint.partition("://")
        kwargs["endpoint_override"] = host.rstrip("/") if sep else scheme
        kwargs["scheme"] = scheme if sep else "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return fs.S3FileSystem(**kwargs), location[len("s3://"):]


def _dataset(spec: TableSpec, lake_dir: str | None):
    import pyarrow.dataset as ds

    location = spec.location(lake_dir)
    try:
        filesystem, path = _filesystem(location)
        # Files whose names start with '.' or '_' (in-progress writes) are ignored.
        return location, ds.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")
    except (FileNotFoundError, OSError) as exc:
        raise CheckFailed(f"table {spec.name}: no Parquet data at {location} ({exc})") from exc
    except Exception as exc:  # pyarrow raises ArrowInvalid for unreadable files
        raise CheckFailed(f"table {spec.name}: cannot read {location}: {exc}") from exc


def _as_utc(value: Any, spec: TableSpec) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / _EPOCH_UNITS[spec.timestamp_unit], tz=timezone.utc)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return _as_utc(parsed, spec)
    raise CheckFailed(
        f"table {spec.name}: column {spec.timestamp_column} has unsupported type {type(value).__name__}"
    )


def _fmt_hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def check_freshness(spec: TableSpec, lake_dir: str | None = None, now: datetime | None = None) -> dict:
    """Fail unless the newest ``spec.timestamp_column`` value is at most ``max_age_hours`` old."""
    import pyarrow.compute as pc

    location, dataset = _dataset(spec, lake_dir)
    column = spec.timestamp_column
    if column not in dataset.schema.names:
        raise CheckFailed(
            f"freshness check failed for table {spec.name}: no column {column!r} in {location} "
            f"(columns: {', '.join(dataset.schema.names) or 'none'})"
        )
    newest = None
    for batch in dataset.to_batches(columns=[column]):
        if batch.num_rows == 0:
            continue
        value = pc.max(batch.column(0)).as_py()
        if value is not None:
            value = _as_utc(value, spec)
            newest = value if newest is None or value > newest else newest
    if newest is None:
        raise CheckFailed(
            f"freshness check failed for table {spec.name}: no rows with a {column} in {location}"
        )
    now = now or datetime.now(timezone.utc)
    age = now - newest
    limit = timedelta(hours=spec.max_age_hours)
    if age > limit:
        raise CheckFailed(
            f"freshness check failed for table {spec.name}: newest {column} is "
            f"{newest.isoformat()}, {_fmt_hours(age)} old, over the {_fmt_hours(limit)} limit"
        )
    log.info("table %s is fresh: newest %s %s (%s old)", spec.name, column, newest.isoformat(), _fmt_hours(age))
    return {"table": spec.name, "newest": newest.isoformat(), "age_hours": round(age.total_seconds() / 3600, 3)}


def check_volume(spec: TableSpec, lake_dir: str | None = None) -> dict:
    """Fail unless the table has at least ``min_rows`` rows."""
    location, dataset = _dataset(spec, lake_dir)
    rows = dataset.count_rows()
    if rows < spec.min_rows:
        raise CheckFailed(
            f"volume check failed for table {spec.name}: {rows} rows in {location}, "
            f"expected at least {spec.min_rows}"
        )
    log.info("table %s has %d rows (minimum %d)", spec.name, rows, spec.min_rows)
    return {"table": spec.name, "rows": rows}


def freshness_task(table: dict, **_context: Any) -> dict:
    """PythonOperator entry point: the lake root is read from the environment at run time."""
    return check_freshness(TableSpec(**table))


def volume_task(table: dict, **_context: Any) -> dict:
    """PythonOperator entry point: the lake root is read from the environment at run time."""
    return check_volume(TableSpec(**table))


# --------------------------------------------------------------------------- alerts


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None) if obj is not None else None


def alert_payload(context: dict) -> dict:
    """What a failure alert says: which task of which run failed, and why (no configuration)."""
    ti = context.get("ti") or context.get("task_instance")
    run = context.get("dag_run")
    exc = context.get("exception")
    logical = context.get("logical_date") or _get(run, "logical_date")
    return {
        "event": "task_failed",
        "dag_id": _get(ti, "dag_id") or _get(run, "dag_id"),
        "task_id": _get(ti, "task_id"),
        "run_id": _get(ti, "run_id") or _get(run, "run_id"),
        "logical_date": logical.isoformat() if hasattr(logical, "isoformat") else logical,
        "try_number": _get(ti, "try_number"),
        "error": (f"{type(exc).__name__}: {exc}"[:1000]) if exc is not None else None,
    }


def alert_on_failure(context: dict) -> None:
    """Task failure callback: log one ALERT line; POST it as JSON to HAPPYTIMES_ALERT_WEBHOOK if set.

    The webhook URL may carry a token, so it is never logged; nor is anything from the environment.
    """
    payload = alert_payload(context)
    log.error(
        "ALERT happytimes: task %s failed (run %s, try %s): %s",
        payload["task_id"], payload["run_id"], payload["try_number"], payload["error"],
    )
    url = os.environ.get("HAPPYTIMES_ALERT_WEBHOOK")
    if not url:
        return
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            log.info("alert sent to the webhook (HTTP %s)", response.status)
    except urllib.error.HTTPError as exc:
        log.error("alert webhook answered HTTP %s", exc.code)
    except Exception as exc:  # never let alerting hide the task's own failure
        log.error("alert webhook failed: %s", type(exc).__name__)
