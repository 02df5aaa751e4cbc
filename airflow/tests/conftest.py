"""Test setup: Airflow writes only under a temporary AIRFLOW_HOME, never to $HOME."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"

# Must happen before anything imports airflow (it reads AIRFLOW_HOME on import).
_home = tempfile.mkdtemp(prefix="happytimes-airflow-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
# The tests choose the DAG's configuration themselves.
for _var in (
    "HAPPYTIMES_SFTP_CONFIG",
    "HAPPYTIMES_CHECKS_CONFIG",
    "HAPPYTIMES_LAKE_TABLES",
    "HAPPYTIMES_LAKE_DIR",
    "HAPPYTIMES_ALERT_WEBHOOK",
    "HAPPYTIMES_RETRIES",
    "HAPPYTIMES_RETRY_DELAY_SECONDS",
):
    os.environ.pop(_var, None)
sys.path.insert(0, str(DAGS_DIR))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_home, ignore_errors=True)


@pytest.fixture
def dags_dir() -> Path:
    return DAGS_DIR
