-- A fact's item lines inline, as the processor reads them: [[category, sku, amount], ...] (amount
-- a decimal string; [] for a fact without lines).
--
-- The processor reads a contact's whole history back whenever it is not in its fact cache (a
-- long history, another replica wrote the contact). Its lines were one primary-key lookup per
-- fact into profile_fact_lines, a random read each once the tables outgrow memory: ~0.3 ms of
-- PostgreSQL per contact with 22 orders (docs/segments.md, "Processor throughput"). With the
-- copy here, the history is the fact rows alone.
--
-- profile_fact_lines stays the lines' table of record: previews read their indexes, erasure
-- deletes them. Facts are never updated, so the copy cannot drift. Rows written before this
-- migration keep NULL and are read through profile_fact_lines as before
-- (processor.store.profiles.SELECT_FACTS_WITH_LINES): adding a nullable column rewrites nothing,
-- so the migration is instant at any size.

ALTER TABLE profile_facts ADD COLUMN lines jsonb;
