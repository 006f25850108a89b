-- Previews (and a backfill's count) read a tenant's live profiles in key order: with this index
-- an index-only scan of one contact range, which PostgreSQL merge-joins with the per-contact
-- aggregate of the facts (itself in contact order) instead of reading the whole profiles table
-- once per range and hashing the aggregate. At 1M profiles, split rules 3-23 % faster (RFM
-- class 1.21 -> 1.02 s, a count over 365 days 1.06 -> 0.82 s). About 47 MB at 1M profiles and a
-- second or two to build, under the table's lock; the processor's reads by key never use it
-- (they have no condition on status), and its updates of other columns stay HOT.
CREATE INDEX profiles_live_idx ON profiles (tenant_id, external_userid) WHERE status <> 'erased';
