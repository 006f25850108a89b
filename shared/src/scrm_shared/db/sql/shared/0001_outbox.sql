-- Transactional outbox: a row per event, inserted in the same transaction as the state
-- change it announces, published to Kafka by scrm_shared.db.outbox.OutboxRelay after commit.
-- Applied to every service schema as migration track "shared" (tables are unqualified: the
-- runner sets search_path to the service schema).

CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    -- Kafka headers as [{"key": str, "value_b64": str}, ...], in order (keys may repeat).
    headers     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    event_id    uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);

-- The relay reads unsent rows in id order; sent rows wait only for the purge.
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

-- Wake the relay on commit (NOTIFY is delivered only when the inserting transaction commits,
-- and identical notifications within one transaction collapse into one).
-- Channel: 'outbox_' || schema, cut to PostgreSQL's 63-byte identifier limit.
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left('outbox_' || TG_TABLE_SCHEMA, 63), '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
