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


class _Recorded(asyncio.Transport):
    """The writes a transport was handed, in order (what would be sends on a socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_a_response_written_in_two_parts_leaves_in_one_send() -> None:
    """uvicorn writes the head, then the body; the HTTP front joins them into one send
    (one TCP segment with TCP_NODELAY, half the system calls per STIR request)."""
    from opensti.api._http_protocol import CoalescedWrites

    transport = _Recorded()
    writes = CoalescedWrites(transport, asyncio.get_running_loop())
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"{}")
    assert transport.sent == []  # nothing yet: the pass of the loop goes on
    await asyncio.sleep(0)
    assert transport.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    writes.write(b"bye")
    writes.close()  # what is pending goes out before the close
    assert transport.sent[-1] == b"bye"
    assert transport.closed
    assert writes.get_extra_info("peername") is None  # the rest is the real transport's
