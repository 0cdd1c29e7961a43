"""The worker's gathering transport, over a real socket pair and event loop."""

from __future__ import annotations

import asyncio
import socket

from web.worker import GatheringTransport


class Counting:
    """A real transport, each write it is handed recorded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport, self.writes = transport, list[bytes]()

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def get_extra_info(self, name: str) -> object:
        return self.transport.get_extra_info(name)


def received(peer: socket.socket) -> bytes:
    peer.settimeout(5)
    chunks = []
    while chunk := peer.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_writes_of_one_pass_leave_as_one_in_order_and_close_sends_what_is_held() -> None:
    async def exchange() -> tuple[list[bytes], socket.socket]:
        ours, peer = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        counting = Counting(transport)
        gathering = GatheringTransport(counting, loop)  # type: ignore[arg-type]
        assert gathering.get_extra_info("socket") is not None  # the rest is the transport's

        gathering.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        gathering.write(b"body")
        assert counting.writes == []  # held until the pass ends
        await asyncio.sleep(0)
        assert counting.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]

        gathering.write(b"last words")
        gathering.close()  # an answer written just before closing goes out first
        assert counting.writes[-1] == b"last words"
        gathering.write(b"after the close")
        await asyncio.sleep(0.01)
        return counting.writes, peer

    writes, peer = asyncio.run(exchange())
    assert len(writes) == 2  # nothing is written to a closing transport
    assert received(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbodylast words"
    peer.close()
