-- The audit ledger: every event chained, in commit-safe order, into a running SHA-256.
--
-- chain(0) is 32 zero bytes; chain(n) = sha256(chain(n-1) || record(n)), where record(n)
-- is the n-th event's event_id, position, stream_id, event_type, schema_version and
-- payload as one line of PostgreSQL's COPY text format, tab-separated in that order
-- (see projections/ledger.py). A change to any of those fields, a missing, extra or
-- reordered event changes every chain value from there on.
--
-- ledger_entries keeps each event's chain value, so verification names the exact position
-- where the log stops matching. ledger_checkpoints are signed (HMAC-SHA256 over
-- "seq:position:chain hex" with the server's ledger key): whoever rewrites events and
-- recomputes the chain without the key cannot sign it, and exported checkpoints can be
-- kept outside the database entirely.
CREATE TABLE ledger_entries (
    seq         bigint PRIMARY KEY,  -- 1-based place of the event in the chain
    position    bigint NOT NULL,
    chain_hash  bytea  NOT NULL CHECK (length(chain_hash) = 32)
);

CREATE TABLE ledger_checkpoints (
    seq             bigint      PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    position        bigint      NOT NULL,
    chain_hash      bytea       NOT NULL CHECK (length(chain_hash) = 32),
    signature       bytea       NOT NULL,
    key_id          text        NOT NULL,  -- which key signed it (a digest, not the key)
    created_at      timestamptz NOT NULL DEFAULT now()
);
