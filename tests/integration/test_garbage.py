"""Malformed packets, lying binary headers and garbage against a real server: an answer or a close, never silence."""

from __future__ import annotations

import pytest

from tests.integration.engineio_wire import RECORD_SEPARATOR, PollingSession, WebSocketSession, ack_of

pytestmark = pytest.mark.integration

WHO = '["who",{}]'


@pytest.fixture
def session(account, chat_server):
    sessions = []

    def open_session() -> WebSocketSession:
        opened = WebSocketSession(chat_server.url, account().token)
        sessions.append(opened)
        return opened

    yield open_session
    for opened in sessions:
        opened.close()


def still_answers(session: WebSocketSession, ack_id: int = 77) -> bool:
    return session.call(f"42{ack_id}{WHO}", ack_id=ack_id)["ok"] is True


@pytest.mark.parametrize(
    "packet",
    [
        "4599999999-" + WHO,  # announces far more attachments than an event takes
        "452-" + WHO,  # two attachments
        "450-" + WHO,  # a binary event with none
        "421-" + WHO,  # an attachment count on a plain event
        "42-1" + WHO,
        "42" + "9" * 301 + WHO,  # an ack id no client can mean
        "4x",
        "4",
        "x",  # not even Engine.IO
        "",
        "44" + WHO,  # clients do not send CONNECT_ERROR
    ],
    ids=repr,
)
def test_a_packet_that_cannot_be_answered_closes_the_connection(packet, session):
    assert session().closed_by_server(packet)


def test_an_announced_attachment_is_taken_and_answered(session):
    alice = session()
    alice.ws.send('451-3["who",{"room":{"_placeholder":true,"num":0}}]')
    alice.ws.send_binary(b"general")

    answer = ack_of(alice.read_until(lambda packet: ack_of(packet, 3) is not None), 3)

    assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer
    assert still_answers(alice)


def test_text_where_an_announced_attachment_is_due_closes_instead_of_swallowing_it(session):
    alice = session()
    alice.ws.send('451-["who",{"room":{"_placeholder":true,"num":0}}]')

    assert alice.closed_by_server("421" + WHO)


def test_broken_json_with_an_ack_id_is_answered_invalid_and_the_socket_stays(session):
    alice = session()

    for packet in ['421["who",', '421{"not":"an array"}', "421[]", "421[42]", '421"who"']:
        alice.ws.send(packet)
        answer = ack_of(alice.read_until(lambda received: ack_of(received, 1) is not None), 1)
        assert answer["ok"] is False and answer["error"]["code"] == "invalid", (packet, answer)

    assert still_answers(alice)


def test_a_connection_that_keeps_sending_malformed_packets_is_closed(session, chat_server):
    alice = session()
    answered = 0
    closed = False
    for _ in range(40):
        if alice.closed_by_server('421["who",') if answered >= 20 else False:
            closed = True
            break
        alice.ws.send('421["who",')
        ack_of(alice.read_until(lambda received: ack_of(received, 1) is not None), 1)
        answered += 1

    assert answered == 20
    assert closed


def test_garbage_logs_no_traceback_and_at_most_one_line_per_connection(session, chat_server):
    before = chat_server.log_text()
    garbage_makers = [session() for _ in range(3)]
    for maker in garbage_makers:
        # The one line logged for a connection is about its first bad packet.
        maker.ws.send('420["message",{"room":"general","body":"garbled secret words"')
        for _ in range(4):
            maker.ws.send('421["who",')
        assert maker.closed_by_server("4x")
    assert still_answers(session())

    logged = chat_server.log_text()[len(before) :]
    assert "Traceback" not in logged, logged
    assert "secret" not in logged and '"message"' not in logged, logged  # a packet's header and size, not its JSON
    assert len([line for line in logged.splitlines() if "switchboard.sockets.guard" in line]) <= 3, logged


def test_garbage_over_long_polling_is_answered_or_closed(account, chat_server):
    alice = PollingSession(chat_server.url, account().token)
    answer = alice.call('421["who",', ack_id=1)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid"

    alice.post("4599999999-" + WHO)

    response = alice.poll()
    closed = response.status_code == 400 or "1" in response.text.split(RECORD_SEPARATOR)
    assert closed, response.text
    assert alice.poll().status_code == 400


def test_a_binary_attachment_nobody_announced_closes_the_connection(session):
    alice = session()
    alice.ws.send_binary(b"\x00\x01")
    assert alice.closed_by_server("421" + WHO)


def test_garbage_posted_over_long_polling_closes_the_session_without_a_traceback(chat_server, account):
    before = chat_server.log_text()
    alice = PollingSession(chat_server.url, account().token)

    assert alice.post("4x").status_code == 200

    response = alice.poll()
    assert response.status_code == 400 or "1" in response.text.split(RECORD_SEPARATOR), response.text
    assert alice.poll().status_code == 400
    assert "Traceback" not in chat_server.log_text()[len(before) :]


@pytest.mark.parametrize("digits", [301, 5000])
def test_a_huge_integer_in_a_payload_is_answered_invalid(digits, session):
    alice = session()
    alice.ws.send('421["history",{"room":"general","before":' + "9" * digits + "}]")

    answer = ack_of(alice.read_until(lambda received: ack_of(received, 1) is not None), 1)

    assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer
    assert still_answers(alice)
