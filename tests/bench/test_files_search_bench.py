"""`bench/files_search.py` in its tiny mode: it runs, measures, and reports every upload as stored; never timed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_the_tiny_run_reports_search_percentiles_and_upload_throughput(tmp_path):
    env = {**os.environ, "BENCH_TINY": "1", "BENCH_OUTPUT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "bench/files_search.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [result_file] = tmp_path.glob("files-search-*.json")
    results = json.loads(result_file.read_text())
    assert results["scale"] == "tiny"
    search = results["search"]
    assert search["messages"] == 2_000 and search["queries"] == 20
    assert 0 < search["p50_ms"] <= search["p99_ms"]
    assert search["mean_results"] > 0
    uploads = results["uploads"]
    assert uploads["failed"] == 0 and uploads["uploads"] == 3
    assert uploads["uploads_per_s"] > 0 and 90_000 < uploads["image_bytes"] < 110_000
    assert "p50" in done.stdout and "uploads/s" in done.stdout
