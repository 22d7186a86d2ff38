"""The context an ordinary event's handler runs in, and the start-up check of the internals it relies on."""

from __future__ import annotations

import flask
import pytest
import socketio
from flask import request, session
from flask.ctx import RequestContext
from flask_login import current_user

from app.extensions import socketio as socketio_ext
from app.sockets.chat import ChatNamespace
from app.sockets.common import ack
from app.sockets.dispatch import EventContext, check_dispatch_internals


def test_a_handler_sees_its_socket_its_session_and_its_user_without_url_matching(
    app, make_user, socket_client, monkeypatch
):
    seen: dict = {}

    def on_who(self, data):
        context = flask.globals.request_ctx._get_current_object()
        seen.update(
            context=type(context),
            sid=request.sid,
            namespace=request.namespace,
            event=request.event,
            user_id=current_user.id,
            session_user=session.get("_user_id"),
            routing_exception=request.routing_exception,
            url_rule=request.url_rule,
        )
        return ack()

    monkeypatch.setattr(ChatNamespace, "on_who", on_who)
    ann = make_user()
    sio = socket_client(ann)

    assert sio.emit("who", {"room": "general"}, callback=True) == {"ok": True}
    assert seen == {
        "context": EventContext,
        "sid": socketio_ext.server.manager.sid_from_eio_sid(sio.eio_sid, "/"),
        "namespace": "/",
        "event": {"message": "who", "args": ({"room": "general"},)},
        "user_id": ann.id,
        "session_user": str(ann.id),
        "routing_exception": None,
        "url_rule": None,
    }


def test_the_database_session_of_an_event_is_removed_after_it(app, make_user, socket_client, monkeypatch):
    removed = []
    original = app.extensions["sqlalchemy"].session.remove

    def remove():
        removed.append(True)
        return original()

    monkeypatch.setattr(app.extensions["sqlalchemy"].session, "remove", remove)
    sio = socket_client(make_user())
    removed.clear()
    assert sio.emit("who", {}, callback=True)["ok"]
    assert removed


def test_the_check_passes_on_the_pinned_libraries(app):
    check_dispatch_internals(app)


def test_the_check_names_a_changed_event_spawn(app, monkeypatch):
    def handle_event(self, eio_sid, namespace, id, data):
        self._handle_event_internal(self, None, eio_sid, data, namespace, id)

    monkeypatch.setattr(socketio.Server, "_handle_event", handle_event)
    with pytest.raises(RuntimeError, match="_handle_event no longer uses.*start_background_task"):
        check_dispatch_internals(app)


def test_the_check_names_a_request_context_that_sets_more(app, monkeypatch):
    stock_init = RequestContext.__init__

    def init(self, *args, **kwargs):
        stock_init(self, *args, **kwargs)
        self.new_state = None

    monkeypatch.setattr(RequestContext, "__init__", init)
    with pytest.raises(RuntimeError, match="new_state"):
        check_dispatch_internals(app)


def test_events_take_flask_socketios_path_when_it_does_not_manage_sessions(app, make_user, socket_client, monkeypatch):
    contexts = []

    def on_who(self, data):
        contexts.append(type(flask.globals.request_ctx._get_current_object()))
        return ack()

    monkeypatch.setattr(ChatNamespace, "on_who", on_who)
    sio = socket_client(make_user())
    monkeypatch.setattr(socketio_ext, "manage_session", False)
    assert sio.emit("who", {}, callback=True) == {"ok": True}
    assert contexts == [RequestContext]
