-- Every vehicle reading, partitioned by month like meter_history
-- (idx_vehicle_history_vehicle_time is the original design's index).
CREATE TABLE vehicle_history (
    vehicle_id        text             NOT NULL,
    recorded_at       timestamptz      NOT NULL,
    soc               double precision NOT NULL,
    kwh_delivered_dc  double precision NOT NULL,
    battery_temp      double precision NOT NULL,
    charger_id        text,
    received_at       timestamptz      NOT NULL,
    position          bigint           NOT NULL
) PARTITION BY RANGE (recorded_at);

CREATE UNIQUE INDEX idx_vehicle_history_vehicle_time
    ON vehicle_history (vehicle_id, recorded_at DESC);

SELECT ensure_month_partitions('vehicle_history', now(), now() + interval '2 months');
