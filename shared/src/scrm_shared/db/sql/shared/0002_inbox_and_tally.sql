-- Consumer-side idempotency (scrm_shared.db.inbox): every event a consumer applied, recorded in
-- the same transaction as its effect, so a redelivered event changes nothing.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
-- Retention of the dedupe window is by processed_at (redelivery happens within hours, not months).
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- The ingest tally (scrm_shared.service.tally): events consumed per tenant, topic and type.
CREATE TABLE ingest_tally (
    tenant_id  text        NOT NULL,
    topic      text        NOT NULL,
    event_type text        NOT NULL,
    consumed   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, topic, event_type)
);
