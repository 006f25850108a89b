"""Forward-only migration runner: numbered plain SQL files applied once per service schema.

A migration directory holds files named ``NNNN_description.sql`` (four digits, lower-case
``[a-z0-9_]`` description), e.g. ``0001_init.sql``, ``0002_add_tags.sql``. Other ``.sql`` names,
or any file starting with a digit that does not fit, are refused with :class:`MigrationNameError`
before anything runs; files such as ``README.md`` are ignored.

:func:`migrate`, normally called at start-up:

- holds a session advisory lock keyed on the schema for the whole run, so services starting
  concurrently apply each file exactly once (the others wait, then find nothing to do);
- records applied files in ``<schema>.schema_migrations(track, name, checksum, applied_at)``;
  ``checksum`` is the sha256 of the file's bytes;
- refuses to run at all when an applied file changed on disk (:class:`MigrationChecksumError`)
  or when a new file sorts before one already applied (:class:`MigrationOrderError`);
- applies each pending file in its own transaction together with its ``schema_migrations``
  row, with ``search_path`` set to the schema (``SET LOCAL``), so files use unqualified names.
  A failing file rolls back alone and stops the run; earlier files stay applied.

Files must not contain transaction control (``BEGIN``/``COMMIT``) or statements that cannot run
in a transaction (``CREATE INDEX CONCURRENTLY``).

Tracks keep independent histories in the same schema: the ``shared`` track
(:data:`SHARED_MIGRATIONS`, the outbox table) and the ``service`` track (the service's own
files). :func:`migrate_service` applies both, shared first.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from scrm_shared.db.pool import (
    advisory_key,
    check_schema_name,
    connection_of,
    create_schema_if_missing,
    quote_schema,
)

log = logging.getLogger(__name__)

SHARED_MIGRATIONS: Path = Path(__file__).parent / "sql" / "shared"
"""The migration track every service schema gets (``track="shared"``): the outbox table."""

MIGRATION_NAME = re.compile(r"(?P<number>\d{4})_(?P<label>[a-z0-9][a-z0-9_]*)\.sql")
TRACK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")

_LOCK_PURPOSE = "migrate"

_CREATE_TRACKING_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    track       text        NOT NULL,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (track, name)
)
"""
_SET_SEARCH_PATH = "SELECT set_config('search_path', $1, true)"
_SELECT_APPLIED = "SELECT name, checksum FROM schema_migrations WHERE track = $1 ORDER BY name"
_INSERT_APPLIED = "INSERT INTO schema_migrations (track, name, checksum) VALUES ($1, $2, $3)"
_LOCK = "SELECT pg_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"

Connection = asyncpg.Connection | PoolConnectionProxy


class MigrationError(Exception):
    """The migrations cannot be applied as they are; nothing (more) was applied."""


class MigrationNameError(MigrationError):
    """A file in the migration directory is badly named, or two files share a number."""


class MigrationOrderError(MigrationError):
    """A new file sorts before a file already applied (forward-only: renumber it)."""


class MigrationChecksumError(MigrationError):
    """A file already applied has been edited since (forward-only: add a new file instead)."""

    def __init__(self, *, track: str, name: str, recorded: str, actual: str) -> None:
        self.track = track
        self.name = name
        self.recorded = recorded
        self.actual = actual
        super().__init__(
            f"applied migration {track}/{name} has changed on disk: recorded sha256 {recorded}, "
            f"file sha256 {actual}. Applied migrations are immutable; revert the edit and add a "
            "new numbered file instead."
        )


@dataclass(frozen=True, slots=True)
class MigrationFile:
    number: int
    name: str
    sql: str
    checksum: str


def load_migrations(directory: Path) -> list[MigrationFile]:
    """Read and validate the migration files of ``directory``, in order."""
    if not directory.is_dir():
        raise MigrationError(f"migration directory {directory} does not exist")
    files: list[MigrationFile] = []
    bad: list[str] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        match = MIGRATION_NAME.fullmatch(path.name)
        if match is None:
            if path.suffix.lower() == ".sql" or path.name[:1].isdigit():
                bad.append(path.name)
            continue
        raw = path.read_bytes()
        files.append(
            MigrationFile(
                number=int(match["number"]),
                name=path.name,
                sql=raw.decode("utf-8"),
                checksum=hashlib.sha256(raw).hexdigest(),
            )
        )
    if bad:
        raise MigrationNameError(
            f"badly named migration file(s) in {directory}: {', '.join(bad)}; "
            "expected NNNN_description.sql (four digits, lower-case [a-z0-9_] description)"
        )
    seen: dict[int, str] = {}
    for f in files:
        if f.number == 0:
            raise MigrationNameError(f"migration numbers start at 0001: {directory / f.name}")
        if f.number in seen:
            raise MigrationNameError(
                f"migrations {seen[f.number]} and {f.name} in {directory} share number {f.number:04d}"
            )
        seen[f.number] = f.name
    return sorted(files, key=lambda f: f.number)


async def migrate(
    pool_or_conn: asyncpg.Pool | Connection,
    *,
    schema: str,
    directory: Path,
    track: str = "service",
) -> list[str]:
    """Apply the pending migrations of ``directory`` to ``schema``; returns the names applied.

    Safe to call from several processes at once and idempotent (a second call returns ``[]``).
    ``pool_or_conn`` is a pool or a connection that is not inside a transaction; the schema is
    created if missing. Raises :class:`MigrationError` subclasses (nothing applied) for badly
    named, reordered or edited files, and the database error of a failing file (that file
    rolled back, the ones before it kept).
    """
    check_schema_name(schema)
    if TRACK_NAME.fullmatch(track) is None:
        raise ValueError(f"invalid migration track {track!r}: expected {TRACK_NAME.pattern}")
    files = load_migrations(directory)
    async with connection_of(pool_or_conn) as conn:
        return await _migrate_locked(conn, schema=schema, files=files, track=track)


async def migrate_service(pool: asyncpg.Pool | Connection, *, schema: str, directory: Path) -> list[str]:
    """Apply the shared track (the outbox) then the service's own files to ``schema``.

    Returns what was applied as ``"<track>/<name>"``, e.g. ``["shared/0001_outbox.sql",
    "service/0001_init.sql"]``.
    """
    applied = [
        f"shared/{name}"
        for name in await migrate(pool, schema=schema, directory=SHARED_MIGRATIONS, track="shared")
    ]
    applied += [
        f"service/{name}" for name in await migrate(pool, schema=schema, directory=directory, track="service")
    ]
    return applied


async def _migrate_locked(
    conn: Connection, *, schema: str, files: list[MigrationFile], track: str
) -> list[str]:
    if conn.is_in_transaction():
        raise MigrationError("migrate() needs a connection outside any transaction: each file gets its own")
    key = advisory_key(_LOCK_PURPOSE, schema)
    await conn.execute(_LOCK, key)
    try:
        await create_schema_if_missing(conn, schema)
        async with conn.transaction():
            await conn.execute(_SET_SEARCH_PATH, quote_schema(schema))
            await conn.execute(_CREATE_TRACKING_TABLE)
            recorded = {r["name"]: r["checksum"] for r in await conn.fetch(_SELECT_APPLIED, track)}
        pending = _pending(files, recorded, track=track, schema=schema)
        applied: list[str] = []
        for f in pending:
            async with conn.transaction():
                await conn.execute(_SET_SEARCH_PATH, quote_schema(schema))
                await conn.execute(f.sql)
                await conn.execute(_INSERT_APPLIED, track, f.name, f.checksum)
            log.info("migration applied", extra={"schema": schema, "track": track, "migration": f.name})
            applied.append(f.name)
        return applied
    finally:
        # On a pool connection the release would drop the lock too (asyncpg resets sessions with
        # pg_advisory_unlock_all); a bare connection needs it explicitly.
        if not conn.is_closed():
            try:
                await conn.execute(_UNLOCK, key)
            except Exception:  # never mask the error that got us here
                log.warning("could not release the migration lock", exc_info=True)


def _pending(
    files: list[MigrationFile], recorded: dict[str, str], *, track: str, schema: str
) -> list[MigrationFile]:
    """The files still to apply, after checking the applied ones are untouched and in order."""
    for f in files:
        checksum = recorded.get(f.name)
        if checksum is not None and checksum != f.checksum:
            raise MigrationChecksumError(track=track, name=f.name, recorded=checksum, actual=f.checksum)
    on_disk = {f.name for f in files}
    unknown = sorted(set(recorded) - on_disk)
    if unknown:
        # Typically an older build starting against a newer schema (a rollback): not fatal.
        log.warning(
            "applied migrations missing on disk",
            extra={"schema": schema, "track": track, "migrations": unknown},
        )
    pending = [f for f in files if f.name not in recorded]
    last_applied = max(
        (int(m["number"]) for m in map(MIGRATION_NAME.fullmatch, recorded) if m is not None), default=0
    )
    late = [f.name for f in pending if f.number < last_applied]
    if late:
        raise MigrationOrderError(
            f"migration(s) {', '.join(late)} of track {track!r} sort before already applied ones "
            f"in schema {schema!r}; renumber them after {last_applied:04d}"
        )
    return pending
