"""HappyTimes daily batch: partner files from SFTP into the lake, dbt models over it, data checks.

    sftp_sync_<partner> (one per partner, in parallel)
        >> dbt_build                  dbt build (models and their tests, but tag:anomaly)
        >> dbt_source_freshness       dbt source freshness (the lake's sources, models/sources.yml)
           dbt_test_anomaly           dbt test --select tag:anomaly (volume anomalies of facts and marts)
           check_freshness_<table>, check_volume_<table> (one pair per lake table)

Configuration (environment of the scheduler / DAG processor for the task list, of the worker
for the rest; see airflow/README.md):

    HAPPYTIMES_SFTP_CONFIG    YAML/JSON listing the partners (default: adnet, affiliates)
    HAPPYTIMES_CHECKS_CONFIG  YAML/JSON listing the lake tables and thresholds
    HAPPYTIMES_LAKE_TABLES    comma-separated tables, when there is no checks config
    HAPPYTIMES_CONFIG         happystreams configuration passed to ``sftp-sync --config``
    HAPPYSTREAMS_BIN          happystreams binary (default: happystreams on PATH)
    HAPPYTIMES_DBT_DIR        dbt project directory, also holding profiles.yml
    HAPPYTIMES_DBT_SELECT     optional dbt node selection for dbt_build (default: every model)
    HAPPYTIMES_DBT_FRESHNESS_SELECT  optional selection for dbt_source_freshness (default: every source)
    HAPPYTIMES_DBT_ANOMALY_SELECT    selection for dbt_test_anomaly (default: tag:anomaly)
    HAPPYTIMES_DBT_VARS       optional ``--vars`` (YAML) for every dbt task, e.g. thresholds
    DBT_BIN                   dbt binary (default: dbt on PATH)
    DBT_TARGET_PATH           dbt's target directory (default: target/ in the dbt project)
    HAPPYTIMES_LAKE_DIR       lake root read by dbt and the checks (directory or s3:// URI)
    HAPPYTIMES_ALERT_WEBHOOK  optional URL that receives a JSON POST per failed task
    HAPPYTIMES_RETRIES        retries per task (default 2, exponential backoff)
    HAPPYTIMES_RETRY_DELAY_SECONDS  first retry delay (default 300)
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

# The DAGs folder is on sys.path when Airflow parses it; also when this file is loaded directly.
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

import happytimes_checks as checks  # noqa: E402

PARTNERS = checks.load_partners()
TABLES = checks.load_tables()

default_args = {
    "owner": "happytimes",
    # Overridable for local runs (`airflow dags test` waits out every retry delay).
    "retries": int(os.environ.get("HAPPYTIMES_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("HAPPYTIMES_RETRY_DELAY_SECONDS", "300"))),
    "retry_exponential_backoff": 2.0,  # 5 min, then 10 min
    "max_retry_delay": timedelta(hours=1),
    "on_failure_callback": checks.alert_on_failure,
}

# Binaries and directories are resolved by the shell when the task runs, so the worker's
# environment decides them; a missing required variable fails the task with its name.
SFTP_SYNC = (
    '"${HAPPYSTREAMS_BIN:-happystreams}" sftp-sync '
    '--config "${HAPPYTIMES_CONFIG:?HAPPYTIMES_CONFIG is not set}" --source %s'
)
# dbt runs in the project directory (Airflow runs commands in a temporary one), so the relative
# defaults of the profile and dbt -- target/ for the artifacts and the DuckDB catalog -- are the
# same directory for every dbt task: dbt_test_anomaly tests the tables dbt_build built.
DBT = (
    'cd "${HAPPYTIMES_DBT_DIR:?HAPPYTIMES_DBT_DIR is not set}" && '
    '"${DBT_BIN:-dbt}" %s --project-dir . --profiles-dir .'
    '${HAPPYTIMES_DBT_VARS:+ --vars "$HAPPYTIMES_DBT_VARS"}'
)
# The models and their tests, but the volume anomaly tests: a day of unusual volume is reported
# by dbt_test_anomaly and does not stop the marts from being built (dbt build skips the children
# of a failed test).
DBT_BUILD = DBT % "build" + (
    ' --exclude tag:anomaly'
    '${HAPPYTIMES_DBT_SELECT:+ --select "$HAPPYTIMES_DBT_SELECT"}'
)
# The lake's sources (dbt/models/sources.yml), read straight from its files: the `freshness`
# target is an in-memory DuckDB and the artifacts go to their own target path, so this runs
# beside dbt_test_anomaly without taking the catalog's lock or sharing dbt's target directory.
DBT_SOURCE_FRESHNESS = DBT % "source freshness" + (
    ' --target freshness --target-path "${DBT_TARGET_PATH:-target}/freshness"'
    '${HAPPYTIMES_DBT_FRESHNESS_SELECT:+ --select "$HAPPYTIMES_DBT_FRESHNESS_SELECT"}'
)
# The volume anomaly tests (tag:anomaly) on the tables dbt_build just built.
DBT_TEST_ANOMALY = DBT % "test" + ' --select "${HAPPYTIMES_DBT_ANOMALY_SELECT:-tag:anomaly}"'

with DAG(
    dag_id="happytimes",
    description="SFTP partner files -> lake -> dbt build -> source freshness, volume anomalies, lake checks",
    doc_md=__doc__,
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["happytimes", "lake", "dbt"],
) as dag:
    sftp_tasks = [
        BashOperator(
            task_id=f"sftp_sync_{partner}",
            bash_command=SFTP_SYNC % shlex.quote(partner),
            execution_timeout=timedelta(hours=2),
        )
        for partner in PARTNERS
    ]

    dbt_build = BashOperator(
        task_id="dbt_build",
        bash_command=DBT_BUILD,
        execution_timeout=timedelta(hours=2),
    )
    # Both after the build, side by side: a stale source and an anomalous day are separate
    # alerts (each task's failure names it), and neither stops the other.
    dbt_tasks = [
        BashOperator(
            task_id="dbt_source_freshness",
            bash_command=DBT_SOURCE_FRESHNESS,
            execution_timeout=timedelta(minutes=30),
        ),
        BashOperator(
            task_id="dbt_test_anomaly",
            bash_command=DBT_TEST_ANOMALY,
            execution_timeout=timedelta(minutes=30),
        ),
    ]

    check_tasks = []
    for table in TABLES:
        spec = dataclasses.asdict(table)
        check_tasks.append(
            PythonOperator(
                task_id=f"check_freshness_{table.name}",
                python_callable=checks.freshness_task,
                op_kwargs={"table": spec},
                execution_timeout=timedelta(minutes=30),
            )
        )
        check_tasks.append(
            PythonOperator(
                task_id=f"check_volume_{table.name}",
                python_callable=checks.volume_task,
                op_kwargs={"table": spec},
                execution_timeout=timedelta(minutes=30),
            )
        )

    sftp_tasks >> dbt_build >> dbt_tasks + check_tasks
