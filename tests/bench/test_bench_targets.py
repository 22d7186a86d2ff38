"""The target table of bench/run.py, judged on made-up results: met, missed, not measured, not run."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_run"]


def step(rate, p99, *, correct=True, tail=5.0, deliveries=1000.0, reads=None):
    made = {
        "rate": rate,
        "sent": 10,
        "acked": 10 if correct else 9,
        "errors": {},
        "unanswered": 0,
        "expected": 90,
        "delivered": 90,
        "missing": 0 if correct else 9,
        "duplicates": 0,
        "unexpected": 0,
        "drained": True,
        "tail_ms": tail,
        "deliveries_per_s": deliveries,
        "latency_ms": {"p50": p99 / 2, "p95": p99, "p99": p99},
        "ack_ms": {"p99": p99},
        "server_cpu": [0.5],
        "generator_cpu": 0.2,
        "generator_saturated": False,
        "correct": correct,
    }
    if reads is not None:
        made["reads"] = {
            "sent": reads,
            "sent_while_sending": reads,
            "per_s_while_sending": reads,
            "ok": reads,
            "errors": {},
            "unanswered": 0,
            "ack_ms": {"p99": 1.0},
        }
    return made


def judged(bench, scenarios, text):
    rows = bench.evaluate_targets({"meta": {}, "scenarios": scenarios})
    [row] = [row for row in rows if row["target"].startswith(text)]
    return row


def room(*steps):
    return {"switchboard": {"members": 100, "steps": list(steps)}, "reference": {"steps": [step(200, 3.0)]}}


@pytest.mark.parametrize(
    ("steps", "status"),
    [
        ([step(100, 5.0), step(200, 14.9)], "met"),
        ([step(100, 5.0), step(200, 15.1)], "missed"),
        ([step(200, 9.0, correct=False)], "missed"),
        ([step(100, 900.0, tail=4000.0)], "missed"),  # a backlog below 200 msg/s: 200 never ran
        ([step(100, 5.0)], "not measured"),
    ],
)
def test_p99_at_200_in_the_100_member_room(bench, steps, status):
    row = judged(bench, {"2": room(*steps)}, "100-member room: p99")
    assert row["status"] == status, row
    assert row["references"]["reference"] == "p99 3.0 ms"
    assert row["references"]["reference_pg"] == "not run"


@pytest.mark.parametrize(
    ("steps", "status"),
    [
        ([step(200, 10.0), step(350, 20.0), step(500, 40.0, deliveries=49500.0)], "met"),
        ([step(200, 10.0), step(350, 20.0), step(500, 2400.0, tail=3000.0)], "missed"),
        ([step(200, 10.0), step(350, 20.0), step(500, 40.0, tail=900.0)], "missed"),
        ([step(200, 10.0), step(350, 700.0)], "missed"),
        ([step(200, 10.0)], "not measured"),
    ],
)
def test_no_backlog_up_to_500_in_the_100_member_room(bench, steps, status):
    row = judged(bench, {"2": room(*steps)}, "100-member room: no backlog")
    assert row["status"] == status, row


def persist(knee_steps, lost=0):
    return {
        "steps": knee_steps,
        "highest_rate_p99_under_100ms": None,
        "database_check": {"acked": 100, "stored": 100 - lost, "lost": lost, "lost_examples": []},
    }


@pytest.mark.parametrize(
    ("steps", "lost", "status"),
    [
        ([step(1000, 20.0, reads=900), step(2000, 80.0, reads=300), step(3200, 400.0, reads=50)], 0, "met"),
        ([step(1000, 20.0, reads=900), step(2000, 80.0, reads=300)], 3, "missed"),
        ([step(1000, 20.0, reads=900), step(2000, 180.0, reads=300)], 0, "missed"),
        ([step(1000, 20.0, reads=900), step(2000, 60.0, correct=False)], 0, "missed"),
        ([step(10, 5.0, reads=20), step(20, 6.0, reads=20)], 0, "not measured"),
    ],
)
def test_persisted_messages_on_each_database(bench, steps, lost, status):
    scenario = {"switchboard": persist(steps, lost), "switchboard_pg": {"not_run": "PostgreSQL unreachable"}}
    sqlite = judged(bench, {"5": scenario}, "SQLite")
    assert sqlite["status"] == status, sqlite
    postgres = judged(bench, {"5": scenario}, "PostgreSQL")
    assert postgres["status"] == "not measured" and "unreachable" in postgres["figure"]
    swapped = judged(bench, {"5": {"switchboard_pg": persist(steps, lost)}}, "PostgreSQL")
    assert swapped["status"] == status


def idle(kb, connects, sockets=10000, up=None):
    level = {
        "sockets": sockets,
        "kb_per_socket": kb,
        "connect_per_s": connects,
        "failed": 0,
        "still_connected": sockets if up is None else up,
    }
    return {"switchboard": {"levels": [level]}}


@pytest.mark.parametrize(
    ("scenario", "memory", "connects"),
    [
        (idle(29.9, 1200.0), "met", "met"),
        (idle(31.0, 900.0), "missed", "missed"),
        (idle(20.0, 2000.0, up=9990), "missed", "missed"),
        (idle(20.0, 2000.0, sockets=1000), "not measured", "not measured"),
    ],
)
def test_idle_sockets(bench, scenario, memory, connects):
    assert judged(bench, {"1": scenario}, "10,000 idle")["status"] == memory
    assert judged(bench, {"1": scenario}, ">= 1,000 connects")["status"] == connects


def queue(added_p50, correct=True):
    one, two = step(100, 20.0), step(100, 25.0, correct=correct)
    one["latency_ms"]["p50"], two["latency_ms"]["p50"] = 5.0, 5.0 + added_p50
    return {
        "single": {"steps": [one]},
        "pair": {"steps": [two]},
        "added_latency_ms": [{"rate": 100, "p50": added_p50, "p99": 5.0, "correct": correct}],
    }


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        (queue(0.8), "met"),
        (queue(1.2), "missed"),
        (queue(0.5, correct=False), "missed"),
        ({"single": {"steps": []}, "pair": {"not_run": "queue broken"}}, "not measured"),
        ({"not_run": "Redis or PostgreSQL unreachable"}, "not measured"),
    ],
)
def test_redis_between_two_workers(bench, scenario, status):
    row = judged(bench, {"6": scenario}, "Redis")
    assert row["status"] == status, row
    assert row["references"] == {}


def test_acked_round_trips_take_the_best_clean_run(bench):
    runs = [
        {"inflight": 1, "per_s": 4000.0, "errors": {}, "timed_out": False},
        {"inflight": 16, "per_s": 9000.0, "errors": {"internal": 1}, "timed_out": False},
        {"inflight": 16, "per_s": 5200.0, "errors": {}, "timed_out": False},
    ]
    row = judged(bench, {"4": {"switchboard": {"runs": runs}}}, ">= 5,000 acked")
    assert row["status"] == "met" and row["figure"] == "5,200/s (16 in flight)"
    row = judged(bench, {"4": {"switchboard": {"runs": runs[:2]}}}, ">= 5,000 acked")
    assert row["status"] == "missed" and row["figure"] == "4,000/s (1 in flight)"


def test_scenarios_not_run_or_failed(bench):
    rows = bench.evaluate_targets({"meta": {}, "scenarios": {"3": {"failed": "RuntimeError: join failed"}}})
    assert len(rows) == len(bench.TARGETS) == 10
    assert {row["status"] for row in rows} == {"not run"}
    assert [row["figure"] for row in rows if row["scenario"] == "3"] == ["RuntimeError: join failed"] * 2


def test_the_report_prints_every_target(bench):
    results = {
        "meta": {"scale": "full", "loadavg_before": [0.1, 0.2, 0.3]},
        "scenarios": {"2": room(step(200, 12.0), step(500, 30.0)), "6": queue(0.5)},
    }
    printed = bench.report(results)
    for target in bench.TARGETS:
        assert target.text in printed
    lines = printed.splitlines()
    assert any(
        line.split()[:1] == ["MET"] and line.endswith("(2) 100-member room: p99 <= 15 ms at 200 msg/s: p99 12.0 ms")
        for line in lines
    )
    assert lines[-1] == "  3 met, 7 not run"
