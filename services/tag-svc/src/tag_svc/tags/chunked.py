"""Durable chunked work: the loop the bulk tag jobs (:mod:`tag_svc.tags.jobs`) and the renamed
tags' name syncs (:mod:`tag_svc.tags.name_syncs`) share.

The work is a row of any tenant (a job, a sync) with its progress in it. One call of
:meth:`ChunkedRunner.run_chunk` claims the next due row and applies its next chunk in one
transaction, so a crash repeats at most the chunk in flight. A chunk that fails is counted
against its row, which is held back for ``retry_wait`` (other rows go on meanwhile); after
``max_attempts`` failures in a row the row is given up on.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import ClassVar, Generic, Protocol, TypedDict, TypeVar

import asyncpg
from prometheus_client import Counter

from tag_svc.tags.store import Conn

__all__ = ["CHUNK_SIZE", "MAX_ATTEMPTS", "RETRY_WAIT", "ChunkOptions", "ChunkedRunner"]

CHUNK_SIZE = 1000
MAX_ATTEMPTS = 5
RETRY_WAIT = timedelta(seconds=5)


class ChunkOptions(TypedDict, total=False):
    """The runner's keyword options, for a subclass that adds its own (``**options: Unpack[...]``)."""

    chunk_size: int
    max_attempts: int
    retry_wait: timedelta


class _Row(Protocol):
    @property
    def tenant_id(self) -> str: ...


RowT = TypeVar("RowT", bound=_Row)


class ChunkedRunner(ABC, Generic[RowT]):
    """Works through due rows of every tenant, one chunk per call.

    A subclass says how to claim a row, apply a chunk of it, count a failure and give up on it,
    and names its counter (by outcome: what :meth:`_chunk` returns, ``failed``, ``given_up``),
    its logger and the warning logged when a chunk fails.
    """

    chunks: ClassVar[Counter]
    given_up: ClassVar[str]
    logger: ClassVar[logging.Logger]
    failure_message: ClassVar[str]

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        chunk_size: int = CHUNK_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        retry_wait: timedelta = RETRY_WAIT,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.pool = pool
        self.chunk_size = chunk_size
        self.max_attempts = max_attempts
        self.retry_wait = retry_wait

    async def run_chunk(self) -> bool:
        """Apply the next chunk of the next due row; ``False`` when none was due."""
        row: RowT | None = None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await self._claim(conn)
                if row is None:
                    return False
                outcome = await self._chunk(conn, row)
        except Exception as exc:
            if row is None:
                raise
            await self._failed(row, exc)
            return True
        self.chunks.labels(outcome).inc()
        return True

    async def run_until_idle(self, max_chunks: int | None = None) -> int:
        """Apply chunks until none is due (or ``max_chunks`` were applied); returns how many."""
        done = 0
        while max_chunks is None or done < max_chunks:
            if not await self.run_chunk():
                break
            done += 1
        return done

    @abstractmethod
    async def _claim(self, conn: Conn) -> RowT | None:
        """The next due row, locked for the caller's transaction (``None``: no work)."""

    @abstractmethod
    async def _chunk(self, conn: Conn, row: RowT) -> str:
        """Apply one chunk of ``row`` in the caller's transaction; returns the outcome."""

    @abstractmethod
    async def _record_failure(self, row: RowT, error: str) -> int:
        """Count a failed chunk of ``row`` and hold it back; returns its failures so far."""

    @abstractmethod
    async def _give_up(self, conn: Conn, row: RowT, error: str) -> None:
        """Mark ``row`` failed with ``error`` in the caller's transaction."""

    async def _failed(self, row: RowT, exc: Exception) -> None:
        # No traceback: database errors may quote row values (customer ids) in their detail.
        error = type(exc).__name__
        attempts = await self._record_failure(row, error)
        if attempts >= self.max_attempts:
            async with self.pool.acquire() as conn, conn.transaction():
                await self._give_up(conn, row, error)
            self.chunks.labels(self.given_up).inc()
        else:
            self.chunks.labels("failed").inc()
        self.logger.warning(
            self.failure_message,
            extra={"tenant_id": row.tenant_id, "error_type": error, "attempts": attempts},
        )
