/* ticket_ext--1.0--1.1.sql: upgrade script (ALTER EXTENSION ticket_ext UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION ticket_ext UPDATE TO '1.1'" to load this file. \quit

-- grant_app/grant_admin refuse (42501) a caller who cannot grant what they
-- hand out, instead of warning "no privileges were granted" and returning
-- as if they had.
CREATE OR REPLACE FUNCTION ticket_ext.grant_app(role regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT (has_schema_privilege('ticket_ext', 'USAGE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_reserve(bigint, integer, text, interval, text)',
                                       'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_confirm(bigint)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_release(bigint)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_available(bigint)', 'EXECUTE WITH GRANT OPTION')
            AND has_table_privilege('ticket_ext.availability', 'SELECT WITH GRANT OPTION')) THEN
        RAISE EXCEPTION 'permission denied to grant the ticket_ext app privileges to %', role
            USING ERRCODE = '42501',
                  HINT = 'Run it as a superuser or the extension''s owner.';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA ticket_ext TO %s', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION '
        '@extschema@.ticket_reserve(bigint, integer, text, interval, text), '
        '@extschema@.ticket_confirm(bigint), @extschema@.ticket_release(bigint), '
        '@extschema@.ticket_available(bigint) TO %s', role);
    EXECUTE format('GRANT SELECT ON ticket_ext.availability TO %s', role);
END
$$;

CREATE OR REPLACE FUNCTION ticket_ext.grant_admin(role regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc
                WHERE pronamespace = 'ticket_ext'::regnamespace
                  AND NOT has_function_privilege(oid, 'EXECUTE WITH GRANT OPTION'))
       OR EXISTS (SELECT 1 FROM pg_class
                   WHERE relnamespace = 'ticket_ext'::regnamespace
                     AND relkind IN ('r', 'v', 'm', 'p')
                     AND NOT has_table_privilege(oid, 'SELECT WITH GRANT OPTION')) THEN
        RAISE EXCEPTION 'permission denied to grant the ticket_ext admin privileges to %', role
            USING ERRCODE = '42501',
                  HINT = 'Run it as a superuser or the extension''s owner.';
    END IF;
    PERFORM ticket_ext.grant_app(role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ticket_ext TO %s', role);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA ticket_ext TO %s', role);
END
$$;

-- Per sink, its worker's replication stream: streaming, creating slot (and
-- which transactions it waits for), snapshot, queue full, retrying, slot
-- lost, history conflict...  origin: the origin of its slot, which every
-- event it sends carries (README, "Restore and failover").
CREATE FUNCTION ticket_ext.stream_state(
    OUT sink text, OUT state text, OUT detail text, OUT slot_name text,
    OUT worker_pid integer, OUT origin bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ticket_stream_state'
LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE VIEW ticket_ext.stream_state AS SELECT * FROM ticket_ext.stream_state();
COMMENT ON VIEW ticket_ext.stream_state IS
    'Each sink''s replication stream: its state and, when it cannot go on, why and what to do.';
REVOKE ALL ON FUNCTION ticket_ext.stream_state() FROM PUBLIC;
REVOKE ALL ON ticket_ext.stream_state FROM PUBLIC;

-- A sink's worker drops its slot and starts a new one with a snapshot of
-- the tables, which the sink takes whatever it holds.
CREATE FUNCTION ticket_ext.stream_resnapshot(sink text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ticket_stream_resnapshot'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.stream_resnapshot(text) IS
    'Give a sink a new replication slot and a snapshot of the tables (its worker does it); true if the worker runs.';
REVOKE ALL ON FUNCTION ticket_ext.stream_resnapshot(text) FROM PUBLIC;
