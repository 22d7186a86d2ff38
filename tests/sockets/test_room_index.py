"""``RoomIndex`` (app/sockets/room_index.py): the same rooms, acks and pending lists as python-socketio's
own manager after any sequence of connects, joins, leaves, closes and disconnects, and a disconnect
that never walks the namespace's room table."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest
import socketio

from app.sockets.room_index import IndexedManager, check_room_index_internals

NAMESPACES = ("/", "/admin")
ROOMS = ("room:general", "room:random", "user:1", "user:2")


def managers() -> tuple[socketio.Manager, IndexedManager]:
    """A stock manager and an indexed one, each handing out the same sids in the same order."""
    pair = []
    for manager in (socketio.Manager(), IndexedManager()):
        ids = itertools.count(1)
        manager.set_server(
            SimpleNamespace(
                eio=SimpleNamespace(generate_id=lambda ids=ids: f"sid{next(ids)}"), packet_class=socketio.packet.Packet
            )
        )
        pair.append(manager)
    return pair[0], pair[1]


def state(manager: socketio.Manager) -> tuple:
    rooms = {
        namespace: {room: dict(members) for room, members in table.items()}
        for namespace, table in manager.rooms.items()
    }
    callbacks = {sid: sorted(k for k in entries if k != 0) for sid, entries in manager.callbacks.items()}
    return rooms, callbacks, manager.pending_connect, manager.pending_disconnect


@pytest.mark.parametrize("seed", range(30))
def test_any_sequence_of_changes_leaves_the_state_the_stock_manager_leaves(seed):
    stock, indexed = managers()
    chance = random.Random(seed)
    connected: list[tuple[str, str]] = []
    eio_ids = itertools.count(1)
    for _ in range(300):
        step = chance.choice(["connect", "connect", "join", "join", "leave", "close", "ack", "disconnect", "pre"])
        if step == "connect" or not connected:
            namespace, eio_sid = chance.choice(NAMESPACES), f"eio{next(eio_ids)}"
            complete = chance.random() < 0.7  # else it stays pending, as while its connect handler runs
            sids = {(m.connect if complete else m.pre_connect)(eio_sid, namespace) for m in (stock, indexed)}
            assert len(sids) == 1
            connected.append((namespace, sids.pop()))
            continue
        namespace, sid = chance.choice(connected)
        room = chance.choice(ROOMS)
        for manager in (stock, indexed):
            if step == "join":
                manager.enter_room(sid, namespace, room)
            elif step == "leave":
                manager.leave_room(sid, namespace, room)
            elif step == "close":
                manager.close_room(room, namespace)
            elif step == "ack":
                manager._generate_ack_id(sid, lambda *args: None)
            elif step == "pre":
                manager.pre_disconnect(sid, namespace)
            else:
                manager.disconnect(sid, namespace)
        if step == "disconnect":
            connected.remove((namespace, sid))
        assert state(indexed) == state(stock), f"after {step} of {sid} in {namespace} ({room})"
        assert sorted(indexed.get_rooms(sid, namespace)) == sorted(stock.get_rooms(sid, namespace))
    for namespace, sid in list(connected):
        for manager in (stock, indexed):
            manager.disconnect(sid, namespace)
    assert state(indexed) == state(stock)
    assert indexed.rooms_of == {}


class Untouchable(dict):
    """A namespace's room table that fails the test if anything walks it."""

    def items(self):
        raise AssertionError("the disconnect walked every room of the namespace")

    def copy(self):
        raise AssertionError("the disconnect copied every room of the namespace")


def test_a_disconnect_leaves_the_sockets_own_rooms_without_walking_the_others():
    _, indexed = managers()
    sids = [indexed.connect(f"eio{n}", "/") for n in range(50)]
    for n, sid in enumerate(sids):
        indexed.enter_room(sid, "/", f"user:{n}")
        indexed.enter_room(sid, "/", "room:general")
    indexed.rooms["/"] = Untouchable(indexed.rooms["/"])
    indexed.disconnect(sids[7], "/")
    table = indexed.rooms["/"]
    assert "user:7" not in table and sids[7] not in table
    assert sids[7] not in table["room:general"] and sids[7] not in table[None]
    assert len(table["room:general"]) == 49 and "user:8" in table


def test_the_start_up_check_names_a_changed_method(monkeypatch):
    check_room_index_internals()
    monkeypatch.setitem(
        __import__("app.sockets.room_index").sockets.room_index.MIRRORED_SOURCES_SHA256, "basic_leave_room", "0" * 64
    )
    with pytest.raises(RuntimeError, match="BaseManager.basic_leave_room changed"):
        check_room_index_internals()
