-- Every meter reading, range-partitioned by month of the reading's own time.
-- The unique (meter_id, recorded_at DESC) index is the original design's
-- idx_meter_history_meter_time: it serves "latest first" range scans and makes a replayed
-- row a no-op.
CREATE TABLE meter_history (
    meter_id         text             NOT NULL,
    recorded_at      timestamptz      NOT NULL,
    kwh_consumed_ac  double precision NOT NULL,
    voltage          double precision NOT NULL,
    received_at      timestamptz      NOT NULL,
    position         bigint           NOT NULL
) PARTITION BY RANGE (recorded_at);

CREATE UNIQUE INDEX idx_meter_history_meter_time ON meter_history (meter_id, recorded_at DESC);

-- Creates the monthly partitions of `parent` covering [first, last], those missing only.
-- Partition names are <parent>_yYYYYmMM, in the parent's own schema (a rebuild builds a
-- copy of the table in a schema of its own: see projections/rebuild.py); bounds are UTC
-- month starts.
CREATE FUNCTION ensure_month_partitions(parent regclass, first timestamptz, last timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', first, 'UTC');
    created integer := 0;
    parent_schema text;
    parent_name text;
    child text;
BEGIN
    SELECT n.nspname, c.relname INTO parent_schema, parent_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = parent;
    WHILE month_start <= last LOOP
        child := format('%s_y%sm%s', parent_name,
                        to_char(month_start AT TIME ZONE 'UTC', 'YYYY'),
                        to_char(month_start AT TIME ZONE 'UTC', 'MM'));
        IF to_regclass(format('%I.%I', parent_schema, child)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                parent_schema, child, parent, month_start, month_start + interval '1 month');
            created := created + 1;
        END IF;
        month_start := month_start + interval '1 month';
    END LOOP;
    RETURN created;
END;
$$;

-- The current month and the next two exist from the start; projectors add the rest.
SELECT ensure_month_partitions('meter_history', now(), now() + interval '2 months');
