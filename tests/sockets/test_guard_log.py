"""What the packet guard's log line may say of a refused packet: its header and size, never its JSON."""

from app.socket_guard import packet_outline


def test_an_event_packet_is_outlined_without_its_body():
    outline = packet_outline('420["message",{"room":"general","body":"garbled secret words"')
    assert outline == "'420' and 58 more characters"


def test_a_connect_packet_is_outlined_without_its_token():
    assert packet_outline('0/admin,{"token":"abc.def.ghi"}') == "'0/admin,' and 23 more characters"


def test_binary_and_headless_packets():
    assert packet_outline(b"\x00\x01\x02") == "<3 bytes>"
    assert packet_outline('["who"]') == "'' and 7 more characters"
    assert packet_outline("4x") == "'4x' and 0 more characters"
    assert packet_outline("9" * 100) == f"'{'9' * 40}' and 60 more characters"
