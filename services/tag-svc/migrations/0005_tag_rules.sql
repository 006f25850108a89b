-- Rule-based tagging (tag_svc.tags.rules): "when a contact enters segment S, add tag T (and
-- remove it on exit)". The worker applies the rules of a segment to its segment-changed events;
-- creating a rule also tags the segment's members of that moment, in chunks, with progress kept
-- here so a retried creation resumes where the first one stopped.
--
-- The tags a rule sets are contact_tags rows with tagged_by = 'rule' and actor_id = the rule's
-- segment_id (what contact-tagged documents as the actor of a rule): (segment, tag) is unique, so
-- the row names its rule, and a rule re-created for the same pair owns what the old one set.
CREATE TABLE tag_rules (
    tenant_id       text        NOT NULL,
    rule_id         uuid        NOT NULL,
    segment_id      uuid        NOT NULL,
    tag_id          uuid        NOT NULL,
    remove_on_exit  boolean     NOT NULL DEFAULT true,
    -- 'applying' while the members the segment had at creation are being tagged (apply_cursor:
    -- the last one done, in external_userid order), then 'active'. Events apply in both.
    status          text        NOT NULL DEFAULT 'applying' CHECK (status IN ('applying', 'active')),
    apply_cursor    text,
    -- contacts the first application tagged (those that had the tag already are not counted)
    applied         integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text,
    PRIMARY KEY (tenant_id, rule_id),
    -- also the index of "the rules of these segments", the worker's lookup per batch
    UNIQUE (tenant_id, segment_id, tag_id),
    -- A deleted segment takes its rules along; a deleted tag's rules go when its purge job drops
    -- the tag row (until then they find no live tag and do nothing).
    FOREIGN KEY (tenant_id, segment_id) REFERENCES segments (tenant_id, segment_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, tag_id) REFERENCES tags (tenant_id, tag_id) ON DELETE CASCADE
);
-- "another rule adds this tag" (who inherits a tag on exit) and the tags' cascade
CREATE INDEX tag_rules_tag_idx ON tag_rules (tenant_id, tag_id);
-- The tags a segment's rule set, in contact order: removing a deleted rule's tags walks them a
-- chunk at a time, and an exit finds its row by the primary key anyway.
CREATE INDEX contact_tags_rule_idx ON contact_tags (tenant_id, tag_id, actor_id, external_userid)
    WHERE tagged_by = 'rule';
