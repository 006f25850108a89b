-- metrics-svc owns the "metrics" schema. The shared track (outbox, processed_events, ingest_tally)
-- is applied before this file; the service's own tables arrive in its next numbered files.
SELECT 1;
