"""Group commit: concurrent appends share one transaction, so one commit (one WAL flush)
serves many requests, and each caller is answered only once its events are durable.

A caller puts its events on a queue and waits (``append`` blocks its thread, ``append_async``
awaits on its event loop). A flusher thread takes everything queued,
appends it in one transaction (in queue order, each caller's events together) and hands
each caller its own answers after the commit. While a flush commits, the next callers
queue up, so the batches grow with the load by themselves: no caller waits on a timer.

Idempotency and the per-event answers are those of ``append_events`` over the whole batch:
a reading two callers send at once is stored once, the second caller told ``duplicate``.
A batch whose transaction fails for a reason other than the database being unavailable
(a value the database refuses, say) is retried caller by caller, so that nothing valid is
lost because another request was bad.

A caller with many events (``alone``: a batch request of 500 readings or more) commits on its
own instead, in a pool connection of its own and at once. It has no commit to share worth
waiting for (one commit next to hundreds of events' worth of work), and queued behind the
flusher it would wait for every other large append of the worker, one after another: with
the four connections of a batch benchmark served by one worker, one flusher held the
database to one session: batches of 1,000 readings came to 44,300-47,400 readings/s in four
runs sharing commits, and to 47,800 and 53,600 committing alone (bench.run batch-1000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from psycopg_pool import ConnectionPool

from eventstore.records import Appended, NewEvent
from eventstore.store import EventStore, StoreUnavailable, Upcast

log = logging.getLogger(__name__)

ALONE = 500  # a caller with this many events or more commits alone (see above)


class _Waiting:
    """One caller's events, what became of them, and how to wake the caller."""

    __slots__ = ("answers", "error", "events", "settled", "wake")

    def __init__(self, events: Sequence[NewEvent], wake: Callable[[], None]) -> None:
        self.events = events
        self.wake = wake
        self.answers: list[Appended] = []
        self.error: BaseException | None = None
        self.settled = False

    def settle(self) -> None:
        self.settled = True
        self.wake()

    def result(self) -> list[Appended]:
        if self.error is not None:
            raise self.error
        return self.answers


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a caller that gave up (a client gone) has cancelled it
        future.set_result(None)


class GroupCommitStore:
    """An ``Appender`` over ``pool`` whose concurrent callers share commits.

    ``flushers`` threads commit at once (each with a pool connection of its own), and a
    batch holds at most ``max_events`` events (callers beyond wait for the next one). A
    caller of ``alone`` events or more commits by itself, without queueing.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any],
        upcast: Upcast | None = None,
        *,
        flushers: int = 1,
        max_events: int = 5000,
        alone: int = ALONE,
    ) -> None:
        # Each flush is one append of the plain store: one statement, one commit.
        self._store, self._max_events, self._alone = EventStore(pool, upcast), max_events, alone
        self._queue: deque[_Waiting] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._flush_forever, name=f"group-commit-{n}", daemon=True)
            for n in range(flushers)
        ]
        for thread in self._threads:
            thread.start()

    def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """Append ``events`` (atomically, in order); answers once they are committed."""
        if not events:
            return []
        if len(events) >= self._alone:
            self._refuse_if_closed()
            return self._store.append(events)
        done = threading.Event()
        waiting = self._enqueue(events, done.set)
        done.wait()
        return waiting.result()

    async def append_async(self, events: Sequence[NewEvent]) -> list[Appended]:
        """``append`` for a coroutine: its event loop runs on while the batch commits."""
        if not events:
            return []
        if len(events) >= self._alone:
            self._refuse_if_closed()
            return await self._store.append_async(events)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

        waiting = self._enqueue(events, wake)
        # Cancelled (the client went away), the events are still committed with the batch.
        await future
        return waiting.result()

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise StoreUnavailable("the event store is shutting down")

    def _enqueue(self, events: Sequence[NewEvent], wake: Callable[[], None]) -> _Waiting:
        waiting = _Waiting(events, wake)
        with self._ready:
            self._refuse_if_closed()
            self._queue.append(waiting)
            self._ready.notify()
        return waiting

    def close(self) -> None:
        """Refuse new appends; the queued ones are still committed."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _take(self) -> list[_Waiting] | None:
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            batch: list[_Waiting] = []
            size = 0
            while self._queue and (
                not batch or size + len(self._queue[0].events) <= self._max_events
            ):
                waiting = self._queue.popleft()
                batch.append(waiting)
                size += len(waiting.events)
            return batch

    def _flush_forever(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._flush(batch)
            except StoreUnavailable as exc:
                self._fail(batch, exc)
            except Exception:
                log.warning("a shared commit failed; committing its %d callers alone", len(batch))
                for waiting in batch:
                    try:
                        self._flush([waiting])
                    except BaseException as exc:  # this caller's own failure, answered to it
                        self._fail([waiting], exc)
            except BaseException as exc:
                self._fail(batch, exc)
                raise

    def _flush(self, batch: list[_Waiting]) -> None:
        answers = self._store.append([event for waiting in batch for event in waiting.events])
        start = 0
        for waiting in batch:
            waiting.answers = answers[start : start + len(waiting.events)]
            start += len(waiting.events)
            waiting.settle()

    @staticmethod
    def _fail(batch: list[_Waiting], error: BaseException) -> None:
        for waiting in batch:
            if not waiting.settled:
                waiting.error = error
                waiting.settle()
