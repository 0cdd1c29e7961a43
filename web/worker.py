"""The gunicorn worker: uvicorn's (uvloop, httptools), answering each response in one write.

Uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two writes, two
``send`` system calls, two wake-ups of the client. On loopback the kernel does the
receiving side's TCP work inside the sender's call, and those writes were 22 % of a worker's
time answering analytics (py-spy, samples holding the interpreter lock). Here the writes
of one pass of the event loop are gathered and handed to the socket once, at the end of the
pass: the head and body of a response leave together, in order, nothing held past it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker


class GatheringTransport:
    """``transport`` whose writes within one pass of the event loop go out as one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()  # an answer sent just before closing still goes out, first
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, asyncio.get_running_loop())
        super().connection_made(gathering)  # type: ignore[arg-type]


class Worker(UvicornWorker):  # type: ignore[misc]  # an untyped base
    """``uvicorn_worker.UvicornWorker`` with the gathering transport."""

    CONFIG_KWARGS = {"loop": "auto", "http": GatheringHttpToolsProtocol}
