-- Effective-dated mappings: meter_id fed vehicle_id during [valid_from, valid_to).
-- NULL valid_from: since the beginning (the first mapping of never-mapped devices covers
-- their earlier readings); NULL valid_to: still in force. Past periods are kept.
CREATE TABLE vehicle_meter_map (
    vehicle_id      text        NOT NULL,
    meter_id        text        NOT NULL,
    valid_from      timestamptz,
    valid_to        timestamptz,
    effective_from  timestamptz NOT NULL,
    position        bigint      NOT NULL,
    CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_from < valid_to)
);

CREATE INDEX vehicle_meter_map_vehicle ON vehicle_meter_map (vehicle_id, valid_from);
CREATE INDEX vehicle_meter_map_meter ON vehicle_meter_map (meter_id, valid_from);
