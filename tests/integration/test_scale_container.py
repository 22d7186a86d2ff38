"""The container's runtime pieces without a container engine: docker-entrypoint.sh, HOST/PORT and the health check."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support import api
from tests.support.live_server import ROOT, VENV_BIN, free_port

pytestmark = pytest.mark.integration

ENTRYPOINT = ROOT / "docker-entrypoint.sh"


def image_env(tmp_path: Path, port: int) -> dict:
    """The environment the Dockerfile sets, plus what docker-compose.yml or `docker run -e` would give."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DATABASE_URL", "HOST", "PORT", "FLASK_APP", "SWITCHBOARD_ENV"}
    }
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "SWITCHBOARD_ENV": "production",
            "HOST": "127.0.0.1",  # the image says 0.0.0.0; a test binds loopback only
            "PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "FLASK_APP": "wsgi",
            "SECRET_KEY": "container-secret",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'container.db'}",
            "DB_UPGRADE_ATTEMPTS": "1",
        }
    )
    return env


def healthcheck_command() -> list[str]:
    """The exec-form CMD of the Dockerfile's HEALTHCHECK."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
    assert match, "the Dockerfile has no exec-form HEALTHCHECK"
    return json.loads(match.group(1))


def test_entrypoint_migrates_then_serves_where_host_and_port_say(tmp_path):
    port = free_port()
    env = image_env(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    check = healthcheck_command()
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [str(ENTRYPOINT)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        # The schema exists: registering writes a user and its general membership.
        answer = api.register_and_token(url)
        assert answer["user"]["is_admin"] is False
        healthy = subprocess.run(check, env=env, capture_output=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    unhealthy = subprocess.run(check, env=env, capture_output=True, timeout=30)
    assert unhealthy.returncode != 0


def test_entrypoint_runs_a_given_command_instead_of_migrating_and_serving(tmp_path):
    env = image_env(tmp_path, free_port())
    completed = subprocess.run(
        [str(ENTRYPOINT), "python", "-c", "print('instead of the server')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "instead of the server"
    assert not (tmp_path / "container.db").exists()


def test_entrypoint_gives_up_when_the_database_cannot_be_migrated(tmp_path):
    env = image_env(tmp_path, free_port())
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'missing-directory' / 'container.db'}"
    completed = subprocess.run([str(ENTRYPOINT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert "database upgrade failed 1 times, giving up" in completed.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("SECRET_KEY", None, "SECRET_KEY is not set"),
        ("SECRET_KEY", "", "SECRET_KEY is not set"),
        ("SWITCHBOARD_ENV", "prod", "SWITCHBOARD_ENV must be development, production or testing, not 'prod'"),
    ],
    ids=["no secret key", "empty secret key", "unknown environment"],
)
def test_entrypoint_refuses_a_bad_setting_in_one_line_before_migrating(tmp_path, setting, value, message):
    env = image_env(tmp_path, free_port())
    env["DB_UPGRADE_ATTEMPTS"] = "3"
    if value is None:
        del env[setting]
    else:
        env[setting] = value
    started = time.monotonic()
    completed = subprocess.run([str(ENTRYPOINT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 78
    assert completed.stderr.splitlines() == [completed.stderr.strip()]
    assert message in completed.stderr
    assert "upgrade" not in completed.stderr
    assert not (tmp_path / "container.db").exists()
    assert time.monotonic() - started < 3


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_entrypoint_stops_at_once_on_a_signal_while_retrying_the_migration(tmp_path, signum):
    env = image_env(tmp_path, free_port())
    # Nothing listens there: every upgrade fails and the loop keeps retrying.
    env["DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/switchboard"
    env["DB_UPGRADE_ATTEMPTS"] = "100"
    log_path = tmp_path / "entrypoint.log"
    with open(log_path, "wb") as log:
        entrypoint = subprocess.Popen(
            [str(ENTRYPOINT)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while "retrying in 3s" not in log_path.read_text():
            assert entrypoint.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        # As a container engine does: the signal goes to the entry point only, not to its children.
        entrypoint.send_signal(signum)
        stopped = time.monotonic()
        assert entrypoint.wait(timeout=5) == 143, log_path.read_text()
        assert time.monotonic() - stopped < 2
        assert "docker-entrypoint: stopped before the server started" in log_path.read_text()
        # The step it was running (an upgrade or the pause between two) went with it.
        deadline = time.monotonic() + 5
        while group_alive(entrypoint.pid):
            assert time.monotonic() < deadline, "a migration step outlived the entry point"
            time.sleep(0.1)
    finally:
        if group_alive(entrypoint.pid):
            os.killpg(entrypoint.pid, signal.SIGKILL)
        entrypoint.wait(timeout=5)
