"""How one Socket.IO event reaches its handler, at a smaller fixed cost than the libraries' own path.

Every event a client sends used to pay, before its handler ran:

- a ``gevent.Greenlet`` (python-socketio's ``start_background_task``), whose ``__init__``, with
  gevent's default ``track_greenlet_tree``, walks and keeps the spawning stack for debugging output
  nothing here prints;
- a full Flask request context for the handshake's URL (Flask-SocketIO's ``_handle_event``): the
  URL map bound to it and matched against every route (none matches; the NotFound it raises is
  kept), and the signed session cookie opened and verified, only for Flask-SocketIO to replace
  that session with the one it saved for the socket at connect.

Here an event runs in a raw greenlet (``gevent.spawn_raw``: the same FIFO start on the hub's
callback queue as ``Greenlet.start``, so a socket's handlers still start in the order its events
arrived, and a handler that waits never holds up the socket's reader), gevent does not track
greenlet trees, and the handler runs in an ``EventContext``: a Flask request context that reuses
the socket's saved session and has no URL adapter. What handlers read stays: ``request.sid``,
``request.namespace``, ``request.event``, ``session``, ``current_user``, ``current_app`` and the
database session, which the context's teardown removes as before. Connect and disconnect keep
Flask-SocketIO's own path (they read the cookie session). ``url_for`` inside an event handler
would need ``SERVER_NAME``; none calls it.

``check_dispatch_internals()`` names, at start-up, any library internal this relies on that
changed.
"""

from __future__ import annotations

import os
from typing import Any

import flask
import flask_socketio
import gevent
import socketio
from flask.ctx import RequestContext

from app.sockets.internals import names_used, parameters

# When set, gevent reads it as usual (`1` keeps the spawning stacks in its run info); unset, tracking is off.
TRACK_GREENLET_TREE_VARIABLE = "GEVENT_TRACK_GREENLET_TREE"


class EventContext(RequestContext):
    """Flask's request context for one Socket.IO event of a connected socket.

    It sets what ``RequestContext.__init__`` sets, but takes the socket's saved session and
    binds no URL adapter: the handshake's URL matches no route, and matching it cost more than
    most handlers.
    """

    def __init__(self, app, environ, request=None, session=None) -> None:
        if request is None:
            request = app.request_class(environ)
            request.json_module = app.json
        self.app = app
        self.request = request
        self.url_adapter = None
        self.flashes = None
        self._session = session
        self._after_request_functions = []
        self._cv_tokens = []


def event_context(socketio_ext: flask_socketio.SocketIO, namespace: str, sid: str) -> EventContext | None:
    """The context for an ordinary event of ``sid``; None sends it down Flask-SocketIO's own path.

    That path stays for a socket with no saved session (Flask-SocketIO saves it at connect when
    it manages sessions) and for apps with Socket.IO error handlers.
    """
    if not socketio_ext.manage_session or socketio_ext.exception_handlers or socketio_ext.default_exception_handler:
        return None
    environ = socketio_ext.server.get_environ(sid, namespace=namespace)
    session = environ.get("saved_session") if environ else None
    if session is None:
        return None
    return EventContext(environ["flask.app"], environ, session=session)


def run_in_context(context: EventContext, handler, event: str, namespace: str, sid: str, args: tuple):
    """Run ``handler(*args)`` for ``event`` as Flask-SocketIO's ``_handle_event`` does."""
    request: Any = context.request
    with context:
        request.sid = sid
        request.namespace = namespace
        request.event = {"message": event, "args": args}
        return handler(*args)


def dispatch_installable(sio_server: socketio.Server) -> bool:
    return sio_server.eio.async_mode == "gevent" and sio_server.async_handlers


def install_event_dispatch(sio_server: socketio.Server) -> None:
    """Events of this (gevent) server run in raw greenlets, and gevent stops tracking greenlet trees."""
    if not os.environ.get(TRACK_GREENLET_TREE_VARIABLE):
        gevent.config.track_greenlet_tree = False
    handle_event_internal = sio_server._handle_event_internal
    logger = sio_server.logger
    spawn_raw = gevent.spawn_raw

    def handle_event(eio_sid, namespace, id, data):
        """python-socketio's ``Server._handle_event`` with ``async_handlers``, in a raw greenlet."""
        namespace = namespace or "/"
        manager = sio_server.manager
        sid = manager.sid_from_eio_sid(eio_sid, namespace)
        logger.info('received event "%s" from %s [%s]', data[0], sid, namespace)
        if not manager.is_connected(sid, namespace):
            logger.warning("%s is not connected to namespace %s", sid, namespace)
            return
        spawn_raw(handle_event_internal, sio_server, sid, eio_sid, data, namespace, id)

    sio_server._handle_event = handle_event


EXPECTED_NAMES = (
    # The path EventContext replaces: the socket's environ, its saved session, the request attributes.
    (
        flask_socketio.SocketIO,
        "_handle_event",
        {
            "get_environ",
            "flask.app",
            "request_context",
            "manage_session",
            "saved_session",
            "sid",
            "namespace",
            "event",
            "exception_handlers",
            "default_exception_handler",
        },
    ),
    (flask_socketio.Namespace, "trigger_event", {"_handle_event"}),
    # What a pushed context reads of the attributes EventContext sets.
    (RequestContext, "push", {"_session", "url_adapter", "match_request", "_cv_tokens"}),
    (RequestContext, "pop", {"_cv_tokens", "do_teardown_request", "request"}),
    # The spawn install_event_dispatch replaces, and the method every EVENT packet goes through.
    (
        socketio.Server,
        "_handle_event",
        {"sid_from_eio_sid", "is_connected", "async_handlers", "start_background_task", "_handle_event_internal"},
    ),
    (socketio.Server, "_handle_eio_message", {"_handle_event"}),
)


def check_dispatch_internals(app: flask.Flask) -> None:
    """Fail at start-up, naming what changed, if the libraries no longer work as this module assumes."""
    problems: list[str] = []
    for owner, name, names in EXPECTED_NAMES:
        missing = names - names_used(getattr(owner, name, None), strings=True)
        if missing:
            problems.append(f"{owner.__name__}.{name} no longer uses {', '.join(sorted(missing))}")
    if parameters(socketio.Server._handle_event) != ["self", "eio_sid", "namespace", "id", "data"]:
        problems.append("socketio.Server._handle_event no longer takes (eio_sid, namespace, id, data)")
    if parameters(socketio.Server._handle_event_internal) != [
        "self",
        "server",
        "sid",
        "eio_sid",
        "data",
        "namespace",
        "id",
    ]:
        problems.append(
            "socketio.Server._handle_event_internal no longer takes (server, sid, eio_sid, data, namespace, id)"
        )
    if not callable(getattr(gevent, "spawn_raw", None)) or not hasattr(gevent.config, "track_greenlet_tree"):
        problems.append("gevent no longer has spawn_raw or config.track_greenlet_tree")
    with app.test_request_context() as stock:
        made = EventContext(app, stock.request.environ, session=stock.session)
        if set(vars(made)) != set(vars(stock)):
            problems.append(
                "flask's RequestContext now sets "
                f"{', '.join(sorted(set(vars(stock)) ^ set(vars(made))))} differently from EventContext"
            )
    if problems:
        raise RuntimeError(
            "Flask, Flask-SocketIO, python-socketio or gevent changed under the event dispatch "
            "(app/sockets/dispatch.py): " + "; ".join(problems) + ". Pin the versions in requirements.txt or update it."
        )
