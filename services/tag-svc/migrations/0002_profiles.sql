-- Behaviour profiles that segments are evaluated over (tag_svc.segments; docs/segments.md).
-- tag_svc.segments.sql compiles rules to predicates over these tables and holds the statements
-- that write them; tag_svc.segments.profile is the same layout in Python.

-- One row per contact: the attributes rules read. Arrays are NOT NULL so array predicates are
-- never NULL (a rule's NOT must mean Python's not).
CREATE TABLE profiles (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    -- channel code state and store of the friendship that first brought the contact
    state            text,
    store_id         text,
    -- staff members who currently follow the contact
    staff_ids        text[]      NOT NULL DEFAULT '{}',
    gender           smallint    CHECK (gender IN (0, 1, 2)),
    status           text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'erased')),
    first_added_at   timestamptz,
    -- first_added_at's day in the tenant's timezone: rules compare whole days only
    first_added_day  date,
    -- tag names (a tag condition matches a name in any group)
    tags             text[]      NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, external_userid)
);
CREATE INDEX profiles_tags_idx ON profiles USING gin (tags);
CREATE INDEX profiles_staff_idx ON profiles USING gin (staff_ids);

-- One row per behaviour event (order, refund, message, friend-add), keyed by its natural id so a
-- redelivered or re-sent event is a no-op. `day` is the event's day in the tenant's timezone (a
-- refund's is its order's day); `amount` is signed (refunds negative, 0 for non-orders).
CREATE TABLE profile_facts (
    tenant_id        text    NOT NULL,
    event_type       text    NOT NULL
        CHECK (event_type IN ('order-placed', 'order-refunded', 'message-sent', 'friend-added')),
    event_key        text    NOT NULL,
    external_userid  text    NOT NULL,
    day              date    NOT NULL,
    channel          text,
    store_id         text,
    state            text,
    kind             text,
    campaign_id      text,
    amount           numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, event_type, event_key)
);
-- Every window predicate and the RFM metrics look up one contact's facts of a type by day.
CREATE INDEX profile_facts_contact_idx ON profile_facts (tenant_id, external_userid, event_type, day);

-- Item lines of order and refund facts (category / sku filters); amounts signed like the fact's.
CREATE TABLE profile_fact_lines (
    tenant_id   text    NOT NULL,
    event_type  text    NOT NULL,
    event_key   text    NOT NULL,
    line_no     integer NOT NULL,
    category    text    NOT NULL,
    sku         text    NOT NULL,
    amount      numeric NOT NULL,
    PRIMARY KEY (tenant_id, event_type, event_key, line_no),
    FOREIGN KEY (tenant_id, event_type, event_key) REFERENCES profile_facts (tenant_id, event_type, event_key)
        ON UPDATE CASCADE ON DELETE CASCADE
);
