-- Per device and UTC hour: energy sums, temperature sums and counts. A 24-hour efficiency
-- answer reads at most 25 of these rows per device, whatever the history size; the partial
-- hours at a window's edges come from history by index, so the answer is exact.
--
-- Sums are numeric, not double: a rollup is the sum of many per-batch increments, and
-- numeric addition does not depend on how the log was cut into batches, so a rebuild or a
-- crash-and-resume gives exactly the same rows as a clean run.
CREATE TABLE meter_hourly (
    meter_id         text        NOT NULL,
    hour             timestamptz NOT NULL,
    kwh_consumed_ac  numeric     NOT NULL,
    readings         bigint      NOT NULL,
    PRIMARY KEY (meter_id, hour)
) WITH (fillfactor = 70);  -- room for HOT updates while an hour fills: +30 % catch-up

CREATE TABLE vehicle_hourly (
    vehicle_id        text        NOT NULL,
    hour              timestamptz NOT NULL,
    kwh_delivered_dc  numeric     NOT NULL,
    battery_temp_sum  numeric     NOT NULL,
    readings          bigint      NOT NULL,
    PRIMARY KEY (vehicle_id, hour)
) WITH (fillfactor = 70);

-- The first whole UTC hour at or after `t`.
CREATE FUNCTION hour_ceiling(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN date_trunc('hour', t, 'UTC') = t THEN t
                ELSE date_trunc('hour', t, 'UTC') + interval '1 hour' END
$$;

-- AC energy of one meter over [from_t, to_t): whole hours from the rollup, the partial hours
-- at both edges from history. One row, from a single SELECT: the planner inlines it into
-- the caller (a function with OUT parameters it would plan anew on every call).
CREATE FUNCTION meter_energy_between(p_meter text, from_t timestamptz, to_t timestamptz)
RETURNS TABLE (kwh numeric, readings bigint)
LANGUAGE sql STABLE AS $$
    WITH edges AS (
        SELECT hour_ceiling(from_t) AS a, date_trunc('hour', to_t, 'UTC') AS b
    ), parts AS (
        SELECT h.kwh_consumed_ac AS kwh, h.readings AS n
        FROM meter_hourly h, edges
        WHERE edges.a < edges.b AND h.meter_id = p_meter AND h.hour >= edges.a AND h.hour < edges.b
        UNION ALL
        SELECT m.kwh_consumed_ac::numeric, 1
        FROM meter_history m, edges
        WHERE m.meter_id = p_meter AND m.recorded_at >= from_t
          AND m.recorded_at < CASE WHEN edges.a < edges.b THEN edges.a ELSE to_t END
        UNION ALL
        SELECT m.kwh_consumed_ac::numeric, 1
        FROM meter_history m, edges
        WHERE edges.a < edges.b AND m.meter_id = p_meter
          AND m.recorded_at >= edges.b AND m.recorded_at < to_t
    )
    SELECT coalesce(sum(kwh), 0), coalesce(sum(n), 0)::bigint FROM parts
$$;

-- DC energy, battery temperature sum and reading count of one vehicle over [from_t, to_t).
CREATE FUNCTION vehicle_energy_between(p_vehicle text, from_t timestamptz, to_t timestamptz)
RETURNS TABLE (kwh numeric, battery_temp_sum numeric, readings bigint)
LANGUAGE sql STABLE AS $$
    WITH edges AS (
        SELECT hour_ceiling(from_t) AS a, date_trunc('hour', to_t, 'UTC') AS b
    ), parts AS (
        SELECT h.kwh_delivered_dc AS kwh, h.battery_temp_sum AS temp, h.readings AS n
        FROM vehicle_hourly h, edges
        WHERE edges.a < edges.b AND h.vehicle_id = p_vehicle
          AND h.hour >= edges.a AND h.hour < edges.b
        UNION ALL
        SELECT v.kwh_delivered_dc::numeric, v.battery_temp::numeric, 1
        FROM vehicle_history v, edges
        WHERE v.vehicle_id = p_vehicle AND v.recorded_at >= from_t
          AND v.recorded_at < CASE WHEN edges.a < edges.b THEN edges.a ELSE to_t END
        UNION ALL
        SELECT v.kwh_delivered_dc::numeric, v.battery_temp::numeric, 1
        FROM vehicle_history v, edges
        WHERE edges.a < edges.b AND v.vehicle_id = p_vehicle
          AND v.recorded_at >= edges.b AND v.recorded_at < to_t
    )
    SELECT coalesce(sum(kwh), 0), coalesce(sum(temp), 0), coalesce(sum(n), 0)::bigint FROM parts
$$;
