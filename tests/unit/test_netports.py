"""crm_knowledge.netports: a port something listens on is not free; the port free_port hands out is."""

from __future__ import annotations

import socket

from crm_knowledge.netports import free_port, port_free


def test_a_listening_port_is_taken_and_free_again_once_closed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_free(port) is False
    assert port_free(port) is True


def test_free_port_hands_out_a_free_port():
    port = free_port()
    assert 1024 <= port <= 65535
    assert port_free(port)
