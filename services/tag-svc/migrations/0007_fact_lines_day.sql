-- Item lines carry their fact's contact and day (tag_svc.segments.sql; docs/segments.md, "Preview
-- and memory at 1M profiles"). A category or sku filter over a window is then a range of the
-- lines' own index: before, the lines had neither, so a preview joined every line of the tenant
-- with its fact to learn the day and the contact (5.1M lines at 1M profiles: 2.5-8 s a rule).
--
-- A line is written once, by the statement right after the one that wrote its fact, with the
-- fact's external_userid and day (processor.store.profiles.insert_facts); facts are never
-- updated, so the copies cannot drift apart.
--
-- The foreign key to profile_facts goes: lines are only ever inserted for facts the same
-- transaction has just inserted, so its check cost the processor a lookup per line and protected
-- nothing. Its ON DELETE CASCADE was how erasure removed a contact's lines: erasure now deletes
-- them itself (processor.store.profiles.ERASE_LINES), before the facts.
--
-- The table is rebuilt rather than updated in place: filling two new columns of every row with
-- an UPDATE wrote each line twice, doubled the table and its primary key until a VACUUM FULL, and
-- took 140 s for 5.1M lines on a 2-core machine; the copy takes about 25 s, under this
-- migration's lock, and leaves a compact table.

SET LOCAL work_mem = '64MB';
SET LOCAL maintenance_work_mem = '256MB';

CREATE TABLE profile_fact_lines_0007 (
    tenant_id        text    NOT NULL,
    event_type       text    NOT NULL,
    event_key        text    NOT NULL,
    line_no          integer NOT NULL,
    -- the fact's contact and day (profile_facts.external_userid, .day)
    external_userid  text    NOT NULL,
    day              date    NOT NULL,
    category         text    NOT NULL,
    sku              text    NOT NULL,
    amount           numeric NOT NULL
);

-- Every line has its fact: the foreign key held until now.
INSERT INTO profile_fact_lines_0007
SELECT l.tenant_id, l.event_type, l.event_key, l.line_no, f.external_userid, f.day, l.category, l.sku, l.amount
FROM profile_fact_lines l
JOIN profile_facts f ON f.tenant_id = l.tenant_id AND f.event_type = l.event_type AND f.event_key = l.event_key;

DROP TABLE profile_fact_lines;
ALTER TABLE profile_fact_lines_0007 RENAME TO profile_fact_lines;
ALTER TABLE profile_fact_lines
    ADD CONSTRAINT profile_fact_lines_pkey PRIMARY KEY (tenant_id, event_type, event_key, line_no);

-- Item-filtered passes of previews (tag_svc.segments.sql.sources): the matching lines of a window
-- with what the pass reads of them (the contact it groups by, the fact it counts once, the amount
-- it sums), so such a pass reads no table row and no fact.
--
-- All three are partial on purpose, like profile_facts_window_idx (0006): "day IS NOT NULL" holds
-- for every row, but only a query with a condition on day (every preview pass has its window) can
-- prove it and use them. The processor reads and erases lines by their fact's key (the primary
-- key) and never with a condition on day, so it cannot pick one of these, whatever the
-- statistics say (on a table not analyzed yet the planner took 0006's window index for the
-- processor's lookups by key and scanned a tenant's facts per row).

-- A category, or a sku, over a range of days: a short window reads only its days.
CREATE INDEX profile_fact_lines_category_idx ON profile_fact_lines (tenant_id, event_type, category, day)
    INCLUDE (external_userid, event_key, amount)
    WHERE day IS NOT NULL;
CREATE INDEX profile_fact_lines_sku_idx ON profile_fact_lines (tenant_id, event_type, sku, day)
    INCLUDE (external_userid, event_key, amount)
    WHERE day IS NOT NULL;

-- A category's lines contact by contact: a long window is one ordered pass, grouped as it goes,
-- where the index above would feed a hash of every contact (at 1M profiles, "amount of skincare in
-- 365 days" over 1.7M lines: 2.2 s against 3.2 s). The planner picks between the two by the
-- window's length. A sku is a small share of the lines and needs no second one.
CREATE INDEX profile_fact_lines_category_contact_idx
    ON profile_fact_lines (tenant_id, category, external_userid, day)
    INCLUDE (event_type, event_key, amount)
    WHERE day IS NOT NULL;

-- Orders and refunds contact by contact (long windows, amounts and RFM): the same ordered pass
-- as profile_facts_contact_idx without reading the messages and friend-adds in between (3.1M of
-- 5.7M facts at 1M profiles: "5 orders in 365 days" 2.4 s -> 1.7 s, an RFM class 3.0 s -> 2.1 s).
-- Partial on day for the same reason as above; the processor loads facts without a day.
CREATE INDEX profile_facts_orders_idx ON profile_facts (tenant_id, external_userid, day)
    INCLUDE (event_type, amount)
    WHERE day IS NOT NULL AND event_type IN ('order-placed', 'order-refunded');

ANALYZE profile_fact_lines;
