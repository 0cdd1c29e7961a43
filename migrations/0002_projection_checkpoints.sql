-- One row per projection: how far in commit-safe order (transaction_id, position) it has
-- applied the log. A projector locks its row (FOR UPDATE SKIP LOCKED) for the length of a
-- batch and writes it in the batch's own transaction, so a crash repeats nothing and loses
-- nothing, and a second projector process on the same projection never double-applies.
CREATE TABLE projection_checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT '0'::xid8,
    position        bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The typed readings of one batch: events in (after, upto] of commit-safe order. Every
-- projection reads its batch through these, so the payload-to-column mapping lives in one
-- place. Plain single-SELECT SQL functions, which the planner inlines into the caller.
--
-- The BETWEEN on transaction_id is implied by the row comparisons, but the planner
-- estimates a row comparison from its first column alone ("this transaction and every
-- later one"): with big transactions it then scans the whole table for a batch. The
-- explicit range lets it see how narrow the batch is.
CREATE FUNCTION meter_readings_between(
    after_tx xid8, after_pos bigint, upto_tx xid8, upto_pos bigint
) RETURNS TABLE (
    meter_id text, recorded_at timestamptz, kwh_consumed_ac double precision,
    voltage double precision, received_at timestamptz, event_position bigint
)
LANGUAGE sql STABLE AS $$
    SELECT e.payload->>'meterId',
           (e.payload->>'timestamp')::timestamptz,
           (e.payload->>'kwhConsumedAc')::double precision,
           (e.payload->>'voltage')::double precision,
           e.received_at, e.position
    FROM events e
    WHERE (e.transaction_id, e.position) > (after_tx, after_pos)
      AND (e.transaction_id, e.position) <= (upto_tx, upto_pos)
      AND e.transaction_id BETWEEN after_tx AND upto_tx
      AND e.event_type = 'MeterReadingRecorded'
$$;

CREATE FUNCTION vehicle_readings_between(
    after_tx xid8, after_pos bigint, upto_tx xid8, upto_pos bigint
) RETURNS TABLE (
    vehicle_id text, recorded_at timestamptz, soc double precision,
    kwh_delivered_dc double precision, battery_temp double precision,
    charger_id text, received_at timestamptz, event_position bigint
)
LANGUAGE sql STABLE AS $$
    SELECT e.payload->>'vehicleId',
           (e.payload->>'timestamp')::timestamptz,
           (e.payload->>'soc')::double precision,
           (e.payload->>'kwhDeliveredDc')::double precision,
           (e.payload->>'batteryTemp')::double precision,
           e.payload->>'chargerId',  -- NULL in schema version 1 payloads
           e.received_at, e.position
    FROM events e
    WHERE (e.transaction_id, e.position) > (after_tx, after_pos)
      AND (e.transaction_id, e.position) <= (upto_tx, upto_pos)
      AND e.transaction_id BETWEEN after_tx AND upto_tx
      AND e.event_type = 'VehicleReadingRecorded'
$$;
