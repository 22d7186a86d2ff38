"""/metrics access rules and the counters fed from outside the socket handlers."""

import logging

import pytest
import redis
import sqlalchemy as sa
from prometheus_client import REGISTRY
from werkzeug.middleware.proxy_fix import ProxyFix

from app import create_app, metrics
from app.config import TestingConfig
from app.extensions import db


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def app_with(**settings):
    return create_app(type("Config", (TestingConfig,), settings))


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("127.0.0.1", 200),
        ("::1", 200),
        ("::ffff:127.0.0.1", 200),
        ("203.0.113.7", 403),
        ("10.0.0.1", 403),
        ("not an address", 403),
    ],
)
def test_default_allowed_addresses_are_loopback_only(address, status):
    response = app_with().test_client().get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status
    if status == 403:
        assert response.get_json() == {
            "error": {
                "code": "forbidden",
                "message": "metrics are served to allowed addresses or with the metrics token",
            }
        }
    else:
        assert b"# TYPE switchboard_socket_acks_total counter" in response.data


def test_networks_and_the_token_are_configurable():
    client = app_with(METRICS_ALLOWED_IPS="10.1.0.0/16, 2001:db8::/32", METRICS_TOKEN="t0ken").test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.200.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403
    outsider = {"REMOTE_ADDR": "198.51.100.1"}
    assert client.get("/metrics", environ_base=outsider, headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert client.get("/metrics", environ_base=outsider, headers={"Authorization": "bearer t0ken"}).status_code == 200
    assert client.get("/metrics", environ_base=outsider, headers={"Authorization": "Bearer t0ke"}).status_code == 403


def test_no_token_configured_means_no_token_is_accepted():
    client = app_with(METRICS_TOKEN=None).test_client()
    response = client.get(
        "/metrics", environ_base={"REMOTE_ADDR": "198.51.100.1"}, headers={"Authorization": "Bearer "}
    )
    assert response.status_code == 403


def test_a_forwarded_for_header_does_not_make_a_remote_peer_local():
    app = app_with()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    response = app.test_client().get(
        "/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"}, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert response.status_code == 403


def test_a_bad_allowed_address_stops_the_start():
    with pytest.raises(RuntimeError, match="METRICS_ALLOWED_IPS: 'localhost' is not an address or network"):
        app_with(METRICS_ALLOWED_IPS="127.0.0.1,localhost")


def test_metrics_need_no_login_and_no_csrf_token():
    app = app_with(WTF_CSRF_ENABLED=True)
    response = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")


def test_record_commit_feeds_the_batch_and_duration_histograms():
    batches, commits = sample("switchboard_commit_batch_size_count"), sample("switchboard_commit_seconds_count")
    small = sample("switchboard_commit_batch_size_bucket", le="8.0")
    metrics.record_commit(7, 0.004)
    metrics.record_commit(40, 0.02)
    assert sample("switchboard_commit_batch_size_count") == batches + 2
    assert sample("switchboard_commit_seconds_count") == commits + 2
    assert sample("switchboard_commit_batch_size_bucket", le="8.0") == small + 1


def test_database_errors_are_counted_by_kind(app):
    before = sample("switchboard_database_errors_total", kind="OperationalError")
    with app.app_context(), pytest.raises(sa.exc.OperationalError):
        db.session.execute(sa.text("SELECT * FROM no_such_table"))
    assert sample("switchboard_database_errors_total", kind="OperationalError") == before + 1


def test_redis_errors_are_counted_from_the_logs_that_report_them(app):
    queue = sample("switchboard_redis_errors_total", source="message_queue")
    sockets = sample("switchboard_redis_errors_total", source="switchboard.sockets")
    logging.getLogger("socketio.server").error(
        "Cannot publish to redis... retrying", extra={"redis_exception": "Connection refused"}
    )
    try:
        try:
            raise redis.ConnectionError("Connection refused")
        except redis.ConnectionError as error:
            raise RuntimeError("presence failed") from error
    except RuntimeError:
        logging.getLogger("switchboard.sockets").exception("error in / handler on_message")
    try:
        raise ValueError("not a Redis error")
    except ValueError:
        logging.getLogger("switchboard.sockets").exception("error in / handler on_who")
    assert sample("switchboard_redis_errors_total", source="message_queue") == queue + 1
    assert sample("switchboard_redis_errors_total", source="switchboard.sockets") == sockets + 1
