-- The contacts read model, built by the worker from friend-added / friend-deleted /
-- contact-updated (idempotent, tolerant of duplicates and out-of-order delivery across topics).

CREATE TABLE stores (
    tenant_id  text NOT NULL,
    store_id   text NOT NULL,
    name       text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, store_id)
);

CREATE TABLE staff (
    tenant_id  text NOT NULL,
    staff_id   text NOT NULL,           -- WeCom userid
    name       text,
    store_id   text,
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'resigned')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, staff_id)
);

-- A channel QR code: its `state` says which store/poster/campaign brought the friend.
CREATE TABLE channels (
    tenant_id   text NOT NULL,
    state       text NOT NULL,
    name        text NOT NULL,
    store_id    text,
    campaign_id text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, state)
);

CREATE TABLE contacts (
    contact_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text NOT NULL,
    external_userid text NOT NULL,
    unionid         text,
    name            text,
    avatar          text,
    gender          smallint,
    first_added_at  timestamptz,
    -- active: followed by at least one staff member; lost: no active follow; erased: PIPL erasure
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'erased')),
    enriched_at     timestamptz,
    erased_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_userid)
);
CREATE INDEX contacts_tenant_first_added_idx ON contacts (tenant_id, first_added_at, contact_id);
CREATE INDEX contacts_enrich_idx ON contacts (tenant_id) WHERE enriched_at IS NULL AND status <> 'erased';

-- Who follows whom. last_event_at orders the add/delete events of one relation: an event older
-- than the last applied one changes nothing (they arrive on different topics, so out of order).
CREATE TABLE follows (
    tenant_id       text NOT NULL,
    external_userid text NOT NULL,
    staff_id        text NOT NULL,
    state           text NOT NULL DEFAULT '',
    store_id        text,
    remark          text,
    description     text,
    tag_ids         text[],
    added_at        timestamptz,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    deleted_by      text CHECK (deleted_by IN ('staff', 'customer')),
    delete_source   text,
    deleted_at      timestamptz,
    last_event_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, external_userid, staff_id)
);
CREATE INDEX follows_staff_idx ON follows (tenant_id, staff_id, status);
CREATE INDEX follows_state_idx ON follows (tenant_id, state);

-- Identity links: any of these ids on an order maps to the WeCom contact. The raw phone is never
-- stored, only sha256 hex of the E.164 number.
CREATE TABLE identities (
    tenant_id       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('unionid', 'member_id', 'phone_hash')),
    value           text NOT NULL,
    external_userid text NOT NULL,
    source          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, value)
);
CREATE INDEX identities_contact_idx ON identities (tenant_id, external_userid);

-- 在职/离职继承: a transfer and the customers it moved (WeCom allows two per customer per 90 days).
CREATE TABLE transfers (
    tenant_id   text NOT NULL,
    transfer_id text NOT NULL,
    from_staff  text NOT NULL,
    to_staff    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('on_duty', 'resigned')),
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, transfer_id)
);
CREATE TABLE transfer_items (
    tenant_id       text NOT NULL,
    transfer_id     text NOT NULL,
    external_userid text NOT NULL,
    status          text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'done', 'failed')),
    fail_reason     text,
    transferred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, transfer_id, external_userid)
);
CREATE INDEX transfer_items_contact_idx ON transfer_items (tenant_id, external_userid, transferred_at);
