"""The browser's delivery rules (static/js, DOM-free modules) under Node's own test runner."""

import subprocess

from tests.support import components
from tests.support.live_server import ROOT


def test_node_unit_tests_pass():
    result = subprocess.run(
        [components.node_path(), "--test", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout, result.stdout
