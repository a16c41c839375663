"""The tests' free_port: a port never handed out twice in one process, even when the kernel offers it again."""
from __future__ import annotations

import socket

from tests import redis_server
from tests.redis_server import free_port


def test_a_port_the_kernel_offers_again_is_not_handed_out_twice(monkeypatch):
    first = free_port()
    offered = [first, first]  # the kernel's next two answers: the same port again, then its own

    class Repeating(socket.socket):
        def getsockname(self):
            return ("127.0.0.1", offered.pop(0)) if offered else super().getsockname()

    monkeypatch.setattr(redis_server.socket, "socket", Repeating)
    second = free_port()
    assert second != first
    assert not offered


def test_many_ports_in_a_row_are_distinct_and_bindable():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
