"""Browser tests: Debian's Chromium driven by Playwright against a real server."""

from pathlib import Path

import pytest

from tests.e2e.bots import Bot, make_admin
from tests.e2e.pages import MODES, new_username
from tests.support import components
from tests.support.live_server import LiveServer

ARTIFACTS = Path(__file__).resolve().parent / "screenshots"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": components.chromium_path(),
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


@pytest.fixture(params=list(MODES))
def mode(request) -> str:
    """The name of the viewport and colour scheme a test runs in (one of MODES)."""
    return request.param


@pytest.fixture
def mode_context(make_context, shared_server, mode):
    """Open a browser context on the shared server in this test's mode (extra options win)."""

    def open_context(**kwargs):
        return make_context(shared_server.url, **{**MODES[mode], **kwargs})

    return open_context


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots land here (ignored by git) so a person can look at what users see."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def make_context(browser):
    """Open browser contexts (independent cookie jars and storage, one per user): closed at teardown.

    Built on ``browser.new_context`` rather than pytest-playwright's ``new_context``, whose
    ``base_url`` fixture trips a pytest deprecation warning (warnings are errors here).
    """
    contexts = []

    def open_context(base_url: str, **kwargs):
        context = browser.new_context(base_url=base_url, **kwargs)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


# The rate limit's window on the shared server: waiting out a `rate_limited` answer takes a few
# seconds instead of ten (the count stays the contract's 20).
RATE_LIMIT_WINDOW_SECONDS = 3


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One real server (gunicorn + gevent-websocket, fresh SQLite file) for the whole e2e session.

    Migrating and starting a server costs seconds on a busy machine, so scenarios that only need
    fresh accounts and rooms of their own share one; tests that stop the server use ``live_server``.
    """
    folder = tmp_path_factory.mktemp("shared_server")
    server = LiveServer(
        f"sqlite:///{folder / 'chat.db'}",
        folder / "server.log",
        env={"RATE_LIMIT_WINDOW_SECONDS": str(RATE_LIMIT_WINDOW_SECONDS)},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_admin(shared_server) -> str:
    """The username of one admin on the shared server, made once with the CLI (each run costs seconds)."""
    username = new_username("boss")
    make_admin(shared_server, username)
    return username


@pytest.fixture
def bots(shared_server):
    """Start python-socketio participants (signed-in users) on the shared server; closed at teardown."""
    started = []

    def start(username: str | None = None, *, namespace: str = "/") -> Bot:
        bot = Bot(shared_server.url, username, namespace=namespace)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.close()
