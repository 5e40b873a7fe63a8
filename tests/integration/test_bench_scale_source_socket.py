"""The scale benchmark's client sockets leave the port choice to ``connect``
(bench/scale/loadgen.py ``source_socket``): a bind to a source address then
takes no port, and connecting gives one, unique for the 4-tuple."""

from __future__ import annotations

import socket

from bench.scale.loadgen import source_socket


def test_a_source_socket_binds_its_address_without_a_port_until_it_connects() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        info = socket.getaddrinfo("127.0.0.1", server.getsockname()[1], type=socket.SOCK_STREAM)
        with source_socket(info[0]) as client:
            client.bind(("127.0.0.2", 0))
            assert client.getsockname() == ("127.0.0.2", 0)  # no port taken yet
            client.connect(server.getsockname())
            address, port = client.getsockname()
            assert address == "127.0.0.2" and port > 0
            accepted, peer = server.accept()
            accepted.close()
            assert peer == (address, port)


def test_a_plain_bind_to_port_0_takes_a_port_at_once() -> None:
    """The control: what the load generator did before, a port per bind."""
    with socket.socket() as client:
        client.bind(("127.0.0.2", 0))
        assert client.getsockname()[1] > 0
