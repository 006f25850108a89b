"""The migration runner against a real PostgreSQL: order, idempotence, checksums, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
import pytest

from scrm_shared.db.migrations import (
    SHARED_MIGRATIONS,
    MigrationChecksumError,
    MigrationError,
    MigrationNameError,
    MigrationOrderError,
    migrate,
    migrate_service,
)
from scrm_shared.db.pool import create_pool

pytestmark = pytest.mark.integration

# Each file logs itself in applied_log, so a file applied twice shows up as a duplicate row
# instead of an error.
LOG_TABLE = "CREATE TABLE IF NOT EXISTS applied_log (name text NOT NULL);\n"


def write(directory: Path, name: str, sql: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(sql)
    return path


def logging_file(directory: Path, name: str, extra: str = "") -> Path:
    return write(directory, name, f"{LOG_TABLE}INSERT INTO applied_log VALUES ('{name}');\n{extra}")


async def applied_log(pool: asyncpg.Pool) -> list[str]:
    return [r["name"] for r in await pool.fetch("SELECT name FROM applied_log ORDER BY name")]


async def recorded(pool: asyncpg.Pool, track: str = "service") -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT name, checksum FROM schema_migrations WHERE track = $1 ORDER BY name", track
    )
    return [(r["name"], r["checksum"]) for r in rows]


async def table_exists(pool: asyncpg.Pool, schema: str, table: str) -> bool:
    return await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.{table}")


async def test_applies_files_in_order_once_and_rerun_is_a_no_op(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0002_seed.sql", "INSERT INTO contact (name) VALUES ('ada');")
    write(tmp_path, "0001_init.sql", "CREATE TABLE contact (id serial PRIMARY KEY, name text NOT NULL);")
    write(tmp_path, "README.md", "not a migration, ignored")

    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path) == ["0001_init.sql", "0002_seed.sql"]
    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path) == []
    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path) == []

    assert await pg_pool.fetchval("SELECT count(*) FROM contact") == 1
    write(tmp_path, "0003_more.sql", "INSERT INTO contact (name) VALUES ('grace');")
    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path) == ["0003_more.sql"]
    assert await pg_pool.fetchval("SELECT count(*) FROM contact") == 2


async def test_records_each_file_with_its_sha256(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    first = write(tmp_path, "0001_init.sql", "CREATE TABLE a (id int);")
    second = write(tmp_path, "0002_b.sql", "CREATE TABLE b (id int);")

    await migrate(pg_pool, schema=pg_schema, directory=tmp_path)

    assert await recorded(pg_pool) == [
        ("0001_init.sql", hashlib.sha256(first.read_bytes()).hexdigest()),
        ("0002_b.sql", hashlib.sha256(second.read_bytes()).hexdigest()),
    ]
    applied_at = await pg_pool.fetch("SELECT applied_at FROM schema_migrations")
    assert all(r["applied_at"] is not None for r in applied_at)


async def test_edited_applied_file_is_refused_and_nothing_else_applies(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "0001_init.sql", "CREATE TABLE a (id int);")
    await migrate(pg_pool, schema=pg_schema, directory=tmp_path)
    old = hashlib.sha256(path.read_bytes()).hexdigest()

    path.write_text("CREATE TABLE a (id bigint);")
    new = hashlib.sha256(path.read_bytes()).hexdigest()
    write(tmp_path, "0002_b.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationChecksumError) as raised:
        await migrate(pg_pool, schema=pg_schema, directory=tmp_path)

    err = raised.value
    assert (err.name, err.recorded, err.actual) == ("0001_init.sql", old, new)
    assert "0001_init.sql" in str(err) and old in str(err) and new in str(err)
    assert not await table_exists(pg_pool, pg_schema, "b")
    assert [name for name, _ in await recorded(pg_pool)] == ["0001_init.sql"]


async def test_failing_file_rolls_back_alone_and_stops_the_run(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE a (id int);")
    write(tmp_path, "0002_broken.sql", "CREATE TABLE half (id int);\nCREATE TABLE oops (id nosuchtype);")
    write(tmp_path, "0003_after.sql", "CREATE TABLE c (id int);")

    with pytest.raises(asyncpg.UndefinedObjectError):
        await migrate(pg_pool, schema=pg_schema, directory=tmp_path)

    assert [name for name, _ in await recorded(pg_pool)] == ["0001_ok.sql"]
    assert await table_exists(pg_pool, pg_schema, "a")
    assert not await table_exists(pg_pool, pg_schema, "half")
    assert not await table_exists(pg_pool, pg_schema, "c")

    write(tmp_path, "0002_broken.sql", "CREATE TABLE half (id int);")
    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path) == [
        "0002_broken.sql",
        "0003_after.sql",
    ]


async def test_concurrent_migrations_apply_each_file_exactly_once(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    # pg_sleep widens the window in which an unlocked runner would apply a file twice.
    for n in range(1, 5):
        logging_file(tmp_path, f"{n:04d}_step{n}.sql", "SELECT pg_sleep(0.05);")
    # Bare connections with the default search_path, on a schema that does not exist yet.
    conns = [await asyncpg.connect(pg_dsn) for _ in range(6)]
    try:
        results = await asyncio.gather(
            *(migrate(conn, schema=pg_schema, directory=tmp_path) for conn in conns)
        )
    finally:
        for conn in conns:
            await conn.close()

    names = [f"{n:04d}_step{n}.sql" for n in range(1, 5)]
    assert sorted(name for result in results for name in result) == names
    assert sum(1 for result in results if result) == 1  # one runner did it all under the lock
    pool = await create_pool(pg_dsn, schema=pg_schema)
    try:
        assert await applied_log(pool) == names
        assert [name for name, _ in await recorded(pool)] == names
    finally:
        await pool.close()


async def test_bare_connection_runs_files_in_the_schema_not_public(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_init.sql", "CREATE TABLE only_here (id int);")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, schema=pg_schema, directory=tmp_path)
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{pg_schema}.only_here")
        assert await conn.fetchval("SELECT to_regclass('public.only_here') IS NULL")
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{pg_schema}.schema_migrations")
        # The session's own search_path is left as it was (SET LOCAL only).
        assert "$user" in await conn.fetchval("SHOW search_path")
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "bad_name",
    [
        "1_init.sql",
        "00001_init.sql",
        "0001-init.sql",
        "init.sql",
        "0001_init.SQL",
        "0001_AddTags.sql",
        "0001_.sql",
        "0002_add tags.sql",
        "0003_init.sql.bak",
    ],
)
async def test_badly_named_files_are_rejected_before_anything_runs(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path, bad_name: str
) -> None:
    write(tmp_path, "0001_good.sql", "CREATE TABLE good (id int);")
    write(tmp_path, bad_name, "CREATE TABLE bad (id int);")

    with pytest.raises(MigrationNameError, match=bad_name.replace(".", r"\.")):
        await migrate(pg_pool, schema=pg_schema, directory=tmp_path)

    assert not await table_exists(pg_pool, pg_schema, "good")


async def test_duplicate_numbers_are_rejected(pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    write(tmp_path, "0001_b.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationNameError, match="share number 0001"):
        await migrate(pg_pool, schema=pg_schema, directory=tmp_path)

    assert not await table_exists(pg_pool, pg_schema, "a")


async def test_new_file_numbered_before_an_applied_one_is_refused(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    write(tmp_path, "0003_c.sql", "CREATE TABLE c (id int);")
    await migrate(pg_pool, schema=pg_schema, directory=tmp_path)
    write(tmp_path, "0002_b.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationOrderError, match=r"0002_b\.sql"):
        await migrate(pg_pool, schema=pg_schema, directory=tmp_path)

    assert not await table_exists(pg_pool, pg_schema, "b")


async def test_tracks_are_independent(pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path) -> None:
    write(tmp_path / "one", "0001_init.sql", "CREATE TABLE one (id int);")
    write(tmp_path / "two", "0001_init.sql", "CREATE TABLE two (id int);")

    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path / "one", track="one") == [
        "0001_init.sql"
    ]
    assert await migrate(pg_pool, schema=pg_schema, directory=tmp_path / "two", track="two") == [
        "0001_init.sql"
    ]

    assert await table_exists(pg_pool, pg_schema, "one") and await table_exists(pg_pool, pg_schema, "two")


async def test_migrate_service_applies_the_shared_track_then_the_service_files(
    pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path
) -> None:
    # A service file may rely on the shared track having run (the outbox exists).
    write(tmp_path, "0001_init.sql", "CREATE TABLE contact (id int);\nSELECT count(*) FROM outbox;")

    applied = await migrate_service(pg_pool, schema=pg_schema, directory=tmp_path)

    shared = sorted(p.name for p in SHARED_MIGRATIONS.glob("*.sql"))
    assert applied == [f"shared/{name}" for name in shared] + ["service/0001_init.sql"]
    assert await table_exists(pg_pool, pg_schema, "outbox")
    assert await migrate_service(pg_pool, schema=pg_schema, directory=tmp_path) == []


async def test_refuses_a_connection_inside_a_transaction(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_init.sql", "CREATE TABLE a (id int);")
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            with pytest.raises(MigrationError, match="outside any transaction"):
                await migrate(conn, schema=pg_schema, directory=tmp_path)
    finally:
        await conn.close()


async def test_missing_directory_is_an_error(pg_pool: asyncpg.Pool, pg_schema: str, tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        await migrate(pg_pool, schema=pg_schema, directory=tmp_path / "nope")


@pytest.mark.parametrize("schema", ["Contact", "contact; DROP SCHEMA public", 'a"b', "", "1abc", "x" * 64])
async def test_invalid_schema_names_are_rejected_before_any_sql(
    pg_dsn: str, tmp_path: Path, schema: str
) -> None:
    write(tmp_path, "0001_init.sql", "CREATE TABLE a (id int);")
    with pytest.raises(ValueError, match="invalid schema name"):
        await create_pool(pg_dsn, schema=schema)
    conn = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(ValueError, match="invalid schema name"):
            await migrate(conn, schema=schema, directory=tmp_path)
    finally:
        await conn.close()


async def test_create_pool_tolerates_concurrent_schema_creation(pg_dsn: str, pg_schema: str) -> None:
    pools = await asyncio.gather(
        *(create_pool(pg_dsn, schema=pg_schema, min_size=1, max_size=1) for _ in range(5))
    )
    try:
        assert {await p.fetchval("SELECT current_schema()") for p in pools} == {pg_schema}
    finally:
        for p in pools:
            await p.close()
