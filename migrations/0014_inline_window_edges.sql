-- The efficiency answer's window edges without hour_ceiling(). That function is declared
-- IMMUTABLE but adds an interval (a STABLE operator), so the planner never inlines it
-- (EXPLAIN VERBOSE of a generic plan shows the call): every answer ran it through the
-- SQL-function executor, which plans the function's body afresh for each query. Measured
-- on 10M rows per stream, the analytics query's execution took 0.40 ms with it and 0.25 ms
-- with the edges written inline. The first whole UTC hour at or after from_t is now
-- date_trunc('hour', from_t - 1 µs) + 1 hour: for timestamps of microsecond precision (all
-- of PostgreSQL's) the value hour_ceiling() gave.
--
-- AC energy of one meter over [from_t, to_t): whole hours from the rollup, the partial
-- hours at both edges from history.
CREATE OR REPLACE FUNCTION meter_energy_between(p_meter text, from_t timestamptz, to_t timestamptz)
RETURNS TABLE (kwh numeric, readings bigint)
LANGUAGE sql STABLE AS $$
    WITH edges AS (
        SELECT date_trunc('hour', from_t - interval '1 microsecond', 'UTC') + interval '1 hour' AS a,
               date_trunc('hour', to_t, 'UTC') AS b
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
CREATE OR REPLACE FUNCTION vehicle_energy_between(p_vehicle text, from_t timestamptz, to_t timestamptz)
RETURNS TABLE (kwh numeric, battery_temp_sum numeric, readings bigint)
LANGUAGE sql STABLE AS $$
    WITH edges AS (
        SELECT date_trunc('hour', from_t - interval '1 microsecond', 'UTC') + interval '1 hour' AS a,
               date_trunc('hour', to_t, 'UTC') AS b
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

DROP FUNCTION hour_ceiling(timestamptz);
