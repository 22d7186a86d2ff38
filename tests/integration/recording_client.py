"""A python-socketio client for integration tests that records every server event it receives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import requests
import socketio

WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class ReceivedEvent:
    namespace: str
    name: str
    data: object


class RecordingClient:
    """One Engine.IO connection, multiplexing ``namespaces``, with a log of received events.

    python-socketio runs each incoming event's handler in its own thread, so tests
    wait on the log (``wait_for``) instead of expecting events at a given moment.
    """

    def __init__(self, url: str, *, transport: str, namespaces: tuple[str, ...] = ("/",), http_session=None):
        self.url = url
        self.transport = transport
        self.namespaces = namespaces
        # http_session: a requests.Session whose cookies go with every request (custom headers go with the first only).
        # Without one the client still gets its own, closed in close(): python-engineio drops the
        # session it creates without closing it when the server ends a polling connection.
        self._owns_http = http_session is None
        self.http = http_session if http_session is not None else requests.Session()
        self.sio = socketio.Client(reconnection=False, http_session=self.http)
        self.events: list[ReceivedEvent] = []
        self.connect_errors: dict[str, list] = {namespace: [] for namespace in namespaces}
        self.disconnects: dict[str, list] = {namespace: [] for namespace in namespaces}
        self._changed = threading.Condition()
        for namespace in namespaces:
            self.sio.on("*", self._recorder(namespace), namespace=namespace)
            self.sio.on("connect_error", self._connect_error_recorder(namespace), namespace=namespace)
            self.sio.on("disconnect", self._disconnect_recorder(namespace), namespace=namespace)

    # -- recording ----------------------------------------------------------

    def _append(self, target: list, item) -> None:
        with self._changed:
            target.append(item)
            self._changed.notify_all()

    def _recorder(self, namespace: str):
        def record(event, data=None, *more):
            self._append(self.events, ReceivedEvent(namespace, event, data))

        return record

    def _connect_error_recorder(self, namespace: str):
        def record(data=None):
            self._append(self.connect_errors[namespace], data)

        return record

    def _disconnect_recorder(self, namespace: str):
        def record(reason=None):
            self._append(self.disconnects[namespace], reason)

        return record

    def _wait_until(self, condition: Callable[[], object], timeout: float, what: str):
        with self._changed:
            if not self._changed.wait_for(condition, timeout=timeout):
                raise AssertionError(f"{what} did not happen within {timeout}s; received: {self.events!r}")
            return condition()

    # -- connecting ---------------------------------------------------------

    def connect(self, *, token: str | None = None, cookie: str | None = None, origin: str | None = None):
        headers = {}
        if cookie is not None:
            headers["Cookie"] = cookie
        if origin is not None:
            headers["Origin"] = origin
        self.sio.connect(
            self.url,
            auth={"token": token} if token is not None else None,
            headers=headers,
            transports=[self.transport],
            namespaces=list(self.namespaces),
            wait_timeout=WAIT_SECONDS,
        )
        return self

    def connect_refused(self, **credentials) -> dict[str, list]:
        """Try to connect and expect a refusal; returns the connect_error payloads by namespace."""
        try:
            self.connect(**credentials)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("the connection was accepted")
        return self.connect_errors

    @property
    def sid(self) -> str:
        return self.sio.get_sid("/")

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()
        self.sio.shutdown()
        # python-engineio leaves its websocket open when the server ends the connection
        # with a transport error (an oversized packet, a killed server).
        websocket = getattr(self.sio.eio, "ws", None)
        if websocket is not None:
            websocket.shutdown()
        if self._owns_http:
            self.http.close()

    # -- talking ------------------------------------------------------------

    def call(self, event: str, data=None, namespace: str = "/") -> dict:
        return self.sio.call(event, data, namespace=namespace, timeout=WAIT_SECONDS)

    def emit(self, event: str, data=None, namespace: str = "/", callback=None) -> None:
        self.sio.emit(event, data, namespace=namespace, callback=callback)

    def received(self, name: str, where: Callable[[object], bool] = lambda data: True, namespace: str = "/") -> list:
        with self._changed:
            return [e.data for e in self.events if e.namespace == namespace and e.name == name and where(e.data)]

    def wait_for(
        self,
        name: str,
        where: Callable[[object], bool] = lambda data: True,
        namespace: str = "/",
        timeout: float = WAIT_SECONDS,
    ):
        """The first recorded ``name`` event whose data satisfies ``where``, waiting for it if need be."""

        def first_match() -> ReceivedEvent | None:
            for event in self.events:
                if event.namespace == namespace and event.name == name and where(event.data):
                    return event
            return None

        return self._wait_until(first_match, timeout, name).data

    def wait_disconnected(self, namespace: str = "/", timeout: float = WAIT_SECONDS):
        """The reason the server or transport gave when ``namespace`` was disconnected."""
        return self._wait_until(lambda: self.disconnects[namespace][:1] or None, timeout, f"disconnect of {namespace}")[
            0
        ]
