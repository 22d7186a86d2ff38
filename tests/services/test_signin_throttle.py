"""The failed-sign-in log, in memory and in a real Redis (one suite for both), and the timing of refusals."""

from __future__ import annotations

import statistics
import time

import pytest

from app.errors import ServiceError
from app.services import users
from app.services.redis_state import RedisFailureLog, redis_client
from app.services.signin_throttle import MemoryFailureLog, SignInThrottle, SignInThrottled
from tests.support import components


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_log(request):
    if request.param == "memory":
        yield MemoryFailureLog
        return
    client = redis_client(components.redis_url())
    prefix = components.unique_name("sbtest")
    yield lambda window: RedisFailureLog(client, prefix, window)
    leftover = list(client.scan_iter(f"{prefix}:*"))
    if leftover:
        client.delete(*leftover)
    client.close()


def test_attempts_count_until_the_limit_then_wait_for_the_oldest_to_expire(make_log):
    log = make_log(60)
    marks = [log.begin("k", 3)[0] for _ in range(3)]
    assert all(marks)

    mark, retry_after = log.begin("k", 3)

    assert mark is None
    assert 55 < retry_after <= 60
    assert log.begin("other", 3)[0] is not None


def test_a_forgotten_attempt_does_not_count(make_log):
    log = make_log(60)
    for _ in range(10):
        mark, _ = log.begin("k", 2)
        log.forget("k", mark)
    assert log.begin("k", 2)[0] is not None
    assert log.begin("k", 2)[0] is not None
    assert log.begin("k", 2)[0] is None


def test_attempts_expire_after_the_window(make_log):
    log = make_log(0.5)
    assert log.begin("k", 1)[0] is not None
    assert log.begin("k", 1)[0] is None
    time.sleep(0.6)
    assert log.begin("k", 1)[0] is not None


def test_the_throttle_refuses_before_checking_the_password(ctx, make_user):
    ann = make_user("ann")
    throttle = SignInThrottle(MemoryFailureLog(60), per_account=2, per_address=100)
    for _ in range(2):
        with pytest.raises(ServiceError) as refused:
            throttle.authenticate("ann", "wrong password", "10.1.1.1")
        assert refused.value.code == "unauthorized"

    with pytest.raises(SignInThrottled) as throttled:
        throttle.authenticate("ann", ann.password, "10.1.1.1")

    assert throttled.value.code == "rate_limited" and throttled.value.retry_after == 60


def elapsed(function, *args) -> float:
    started = time.perf_counter()
    try:
        function(*args)
    except ServiceError:
        pass
    return time.perf_counter() - started


def test_refusals_hash_once_whatever_the_input(app, make_user):
    """A password the early checks refuse (NUL) for an existing user takes as long as any other refusal."""
    app.config["PASSWORD_HASH_METHOD"] = "pbkdf2:sha256:300000"
    users._dummy_password_hash.cache_clear()
    try:
        with app.app_context():
            make_user("ann")
            elapsed(users.authenticate, "nobody", "warm the dummy hash up")
            baseline = statistics.median(elapsed(users.authenticate, "ann", "wrong password") for _ in range(5))
            assert baseline > 0.02, "the hash must be measurable for this test to mean anything"
            for username, password in [("ann", "bad\x00password"), ("ann", None), ("nobody", "wrong password")]:
                # Without the hash a refusal takes a few hundredths of the baseline, not a third of it.
                took = statistics.median(elapsed(users.authenticate, username, password) for _ in range(5))
                assert took > baseline * 0.3, (username, password, took, baseline)
    finally:
        users._dummy_password_hash.cache_clear()
