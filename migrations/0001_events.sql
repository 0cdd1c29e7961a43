-- The event store: one append-only table holding every fact the engine knows.
--
-- position        global order of appends (identity); NOT commit order, see below.
-- transaction_id  the writer's xid8. Readers only take rows whose transaction id is
--                 below the oldest transaction still running and order by
--                 (transaction_id, position), so a slow writer that commits a lower
--                 position after a faster one is never skipped by a checkpoint.
-- event_id        deterministic for readings (UUIDv5 of kind/device/timestamp): a
--                 retry hits the unique index instead of being stored twice.
CREATE TABLE events (
    position        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  smallint    NOT NULL CHECK (schema_version > 0),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_commit_order ON events (transaction_id, position);
CREATE INDEX events_stream ON events (stream_id, position);

-- Append-only: statement-level so that even a statement touching no row is refused.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Wake projectors. NOTIFY is delivered only after the inserting transaction commits,
-- and PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('energy_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_after_insert
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
