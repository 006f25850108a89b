-- Enrichment bookkeeping: a contact whose profile fetch from WeCom failed waits (exponentially
-- longer each time) before its next try, so a few failing contacts cannot fill every bounded
-- batch and starve the others. The row goes when the contact is enriched. No personal data here.

CREATE TABLE enrichment_attempts (
    tenant_id       text        NOT NULL,
    external_userid text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    -- WeCom's errcode of the last failure; NULL when WeCom could not be reached
    last_errcode    integer,
    retry_after     timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, external_userid)
);
