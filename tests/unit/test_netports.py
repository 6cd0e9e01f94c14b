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


def test_port_or_free_keeps_a_free_port_and_replaces_a_taken_run_of_ports():
    from crm_knowledge.netports import port_or_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert port_or_free(taken) != taken
        # a run of two whose second port is taken is replaced too, by a run of two free ports
        first = port_or_free(taken - 1, span=2)
        assert first != taken - 1 and port_free(first) and port_free(first + 1)
    free = free_port()
    assert port_or_free(free) == free
