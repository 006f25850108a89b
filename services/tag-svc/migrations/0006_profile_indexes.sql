-- Previews over many profiles (tag_svc.segments.sql): a rule's fact conditions are computed for
-- all of a tenant's contacts at once, as joins of the profiles with the facts of the rule's event
-- types and windows (grouped by contact where a count or an amount is compared). Both indexes
-- carry what those passes read, so they read no table rows.

-- A range of days of one event type: short windows, and "has such an event" / "has none".
-- Partial on purpose: "day IS NOT NULL" holds for every row, but only a query with a condition
-- on day (every preview pass has its window) can prove it and use the index. Without it, on a
-- table not analyzed yet, the planner took this index for the foreign-key check of every item
-- line (tenant_id, event_type, event_key) and for the processor's per-contact fact load, and
-- scanned all of a tenant's facts of the type per row: the processor fell to ~100 events/s.
CREATE INDEX profile_facts_window_idx ON profile_facts (tenant_id, event_type, day)
    INCLUDE (external_userid, amount)
    WHERE day IS NOT NULL;

-- The facts of each contact in order (the processor loads a contact's facts through it): with
-- the amount, a long window or RFM is one ordered pass, grouped as it goes.
DROP INDEX profile_facts_contact_idx;
CREATE INDEX profile_facts_contact_idx ON profile_facts (tenant_id, external_userid, event_type, day)
    INCLUDE (amount);
