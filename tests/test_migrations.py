"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def flask_db(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """``flask db ARGS`` in a fresh process, as an operator runs it."""
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "TEST_DATABASE_URL")}
    env.update(SWITCHBOARD_ENV="development", DATABASE_URL=database_url, FLASK_APP="wsgi")
    return subprocess.run(
        [sys.executable, "-m", "flask", "db", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_ok(database_url: str, *args: str) -> str:
    result = flask_db(database_url, *args)
    assert result.returncode == 0, f"flask db {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_upgrade_then_check_finds_no_drift(database_url):
    run_ok(database_url, "upgrade")
    output = run_ok(database_url, "check")
    assert "No new upgrade operations detected" in output


def test_check_reports_drift(database_url):
    """The check above can fail: a table the models do not know is reported."""
    run_ok(database_url, "upgrade")
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
        conn.execute("CREATE TABLE stray (id INTEGER PRIMARY KEY)")
    result = flask_db(database_url, "check")
    assert result.returncode != 0
    assert "stray" in result.stdout + result.stderr
