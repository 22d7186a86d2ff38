"""`make bench` in its tiny mode: both servers, scenarios 2 and 4, counted correctly; never timed."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import components

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory):
    components.node_path()
    output = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "BENCH_TINY": "1", "BENCH_SCENARIOS": "2,4", "BENCH_OUTPUT": str(output)}
    env.pop("BENCH_QUICK", None)
    env.pop("BENCH_PROFILE", None)
    done = subprocess.run(["bash", "bench/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    [result_file] = output.glob("bench-*.json")
    return json.loads(result_file.read_text()), done.stdout


def test_the_run_covers_the_chosen_scenarios_on_both_servers(bench_results):
    results, printed = bench_results
    assert results["meta"]["scale"] == "tiny"
    assert results["meta"]["scenarios"] == [2, 4]
    assert set(results["scenarios"]) == {"2", "4"}
    for number in ("2", "4"):
        assert set(results["scenarios"][number]) >= {"switchboard", "reference", "seconds"}
    assert "(2) " in printed and "(4) " in printed


@pytest.mark.parametrize("server", ["switchboard", "reference"])
def test_every_room_message_reaches_every_other_member_once(bench_results, server):
    room = bench_results[0]["scenarios"]["2"][server]
    assert room["steps"], "no traffic step ran"
    for step in room["steps"]:
        members = room["members"]
        assert step["sent"] > 0
        assert step["acked"] == step["sent"], step["errors"]
        assert step["errors"] == {} and step["unanswered"] == 0
        assert step["expected"] == step["acked"] * (members - 1)
        assert step["delivered"] == step["expected"]
        assert step["missing"] == step["duplicates"] == step["unexpected"] == step["stray"] == 0
        assert step["correct"] is True
        assert step["latency_ms"]["count"] == step["delivered"]
        assert set(step) >= {"deliveries_per_s", "server_cpu", "generator_cpu", "generator_saturated", "ack_ms"}


@pytest.mark.parametrize("server", ["switchboard", "reference"])
def test_ack_round_trips_are_counted_without_errors(bench_results, server):
    runs = bench_results[0]["scenarios"]["4"][server]["runs"]
    assert runs
    for run in runs:
        assert run["acks"] > 0
        assert run["errors"] == {}
        assert run["timed_out"] is False
        assert run["latency_ms"]["count"] == run["acks"]
