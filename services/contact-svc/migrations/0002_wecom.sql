-- WeCom side of contact-svc: each tenant's callback settings and the archive of every accepted
-- (decrypted) callback, which is also the dedupe record for WeCom's retries.

CREATE TABLE wecom_config (
    tenant_id        text PRIMARY KEY,
    corp_id          text NOT NULL,
    token            text NOT NULL,
    encoding_aes_key text NOT NULL,
    agent_id         text,
    secret           text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE callback_archive (
    id           bigserial PRIMARY KEY,
    tenant_id    text        NOT NULL,
    -- sha256 of the decrypted payload: WeCom's retry of the same callback hashes the same
    payload_hash text        NOT NULL,
    msg_type     text,
    event        text,
    change_type  text,
    -- external_userid the callback is about, so erasure can scrub the archive too
    external_userid text,
    payload      text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, payload_hash)
);
CREATE INDEX callback_archive_tenant_received_idx ON callback_archive (tenant_id, received_at);
CREATE INDEX callback_archive_contact_idx ON callback_archive (tenant_id, external_userid);
