-- Bearer tokens. A token is "energy_<token_id>_<secret>": the token id is public (it names
-- the token in logs and lists); of the secret only a keyed hash is stored,
-- HMAC-SHA256(server token key, "<token_id>.<secret>"), compared in constant time.
-- An identity (a device, a gateway, a dashboard, a person) holds at most two live tokens,
-- so that it can rotate: create the new one, switch, revoke the old one.
CREATE TABLE credentials (
    token_id     text        PRIMARY KEY CHECK (token_id ~ '^[0-9a-f]{12}$'),
    identity     text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('device', 'reader', 'auditor', 'operator')),
    devices      text[]      NOT NULL DEFAULT '{}',  -- the ids a device token may write for
    token_hash   bytea       NOT NULL CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    revoked_at   timestamptz,
    CHECK (role <> 'device' OR cardinality(devices) > 0)
);

CREATE INDEX credentials_live_by_identity ON credentials (identity) WHERE revoked_at IS NULL;

-- Requests refused for their credentials (missing, malformed, unknown, revoked, not
-- allowed, another device's). Kept apart from the event log, so that a flood of bad
-- requests cannot fill the log.
CREATE TABLE auth_refusals (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    token_id    text,
    method      text        NOT NULL,
    path        text        NOT NULL,
    status      smallint    NOT NULL,
    reason      text        NOT NULL,
    remote      text
);

CREATE INDEX auth_refusals_at ON auth_refusals (at);
