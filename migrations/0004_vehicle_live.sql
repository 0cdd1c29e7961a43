-- Latest reading per vehicle; same newer-only rule and fillfactor as meter_live.
CREATE TABLE vehicle_live (
    vehicle_id        text             PRIMARY KEY,
    soc               double precision NOT NULL,
    kwh_delivered_dc  double precision NOT NULL,
    battery_temp      double precision NOT NULL,
    charger_id        text,
    recorded_at       timestamptz      NOT NULL,
    received_at       timestamptz      NOT NULL,
    position          bigint           NOT NULL,
    projected_at      timestamptz      NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
