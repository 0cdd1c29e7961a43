-- The efficiency figures of one vehicle over [lo, hi), in one place for every reader: the
-- analytics endpoint calls it for one vehicle, the fleet refresh for all of them.
--
-- DC energy and battery temperature come from the vehicle's own readings. AC energy is
-- counted period by period of the vehicle's mappings: a meter reading counts for the
-- vehicle its meter fed at the reading's time. meter_ids and ac_kwh are NULL when no
-- mapping period overlaps the window (a vehicle without a meter), 0 when one does but its
-- meter drew nothing. A single SELECT, so the planner can inline it into the caller.
CREATE FUNCTION vehicle_efficiency_between(p_vehicle text, lo timestamptz, hi timestamptz)
RETURNS TABLE (
    meter_ids text[], dc_kwh numeric, battery_temp_sum numeric, vehicle_readings bigint,
    ac_kwh numeric, meter_readings bigint
)
LANGUAGE sql STABLE AS $$
    WITH dc AS (
        SELECT * FROM vehicle_energy_between(p_vehicle, lo, hi)
    ), periods AS (
        SELECT m.meter_id,
               greatest(lo, coalesce(m.valid_from, '-infinity')) AS from_t,
               least(hi, coalesce(m.valid_to, 'infinity')) AS to_t
        FROM vehicle_meter_map m
        WHERE m.vehicle_id = p_vehicle
          AND coalesce(m.valid_from, '-infinity') < hi
          AND coalesce(m.valid_to, 'infinity') > lo
    ), ac AS (
        SELECT array_agg(DISTINCT p.meter_id ORDER BY p.meter_id) AS meter_ids,
               sum(e.kwh) AS kwh, sum(e.readings)::bigint AS readings
        FROM periods p, LATERAL meter_energy_between(p.meter_id, p.from_t, p.to_t) e
    )
    SELECT ac.meter_ids, dc.kwh, dc.battery_temp_sum, dc.readings, ac.kwh, ac.readings
    FROM dc, ac
$$;

-- The last 24 hours of every vehicle, recomputed as a whole every minute or so by the
-- projector (see projections/fleet_efficiency.py): fleet-wide answers (the summary, lists
-- filtered on efficiency) read one row per vehicle instead of computing thousands of
-- windows per request. Each row says which window it covers and when it was computed.
CREATE TABLE fleet_efficiency (
    vehicle_id        text             PRIMARY KEY,
    window_start      timestamptz      NOT NULL,
    window_end        timestamptz      NOT NULL,
    meter_ids         text[],
    dc_kwh            double precision NOT NULL,
    ac_kwh            double precision,
    efficiency        double precision,
    avg_battery_temp  double precision,
    vehicle_readings  bigint           NOT NULL,
    meter_readings    bigint           NOT NULL,
    computed_at       timestamptz      NOT NULL
);

CREATE INDEX fleet_efficiency_by_efficiency ON fleet_efficiency (efficiency, vehicle_id)
    WHERE efficiency IS NOT NULL;
