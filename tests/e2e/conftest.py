"""Browser tests: Debian's Chromium driven by Playwright against a real server."""

from pathlib import Path

import pytest

from tests.support import components

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

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


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots land here (ignored by git) so a person can look at what users see."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
