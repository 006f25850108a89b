-- Live segments (tag_svc.processor, tag_svc.api.segments): definitions, memberships, the
-- schedule of time-driven re-evaluations, how orders find their contact, size history, RFM
-- thresholds. The behaviour profiles they are evaluated over are migration 0002's.

-- A tenant's timezone: every fact's day and every "today" of a rule is a date in it. Missing row:
-- Asia/Shanghai. Set it before the tenant's events arrive (stored fact days do not move).
CREATE TABLE segment_tenants (
    tenant_id  text PRIMARY KEY,
    timezone   text NOT NULL DEFAULT 'Asia/Shanghai'
);

-- One row per segment. `rule` is the canonical JSON of the parsed rule; `rule_version` moves on
-- every edit so a backfill chunk computed under an older rule is refused when it commits.
-- While `status` is 'backfilling', membership is exact for contacts up to `backfill_cursor`
-- (in external_userid order) and for every contact an event touched since the backfill began.
CREATE TABLE segments (
    tenant_id           text        NOT NULL,
    segment_id          uuid        NOT NULL,
    name                text        NOT NULL,
    rule                jsonb       NOT NULL,
    rule_version        integer     NOT NULL DEFAULT 1,
    uses_rfm            boolean     NOT NULL,
    status              text        NOT NULL CHECK (status IN ('backfilling', 'live')),
    -- segment-changed cause of the backfill's transitions: a new segment, or an edited rule
    -- (RFM thresholds changing count as an edit of the rules that use them)
    backfill_cause      text        CHECK (backfill_cause IN ('backfill', 'rule-edited')),
    backfill_cursor     text,
    backfill_processed  integer     NOT NULL DEFAULT 0,
    backfill_total      integer     NOT NULL DEFAULT 0,
    -- members now, kept by the same transactions that write segment_members
    size                integer     NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, segment_id)
);
CREATE UNIQUE INDEX segments_name_key ON segments (tenant_id, name);
CREATE INDEX segments_backfilling_idx ON segments (updated_at) WHERE status = 'backfilling';

CREATE TABLE segment_members (
    tenant_id        text        NOT NULL,
    segment_id       uuid        NOT NULL,
    external_userid  text        NOT NULL,
    entered_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, external_userid),
    FOREIGN KEY (tenant_id, segment_id) REFERENCES segments (tenant_id, segment_id) ON DELETE CASCADE
);
-- "which segments is this contact in", and loading a batch's contacts' memberships
CREATE INDEX segment_members_contact_idx ON segment_members (tenant_id, external_userid);

-- Per segment and tenant-local day: the size after the day's last change, and the day's entries
-- and exits. Days without a row kept the previous day's size.
CREATE TABLE segment_size_history (
    tenant_id   text    NOT NULL,
    segment_id  uuid    NOT NULL,
    day         date    NOT NULL,
    size        integer NOT NULL,
    entered     integer NOT NULL DEFAULT 0,
    exited      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, segment_id, day),
    FOREIGN KEY (tenant_id, segment_id) REFERENCES segments (tenant_id, segment_id) ON DELETE CASCADE
);

-- The first day on which some segment's answer for the contact may change without a new event
-- (tag_svc.segments.next_change, the minimum over segments; earlier is allowed, never later).
-- No row: nothing changes by time alone.
CREATE TABLE segment_schedule (
    tenant_id        text NOT NULL,
    external_userid  text NOT NULL,
    due_day          date NOT NULL,
    PRIMARY KEY (tenant_id, external_userid)
);
CREATE INDEX segment_schedule_due_idx ON segment_schedule (tenant_id, due_day, external_userid);

-- Follow relations as friend-added / friend-deleted tell them, with times, so the two topics may
-- be consumed in any relative order: profiles.staff_ids is the staff whose add is the later.
CREATE TABLE segment_follows (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    staff_id         text        NOT NULL,
    added_at         timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (tenant_id, external_userid, staff_id)
);

-- Tags by id as contact-tagged tells them (profiles.tags holds the names of the present ones):
-- removing tag "VIP" of one group keeps the name while a "VIP" of another group stays.
CREATE TABLE segment_contact_tags (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    tag_id           text        NOT NULL,
    tag_name         text        NOT NULL,
    present          boolean     NOT NULL,
    changed_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, external_userid, tag_id)
);

-- Identities of contacts (contact-identified): an order without external_userid finds its
-- contact through them. Personal data: erased with the contact.
CREATE TABLE identity_links (
    tenant_id        text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('unionid', 'member_id', 'phone_hash')),
    value            text        NOT NULL,
    external_userid  text        NOT NULL,
    linked_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, value)
);
CREATE INDEX identity_links_contact_idx ON identity_links (tenant_id, external_userid);

-- Orders whose customer matches no contact yet, kept whole until contact-identified links one of
-- their identities (then applied as if they had just arrived, on their own days).
CREATE TABLE pending_orders (
    tenant_id    text        NOT NULL,
    order_id     text        NOT NULL,
    unionid      text,
    member_id    text,
    phone_hash   text,
    event_id     uuid        NOT NULL,
    order_data   jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX pending_orders_unionid_idx ON pending_orders (tenant_id, unionid) WHERE unionid IS NOT NULL;
CREATE INDEX pending_orders_member_idx ON pending_orders (tenant_id, member_id) WHERE member_id IS NOT NULL;
CREATE INDEX pending_orders_phone_idx ON pending_orders (tenant_id, phone_hash) WHERE phone_hash IS NOT NULL;

-- Refunds whose order has no fact yet (the order is pending, or not consumed yet): a refund is
-- dated on its order's day, so it waits for the order.
CREATE TABLE pending_refunds (
    tenant_id    text        NOT NULL,
    refund_id    text        NOT NULL,
    order_id     text        NOT NULL,
    event_id     uuid        NOT NULL,
    refund_data  jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, refund_id)
);
CREATE INDEX pending_refunds_order_idx ON pending_refunds (tenant_id, order_id);

-- A tenant's RFM thresholds (tag_svc.segments.rfm). `derived`: computed from the tenant's own
-- buyers (recomputed on request); false: set explicitly.
CREATE TABLE rfm_thresholds (
    tenant_id            text        PRIMARY KEY,
    recent_within_days   integer     NOT NULL,
    frequent_min_orders  integer     NOT NULL,
    monetary_min         numeric     NOT NULL,
    window_days          integer     NOT NULL,
    derived              boolean     NOT NULL,
    buyers               integer,
    computed_at          timestamptz NOT NULL DEFAULT now()
);
