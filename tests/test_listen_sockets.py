"""The TCP listeners opensti binds itself must give accepted connections TCP_NODELAY.

asyncio sets it only on sockets created with IPPROTO_TCP; without it every response on
a kept-alive connection waited for the client's delayed ACK (about 40 ms), so an SBC
with a pooled connection got some 22 answers a second from ``opensti serve``.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from opensti.sandbox.server import bind_socket
from opensti.sip.server import ListenerSpec, _bind

pytestmark = pytest.mark.integration


async def _accepted_nodelay(listener: socket.socket) -> int:
    """Serve ``listener`` the way uvicorn and the SIP server do, connect, and read
    TCP_NODELAY off the connection the server accepted."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    async with server:
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(seen, timeout=5)
        finally:
            writer.close()


async def test_the_http_front_socket_gives_connections_nodelay() -> None:
    assert await _accepted_nodelay(bind_socket("127.0.0.1", 0)) != 0


async def test_the_sip_tcp_socket_gives_connections_nodelay() -> None:
    listener = _bind(ListenerSpec("tcp", "127.0.0.1", 0), reuse_port=False)
    assert await _accepted_nodelay(listener) != 0
