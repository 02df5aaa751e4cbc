"""The stream's final funnel equals the dbt marts (docs/FUNNEL.md), value for value.

    python compare.py STREAM_DIR DUCKDB_FILE [LAKE_DIR]

STREAM_DIR holds `<topic>.latest.jsonl` files: the last value per key of each funnel topic
(`happystreams replay` writes them; the end-to-end test reads them from Kafka). With LAKE_DIR,
the facts landed in the lake (`facts/<name>/`) must also hold exactly the records of
STREAM_DIR's `happytimes.facts.<name>.jsonl`. Exit 0 when everything matches, 1 with the
differences otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path

import duckdb


def ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def stream(directory: Path, topic: str) -> list[dict]:
    path = directory / f"happytimes.funnel.{topic}.latest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["value"] for line in path.read_text().splitlines() if line.strip()]


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# funnel -> (key fields, value fields, how a stream row becomes {field: value})
FUNNELS = {
    "awareness": (["visitor_source", "window_start_ms"], ["visitors", "events"]),
    "consideration": (["content_id", "window_start_ms"], ["views", "viewers"]),
    "consideration_top": (["window_start_ms"], ["top_content"]),
    "conversion": (["campaign", "click_day"], ["clicks", "conversions", "conversion_rate"]),
    "loyalty": (["cohort_week"], ["cohort_size", "retained", "retention_rate"]),
    "advocacy": (["outlet_id", "window_start_ms"], ["mentions", "avg_sentiment", "positive", "neutral", "negative"]),
}


FACTS = ["visitor_activity", "conversion", "retention", "social_sentiment"]


def canonical(row: dict) -> str:
    # The lake's columns are typed by the facts' Avro schemas; the Kafka side is the decoded
    # record as JSON (timestamps as ISO text with milliseconds, decimals as text). Both become
    # the same text per value.
    def text(v):
        if v is None:
            return None
        if isinstance(v, dt.datetime):
            return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if isinstance(v, (bool, list, dict)):
            return json.dumps(v)
        return str(v)

    return json.dumps({k: text(v) for k, v in row.items() if not k.startswith("_")}, sort_keys=True)


def compare_facts(stream_dir: Path, lake: Path) -> int:
    failures = 0
    con = duckdb.connect()
    for fact in FACTS:
        kafka = sorted(
            canonical(json.loads(line))
            for line in (stream_dir / f"happytimes.facts.{fact}.jsonl").read_text().splitlines()
            if line.strip()
        )
        cursor = con.execute(f"select * from read_parquet('{lake}/facts/{fact}/**/*.parquet', union_by_name = true, hive_partitioning = false)")
        columns = [d[0] for d in cursor.description]
        landed = sorted(canonical(dict(zip(columns, row))) for row in cursor.fetchall())
        status = "ok" if kafka == landed else "DIFFERENT"
        print(f"fact {fact:18} {len(kafka):6} Kafka records, {len(landed):6} lake rows: {status}")
        if kafka != landed:
            only_kafka = sorted(set(kafka) - set(landed))[:3]
            only_lake = sorted(set(landed) - set(kafka))[:3]
            print(f"    only in Kafka: {only_kafka}\n    only in the lake: {only_lake}")
            failures += 1
        if not kafka:
            print("    (no records: nothing was compared)")
            failures += 1
    return failures


def main(stream_dir: Path, database: Path, lake: Path | None = None) -> int:
    con = duckdb.connect(str(database), read_only=True)
    failures = 0
    for funnel, (keys, values) in FUNNELS.items():
        cursor = con.execute(f"select * from funnel_{funnel}")
        columns = [d[0] for d in cursor.description]
        batch = {}
        for row in cursor.fetchall():
            record = dict(zip(columns, row))
            batch[tuple(record[k] for k in keys)] = {v: record[v] for v in values}
        streamed = {}
        for row in stream(stream_dir, funnel):
            if "window_start" in row:
                row["window_start_ms"] = ms(row["window_start"])
            streamed[tuple(row[k] for k in keys)] = {v: row.get(v) for v in values}
        missing = sorted(set(batch) - set(streamed), key=str)
        extra = sorted(set(streamed) - set(batch), key=str)
        differ = sorted((k for k in set(batch) & set(streamed) if not same(batch[k], streamed[k])), key=str)
        status = "ok" if not (missing or extra or differ) else "DIFFERENT"
        print(f"{funnel:18} {len(batch):5} batch rows, {len(streamed):5} stream rows: {status}")
        for key in missing[:5]:
            print(f"    only in dbt:    {key} {batch[key]}")
        for key in extra[:5]:
            print(f"    only in stream: {key} {streamed[key]}")
        for key in differ[:5]:
            print(f"    {key}: dbt {batch[key]} != stream {streamed[key]}")
        if not batch:
            print("    (no rows: nothing was compared)")
            failures += 1
        failures += bool(missing or extra or differ)
    if lake is not None:
        failures += compare_facts(stream_dir, lake)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None))
