-- Tag edits reaching segments and WeCom (tag_svc.tags.edits; docs/segments.md, "Tags" and
-- "Syncing tags with WeCom").

-- 1. Renames reach the segments. Segment rules read tags by name, and the processor keeps the
-- names of each contact's tags (segment_contact_tags.tag_name, profiles.tags) as contact-tagged
-- told them. A rename queues one sync here, in the rename's transaction, with the contacts that
-- carried the tag then (tag_job_items, under the sync's id, in external_userid order). The tag
-- job runner works through it one chunk per transaction (tag_svc.tags.name_syncs): lock the
-- chunk's profiles, rename their segment_contact_tags rows, recompute profiles.tags, re-evaluate
-- the segments that read the old or the new name (transitions with cause 'rule-edited').
CREATE TABLE tag_name_syncs (
    tenant_id       text        NOT NULL,
    sync_id         uuid        NOT NULL,
    -- no foreign key: a tag deleted meanwhile is dropped by its purge job; the sync still runs
    tag_id          uuid        NOT NULL,
    old_name        text        NOT NULL,
    new_name        text        NOT NULL,
    status          text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed')),
    total           integer     NOT NULL,
    processed       integer     NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_chunk_at   timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, sync_id)
);
CREATE INDEX tag_name_syncs_pending_idx ON tag_name_syncs (next_attempt_at)
    WHERE status IN ('queued', 'running');

-- contact-tagged events already on their way to the processor when a tag is renamed carry the
-- old name. Without this they would write it back after the sync above, and the contact would
-- keep the old name until its next tag change. So a row of a tag of the catalogue always takes
-- the tag's name as it is now (as seen by the writing statement: a rename committing later
-- renames the row itself). Rows whose tag is not a catalogue tag (or whose tag row is gone) keep
-- the event's name. Cost: one primary-key lookup per contact-tagged row the processor writes.
CREATE FUNCTION segment_contact_tags_current_name() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    current_name text;
BEGIN
    IF NEW.tag_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        SELECT name INTO current_name FROM tags
        WHERE tenant_id = NEW.tenant_id AND tag_id = NEW.tag_id::uuid;
        IF FOUND THEN
            NEW.tag_name := current_name;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER segment_contact_tags_current_name
    BEFORE INSERT OR UPDATE ON segment_contact_tags
    FOR EACH ROW EXECUTE FUNCTION segment_contact_tags_current_name();

-- 2. Catalogue edits reach WeCom. The push queue also carries renames (externalcontact/
-- edit_corp_tag: wecom_id, wecom_name) and deletions (externalcontact/del_corp_tag:
-- del_tag_ids, del_group_ids) of groups and tags linked to WeCom. They belong to no contact; a
-- tenant's catalogue pushes go out one at a time in the order they were made (a rename before
-- the deletion of the same tag, two renames in order).
ALTER TABLE wecom_pushes
    ALTER COLUMN external_userid DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'mark_tag'
        CHECK (kind IN ('mark_tag', 'edit_corp_tag', 'del_corp_tag')),
    ADD COLUMN wecom_id text,
    ADD COLUMN wecom_name text,
    ADD COLUMN del_tag_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN del_group_ids text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT wecom_pushes_kind_fields CHECK (
        CASE kind
            WHEN 'mark_tag' THEN external_userid IS NOT NULL
            WHEN 'edit_corp_tag' THEN external_userid IS NULL AND wecom_id IS NOT NULL
                AND wecom_name IS NOT NULL
            ELSE external_userid IS NULL AND cardinality(del_tag_ids) + cardinality(del_group_ids) > 0
        END
    );
CREATE INDEX wecom_pushes_catalog_idx ON wecom_pushes (tenant_id, id)
    WHERE status = 'pending' AND kind <> 'mark_tag';
