-- The efficiency answer sums the partial hours at a window's edges from history: with the
-- values it sums in the history indexes themselves, those edges are index-only scans of a
-- few adjacent index pages, instead of one heap page per reading (a device's readings are
-- spread over the heap, one in every few thousand rows). Measured on 10M rows per stream:
-- about half the buffers per answer, and a third more analytics answers per second.
--
-- Same names, same keys (still the unique "latest first" indexes of the original design
-- that make a replayed reading a no-op); only the INCLUDE columns are new. Building them
-- locks the history tables for writes while it runs (about 10 s per 10M rows here).
DROP INDEX idx_meter_history_meter_time;
CREATE UNIQUE INDEX idx_meter_history_meter_time
    ON meter_history (meter_id, recorded_at DESC) INCLUDE (kwh_consumed_ac);

DROP INDEX idx_vehicle_history_vehicle_time;
CREATE UNIQUE INDEX idx_vehicle_history_vehicle_time
    ON vehicle_history (vehicle_id, recorded_at DESC) INCLUDE (kwh_delivered_dc, battery_temp);
