"""HappyTimes daily batch: partner files from SFTP into the lake, dbt models over it, data checks.

    sftp_sync_<partner> (one per partner, in parallel)
        >> dbt_build
        >> check_freshness_<table>, check_volume_<table> (one pair per lake table)

Configuration (environment of the scheduler / DAG processor for the task list, of the worker
for the rest; see airflow/README.md):

    HAPPYTIMES_SFTP_CONFIG    YAML/JSON listing the partners (default: adnet, affiliates)
    HAPPYTIMES_CHECKS_CONFIG  YAML/JSON listing the lake tables and thresholds
    HAPPYTIMES_LAKE_TABLES    comma-separated tables, when there is no checks config
    HAPPYTIMES_CONFIG         happystreams configuration passed to ``sftp-sync --config``
    HAPPYSTREAMS_BIN          happystreams binary (default: happystreams on PATH)
    HAPPYTIMES_DBT_DIR        dbt project directory, also holding profiles.yml
    HAPPYTIMES_DBT_SELECT     optional dbt node selection for dbt_build (default: every model)
    DBT_BIN                   dbt binary (default: dbt on PATH)
    HAPPYTIMES_LAKE_DIR       lake root read by the checks (directory or s3:// URI)
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
DBT_BUILD = (
    '"${DBT_BIN:-dbt}" build '
    '--project-dir "${HAPPYTIMES_DBT_DIR:?HAPPYTIMES_DBT_DIR is not set}" '
    '--profiles-dir "${HAPPYTIMES_DBT_DIR}"'
    '${HAPPYTIMES_DBT_SELECT:+ --select "$HAPPYTIMES_DBT_SELECT"}'
)

with DAG(
    dag_id="happytimes",
    description="SFTP partner files -> lake -> dbt build -> freshness and volume checks",
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

    sftp_tasks >> dbt_build >> check_tasks
