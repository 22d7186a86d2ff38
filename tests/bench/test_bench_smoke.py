"""`make bench` in its tiny mode, never timed: scenarios 2, 4 and 5 against Switchboard and both
Node references (in memory, and persisting with pg), scenario 5 on SQLite and on PostgreSQL with
browsers' `read` markers, py-spy profiles, and the target table."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import components

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SERVERS = ["switchboard", "reference", "reference_pg"]
PERSISTING = ["switchboard", "switchboard_pg", "reference", "reference_pg"]
STATUSES = {"met", "missed", "not measured", "not run"}


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory):
    components.node_path()
    if not components.postgres_available():
        components.missing("PostgreSQL is not reachable")
    output = tmp_path_factory.mktemp("bench")
    env = {
        **os.environ,
        "BENCH_TINY": "1",
        "BENCH_SCENARIOS": "2,4,5",
        "BENCH_PROFILE": "1",
        "BENCH_OUTPUT": str(output),
    }
    for variable in ("BENCH_QUICK", "BENCH_ROOM_RATES", "BENCH_BIG_ROOM_RATES", "BENCH_PERSIST_RATES"):
        env.pop(variable, None)
    done = subprocess.run(["bash", "bench/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    [result_file] = output.glob("bench-*.json")
    return json.loads(result_file.read_text()), done.stdout


def assert_delivered_exactly_once(step: dict, members: int) -> None:
    summary = {key: value for key, value in step.items() if key not in ("profile", "loop_delay_ms")}
    assert step["sent"] > 0
    assert step["acked"] == step["sent"], summary
    assert step["errors"] == {} and step["unanswered"] == 0, summary
    assert step["expected"] == step["acked"] * (members - 1)
    assert step["delivered"] == step["expected"], summary
    assert step["missing"] == step["duplicates"] == step["unexpected"] == step["stray"] == 0
    assert step["correct"] is True
    assert step["latency_ms"]["count"] == step["delivered"]
    assert set(step) >= {"deliveries_per_s", "server_cpu", "generator_cpu", "generator_saturated", "ack_ms", "tail_ms"}


def test_the_run_covers_the_chosen_scenarios_on_every_server(bench_results):
    results, printed = bench_results
    assert results["meta"]["scale"] == "tiny"
    assert results["meta"]["scenarios"] == [2, 4, 5]
    assert results["meta"]["postgres_missing"] is None
    assert set(results["scenarios"]) == {"2", "4", "5"}
    for number in ("2", "4"):
        assert set(results["scenarios"][number]) >= {*SERVERS, "seconds"}
    assert set(results["scenarios"]["5"]) >= {*PERSISTING, "seconds"}
    for kind in PERSISTING:
        assert "failed" not in results["scenarios"]["5"][kind], results["scenarios"]["5"][kind]
    assert "(2) " in printed and "(4) " in printed and "(5) " in printed
    assert "Switchboard on SQLite:" in printed and "Switchboard on PostgreSQL:" in printed


@pytest.mark.parametrize("server", SERVERS)
def test_every_room_message_reaches_every_other_member_once(bench_results, server):
    room = bench_results[0]["scenarios"]["2"][server]
    assert room["steps"], "no traffic step ran"
    for step in room["steps"]:
        assert_delivered_exactly_once(step, room["members"])


@pytest.mark.parametrize("server", SERVERS)
def test_ack_round_trips_are_counted_without_errors(bench_results, server):
    runs = bench_results[0]["scenarios"]["4"][server]["runs"]
    assert runs
    for run in runs:
        assert run["acks"] > 0
        assert run["errors"] == {}
        assert run["timed_out"] is False
        assert run["latency_ms"]["count"] == run["acks"]


@pytest.mark.parametrize("server", PERSISTING)
def test_persisted_messages_come_with_browser_read_markers_that_all_succeed(bench_results, server):
    persist = bench_results[0]["scenarios"]["5"][server]
    assert persist["steps"], "no traffic step ran"
    for step in persist["steps"]:
        assert_delivered_exactly_once(step, persist["members"])
        reads = step["reads"]
        # Every client that saw a message sends at least one marker once the room goes quiet.
        assert reads["sent"] >= persist["members"]
        assert reads["ok"] == reads["sent"], reads
        assert reads["errors"] == {} and reads["unanswered"] == 0
        assert reads["ack_ms"]["count"] == reads["sent"]


@pytest.mark.parametrize("server", ["switchboard", "switchboard_pg", "reference_pg"])
def test_every_acked_message_is_stored_under_its_id(bench_results, server):
    persist = bench_results[0]["scenarios"]["5"][server]
    check = persist["database_check"]
    assert check["acked"] == sum(step["acked"] for step in persist["steps"]) > 0
    assert check["lost"] == 0, check["lost_examples"]
    assert check["stored"] >= check["acked"]


def test_every_switchboard_step_was_profiled(bench_results):
    results = bench_results[0]
    for number, server in (("2", "switchboard"), ("5", "switchboard"), ("5", "switchboard_pg")):
        for step in results["scenarios"][number][server]["steps"]:
            assert "profile" in step, (number, server)
    for number in ("2", "4", "5"):
        for server in ("reference", "reference_pg"):
            for step in results["scenarios"][number][server].get("steps", []):
                assert "profile" not in step


@pytest.mark.parametrize("server", ["switchboard", "switchboard_pg"])
def test_profiles_under_persisted_load_are_summarised_and_printed(bench_results, server):
    # Scenario 5 keeps the worker busy enough (messages, commits, read markers) that a second of
    # sampling always finds it running; the tiny room of scenario 2 may leave it idle throughout.
    profile = bench_results[0]["scenarios"]["5"][server]["steps"][-1]["profile"]
    assert profile["samples"] > 0, profile
    assert profile["own_pct"] and profile["inclusive_pct"]
    assert Path(profile["file"]).name.startswith(f"s5-{server}-profile-")
    name = "SB on PostgreSQL" if server == "switchboard_pg" else "SB"
    assert f"py-spy, {name} at " in bench_results[1]


def test_every_target_is_printed_with_a_status(bench_results):
    results, printed = bench_results
    targets = results["targets"]
    assert len(targets) == 10
    assert {row["status"] for row in targets} <= STATUSES
    by_scenario = {}
    for row in targets:
        by_scenario.setdefault(row["scenario"], []).append(row)
        assert f"({row['scenario']}) {row['target']}: {row['figure']}" in printed
    assert sorted(by_scenario) == ["1", "2", "3", "4", "5", "6"]
    for number in ("1", "3", "6"):
        assert {row["status"] for row in by_scenario[number]} == {"not run"}
    # Scenario 4 ran in full: its target is judged; the tiny rates never reach the others' rates.
    assert by_scenario["4"][0]["status"] in {"met", "missed"}
    assert set(by_scenario["4"][0]["references"]) == {"reference", "reference_pg"}
    for row in by_scenario["5"]:
        assert row["status"] != "not run"
        assert set(row["references"]) == {"reference", "reference_pg"}
