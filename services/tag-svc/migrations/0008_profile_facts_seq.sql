-- The live processor keeps contacts' facts in memory between batches
-- (tag_svc.processor.fact_cache). Every transaction that records facts for a contact moves its
-- sequence on; a cached copy is used only while the row still has the sequence it was read at,
-- so a copy never outlives a write by another processor instance.
ALTER TABLE profiles ADD COLUMN facts_seq bigint NOT NULL DEFAULT 0;
