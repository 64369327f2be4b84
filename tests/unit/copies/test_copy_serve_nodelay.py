"""`accord copy serve` turns Nagle's algorithm off on every connection, whichever socket it accepts on.

With `--workers N` uvicorn's supervisor binds the shared socket itself (`Config.bind_socket`, with
protocol number 0) and asyncio then leaves TCP_NODELAY off on the connections it accepts: each answer,
written as its headers and then its body, waited for the client's delayed ACK (44 ms a check here).
The server below accepts on such a socket, as a worker does, and the test reads the option back from
the accepted connection's own socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvicorn

from services.copies.serve import NoDelay

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def hello(scope: dict[str, Any], receive: Any, send: Send) -> None:
    """An answer written as uvicorn writes every answer: its headers, then its body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server() -> Iterator[tuple[uvicorn.Server, int]]:
    config = uvicorn.Config(hello, host="127.0.0.1", port=0, http=NoDelay, lifespan="off", log_config=None)
    sock = socket.socket(socket.AF_INET)  # protocol 0, as uvicorn's supervisor binds it for its workers
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            threading.Event().wait(0.02)
        yield server, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_an_accepted_connection_has_nagle_off(server: tuple[uvicorn.Server, int]) -> None:
    served, port = server
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            answer += client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        (connection,) = served.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
