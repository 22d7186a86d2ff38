"""``SessionQueue`` (app/sockets/fanout.py): the queue of every Engine.IO session, as Engine.IO uses it."""

from __future__ import annotations

from types import SimpleNamespace

import gevent
import gevent.queue
import pytest
from engineio import socket as eio_socket

from app.sockets.fanout import SessionQueue


def test_packets_come_out_in_the_order_they_went_in():
    queue = SessionQueue()
    assert queue.empty() and queue.qsize() == 0
    for item in "abc":
        queue.put(item)
    assert queue.qsize() == 3 and not queue.empty()
    assert [queue.get(), queue.get(block=False), queue.get_nowait()] == ["a", "b", "c"]
    assert queue.empty()


def test_a_get_without_waiting_on_an_empty_queue_raises_empty():
    with pytest.raises(gevent.queue.Empty):
        SessionQueue().get(block=False)


def test_a_waiting_get_gets_the_packet_put_later():
    queue = SessionQueue()
    getter = gevent.spawn(queue.get)
    gevent.sleep(0.01)
    assert not getter.ready()
    queue.put("late")
    assert getter.get(timeout=5) == "late"
    assert queue.empty()


def test_a_get_that_times_out_raises_empty_and_loses_no_later_packet():
    queue = SessionQueue()
    with pytest.raises(gevent.queue.Empty):
        queue.get(timeout=0.01)
    assert not queue._getters  # the timed-out wait left nothing behind
    queue.put("kept")
    assert queue.get(timeout=1) == "kept"


def test_waiting_gets_are_served_first_come_first_served():
    queue = SessionQueue()
    first = gevent.spawn(queue.get)
    gevent.sleep(0.01)
    second = gevent.spawn(queue.get)
    gevent.sleep(0.01)
    queue.put(1)
    queue.put(2)
    assert (first.get(timeout=5), second.get(timeout=5)) == (1, 2)


def test_a_packet_is_handed_to_a_waiting_get_whose_neighbour_timed_out():
    queue = SessionQueue()
    impatient = gevent.spawn(queue.get, timeout=0.01)
    patient = gevent.spawn(queue.get)
    gevent.sleep(0.05)
    assert isinstance(impatient.exception, gevent.queue.Empty)
    queue.put("for the patient one")
    assert patient.get(timeout=5) == "for the patient one"


def test_a_get_taken_by_another_greenlet_first_waits_for_the_next_packet():
    queue = SessionQueue()
    waiting = gevent.spawn(queue.get)
    gevent.sleep(0.01)
    queue.put("snatched")
    assert queue.get(block=False) == "snatched"  # before the hub hands it to the waiting get
    gevent.sleep(0.01)
    assert not waiting.ready()
    queue.put("next")
    assert waiting.get(timeout=5) == "next"


def test_join_waits_until_every_packet_put_is_marked_done():
    queue = SessionQueue()
    assert queue.join(timeout=0) is True
    queue.put("a")
    queue.put("b")
    joiner = gevent.spawn(queue.join)
    queue.get()
    queue.task_done()
    gevent.sleep(0.01)
    assert not joiner.ready()
    queue.get()
    queue.task_done()
    assert joiner.get(timeout=5) is True
    # And again, for packets put after the queue was once done.
    queue.put("c")
    assert queue.join(timeout=0.01) is False
    queue.get()
    queue.task_done()
    assert queue.join(timeout=1) is True


def test_more_task_done_than_packets_is_an_error():
    queue = SessionQueue()
    queue.put("a")
    queue.get()
    queue.task_done()
    with pytest.raises(ValueError):
        queue.task_done()


def test_the_websocket_learns_of_every_packet_put():
    queue = SessionQueue()
    told: list[int] = []
    queue.put("before")
    queue.on_put = lambda: told.append(queue.qsize())
    queue.put("one")
    queue.put("two")
    assert told == [2, 3]


def engineio_session(queue: SessionQueue) -> SimpleNamespace:
    server = SimpleNamespace(
        ping_interval=0.05, ping_timeout=0.05, get_queue_empty_exception=lambda: gevent.queue.Empty
    )
    return SimpleNamespace(queue=queue, server=server)


def test_engineio_poll_takes_everything_queued_and_leaves_the_end_marker():
    queue = SessionQueue()
    for item in ("a", "b", None):
        queue.put(item)
    session = engineio_session(queue)
    assert eio_socket.Socket.poll(session) == ["a", "b"]
    # The end marker goes back on the queue, so the next poll sees the end too.
    assert eio_socket.Socket.poll(session) == []
    assert queue.empty()
    assert queue.join(timeout=0) is True


def test_engineio_poll_waits_for_a_packet_and_times_out_on_none():
    queue = SessionQueue()
    session = engineio_session(queue)
    gevent.spawn_later(0.02, queue.put, "pong")
    assert eio_socket.Socket.poll(session) == ["pong"]
    from engineio import exceptions

    with pytest.raises(exceptions.QueueEmpty):
        eio_socket.Socket.poll(session)
