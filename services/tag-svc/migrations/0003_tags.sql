-- Tags (tag_svc.tags): the tag catalogue, which contacts carry which tag, bulk tag jobs, the
-- WeCom side (follows seen in friend-added/friend-deleted, per-staff WeCom tag snapshots, the
-- mark_tag push queue, API credentials) and erasure tombstones.

-- A deleted group or tag keeps its row (deleted_at set) until the job that untags its contacts
-- has finished, so names are unique among live rows only.
CREATE TABLE tag_groups (
    tenant_id       text        NOT NULL,
    group_id        uuid        NOT NULL,
    name            text        NOT NULL,
    sort_order      integer     NOT NULL,
    -- WeCom's corp tag group id (et...) when the group mirrors one
    wecom_group_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (tenant_id, group_id)
);
CREATE UNIQUE INDEX tag_groups_name_key ON tag_groups (tenant_id, name) WHERE deleted_at IS NULL;

CREATE TABLE tags (
    tenant_id       text        NOT NULL,
    tag_id          uuid        NOT NULL,
    group_id        uuid        NOT NULL,
    name            text        NOT NULL,
    sort_order      integer     NOT NULL,
    -- WeCom's corp tag id (et...) when the tag mirrors one: WeCom-side edits map through it and
    -- changes made here are pushed to WeCom with it
    wecom_tag_id    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (tenant_id, tag_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES tag_groups (tenant_id, group_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX tags_name_key ON tags (tenant_id, group_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX tags_wecom_key ON tags (tenant_id, wecom_tag_id)
    WHERE deleted_at IS NULL AND wecom_tag_id IS NOT NULL;

-- Which contact carries which tag, and who set it last.
CREATE TABLE contact_tags (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    tag_id           uuid        NOT NULL,
    tagged_by        text        NOT NULL CHECK (tagged_by IN ('staff', 'operator', 'rule', 'wecom')),
    actor_id         text,
    tagged_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, external_userid, tag_id),
    FOREIGN KEY (tenant_id, tag_id) REFERENCES tags (tenant_id, tag_id) ON DELETE CASCADE
);
CREATE INDEX contact_tags_tag_idx ON contact_tags (tenant_id, tag_id);

-- Bulk tag/untag jobs. Progress lives in the job row and moves one chunk per transaction, so a
-- crash repeats at most the chunk that was in flight (rolled back as a whole).
CREATE TABLE tag_jobs (
    tenant_id       text        NOT NULL,
    job_id          uuid        NOT NULL,
    tag_id          uuid        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('add', 'remove')),
    -- the tag was deleted: drop its row (and its deleted group's) once every contact is untagged
    purge           boolean     NOT NULL DEFAULT false,
    actor_id        text,
    status          text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed')),
    total           integer     NOT NULL,
    processed       integer     NOT NULL DEFAULT 0,
    changed         integer     NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    last_chunk_at   timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, job_id)
);
CREATE INDEX tag_jobs_pending_idx ON tag_jobs (next_attempt_at) WHERE status IN ('queued', 'running');

-- The contacts a job still has to handle; a chunk deletes the items it applied.
CREATE TABLE tag_job_items (
    tenant_id        text    NOT NULL,
    job_id           uuid    NOT NULL,
    seq              integer NOT NULL,
    external_userid  text    NOT NULL,
    PRIMARY KEY (tenant_id, job_id, seq)
);

-- Follow relations as friend-added / friend-deleted tell them: a guide's scope, and the staff
-- member a change made here is pushed to WeCom as. Active when added after its last deletion.
CREATE TABLE follows (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    staff_id         text        NOT NULL,
    added_at         timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (tenant_id, external_userid, staff_id)
);

-- The WeCom tag ids one staff member has set on a contact (WeCom tags live on each follow
-- relation): contact-updated carries the full set, and the diff against this is the edit.
-- wecom_updated_at is WeCom's time of the snapshot (NULL while only our pushes shaped it).
CREATE TABLE wecom_tag_snapshots (
    tenant_id         text        NOT NULL,
    external_userid   text        NOT NULL,
    staff_id          text        NOT NULL,
    wecom_tag_ids     text[]      NOT NULL DEFAULT '{}',
    wecom_updated_at  timestamptz,
    PRIMARY KEY (tenant_id, external_userid, staff_id)
);

-- Tag changes made here waiting to be pushed to WeCom (externalcontact/mark_tag). Rows are
-- written in the transaction of the change; a pushed row is deleted, one that cannot be pushed
-- stays as 'failed' for operators to see.
CREATE TABLE wecom_pushes (
    id               bigserial   PRIMARY KEY,
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    -- the guide who made the change; NULL: chosen when pushing
    staff_id         text,
    add_tag          text[]      NOT NULL DEFAULT '{}',
    remove_tag       text[]      NOT NULL DEFAULT '{}',
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wecom_pushes_due_idx ON wecom_pushes (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX wecom_pushes_contact_idx ON wecom_pushes (tenant_id, external_userid, id)
    WHERE status = 'pending';

-- The corp id and app secret tag-svc asks WeCom's gettoken with (never returned by the API).
CREATE TABLE wecom_credentials (
    tenant_id   text        PRIMARY KEY,
    corp_id     text        NOT NULL,
    secret      text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Contacts erased under PIPL (contact-erased): their tags are gone and they are never tagged
-- again.
CREATE TABLE erased_contacts (
    tenant_id        text        NOT NULL,
    external_userid  text        NOT NULL,
    erased_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, external_userid)
);
