-- Database roles: what each process may do, whatever its code does.
--
--   owner            whoever runs the migrations: owns every table and function. Runs
--                    `energy migrate` and `energy projections rebuild` (DDL).
--   energy_api       the API's sessions (SET ROLE at connect, see main.py): INSERT and
--                    SELECT on the event table and nothing else there; SELECT on the read
--                    models; the credentials it checks and manages; refusals it records.
--   energy_projector the projector's sessions: SELECT on the event table; every read model,
--                    checkpoint and ledger table; new monthly partitions through
--                    ensure_month_partitions, which runs with the owner's rights.
--
-- Both are NOLOGIN roles granted to the owner, so a single database user can run
-- everything on one machine; in a deployment, give the API and the projectors login
-- users that are members of exactly one of them. Roles are cluster-wide: created once,
-- granted per database. UPDATE, DELETE and TRUNCATE on events are granted to nobody (and
-- refused by the trigger of 0001 for the owner too).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_api') THEN
        CREATE ROLE energy_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_projector') THEN
        CREATE ROLE energy_projector NOLOGIN;
    END IF;
END
$$;

-- The owner may act as either (SET ROLE needs membership); a superuser already may, and
-- may let the API see other sessions' transactions, which the projection status names
-- when one holds the commit-safe fence (without it the status says less, nothing breaks).
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        GRANT pg_read_all_stats TO energy_api;
    ELSE
        EXECUTE format('GRANT energy_api, energy_projector TO %I', current_user);
    END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO energy_api, energy_projector;

-- The API.
GRANT SELECT, INSERT ON events TO energy_api;
GRANT SELECT ON schema_migrations, projection_checkpoints, meter_live, vehicle_live,
    meter_history, vehicle_history, vehicle_meter_map, meter_hourly, vehicle_hourly,
    fleet_efficiency, ledger_entries, ledger_checkpoints TO energy_api;
GRANT SELECT, INSERT, UPDATE ON credentials TO energy_api;
GRANT INSERT ON auth_refusals TO energy_api;

-- The projectors.
GRANT SELECT ON events, schema_migrations TO energy_projector;
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_checkpoints, meter_live, vehicle_live,
    meter_history, vehicle_history, vehicle_meter_map, meter_hourly, vehicle_hourly,
    fleet_efficiency, ledger_entries, ledger_checkpoints TO energy_projector;

-- Partitions of a table can only be created by its owner: the function runs as the owner
-- (and with a fixed search_path, as a SECURITY DEFINER function must).
ALTER FUNCTION ensure_month_partitions(regclass, timestamptz, timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, public;
REVOKE EXECUTE ON FUNCTION ensure_month_partitions(regclass, timestamptz, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_month_partitions(regclass, timestamptz, timestamptz)
    TO energy_projector;

-- New partitions inherit their parent's grants only if told: give them the same.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO energy_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO energy_projector;
