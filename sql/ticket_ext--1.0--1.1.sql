/* ticket_ext--1.0--1.1.sql: upgrade script (ALTER EXTENSION ticket_ext UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION ticket_ext UPDATE TO '1.1'" to load this file. \quit

-- grant_app/grant_admin refuse (42501) a caller who cannot grant what they
-- hand out, instead of warning "no privileges were granted" and returning
-- as if they had (grant_app is below, with 1.1's app functions).
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

-- ------------------------------------------------------------------
-- The app: confirm/release that check the holder, and a hold's status
-- ------------------------------------------------------------------
-- With holder given, the hold must be that holder's (SQLSTATE TK007
-- otherwise); the one-argument forms stay for trusted app servers.
CREATE FUNCTION ticket_confirm(hold_id bigint, holder text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ticket_confirm'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_confirm(bigint, text) IS
    'ticket_confirm(hold_id) for a hold that must be holder''s (TK007 otherwise).';

CREATE FUNCTION ticket_release(hold_id bigint, holder text)
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_release'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_release(bigint, text) IS
    'ticket_release(hold_id) for a hold that must be holder''s (TK007 otherwise).';

-- What became of a hold, for an app role that cannot read the tables.  A
-- held hold past its expiry shows as expired: it can no longer be
-- confirmed, and the expiry worker is about to mark it.  No row: no such
-- hold (or its reservation has not committed).
CREATE FUNCTION ticket_status(hold_id bigint)
RETURNS TABLE (status text, item_id bigint, qty integer, holder text,
               created_at timestamptz, expires_at timestamptz,
               confirmed_at timestamptz, ended_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER  -- sees a reservation of the same statement
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN h.status = 'held' AND h.expires_at <= clock_timestamp()
                THEN 'expired' ELSE h.status END,
           h.item_id, h.qty, h.holder, h.created_at, h.expires_at,
           h.confirmed_at, h.ended_at
      FROM ticket_ext.holds h
     WHERE h.hold_id = $1
$$;
COMMENT ON FUNCTION ticket_status(bigint) IS
    'A hold''s status (held, sold, released, expired), item, qty, holder and times.';

-- The same for a hold that must be holder's: no row when it is not (or
-- does not exist), so a guessed id tells nothing.
CREATE FUNCTION ticket_status(hold_id bigint, holder text)
RETURNS TABLE (status text, item_id bigint, qty integer, holder text,
               created_at timestamptz, expires_at timestamptz,
               confirmed_at timestamptz, ended_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- bytes, whatever collation the caller passes (as confirm and release)
    SELECT s.* FROM @extschema@.ticket_status($1) s WHERE s.holder = $2 COLLATE "C"
$$;
COMMENT ON FUNCTION ticket_status(bigint, text) IS
    'ticket_status(hold_id) for a hold that must be holder''s: no row otherwise.';

REVOKE ALL ON FUNCTION ticket_confirm(bigint, text), ticket_release(bigint, text),
                       ticket_status(bigint), ticket_status(bigint, text) FROM PUBLIC;

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
            AND has_function_privilege('@extschema@.ticket_confirm(bigint, text)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_release(bigint)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_release(bigint, text)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_available(bigint)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_status(bigint)', 'EXECUTE WITH GRANT OPTION')
            AND has_function_privilege('@extschema@.ticket_status(bigint, text)', 'EXECUTE WITH GRANT OPTION')
            AND has_table_privilege('ticket_ext.availability', 'SELECT WITH GRANT OPTION')) THEN
        RAISE EXCEPTION 'permission denied to grant the ticket_ext app privileges to %', role
            USING ERRCODE = '42501',
                  HINT = 'Run it as a superuser or the extension''s owner.';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA ticket_ext TO %s', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION '
        '@extschema@.ticket_reserve(bigint, integer, text, interval, text), '
        '@extschema@.ticket_confirm(bigint), @extschema@.ticket_confirm(bigint, text), '
        '@extschema@.ticket_release(bigint), @extschema@.ticket_release(bigint, text), '
        '@extschema@.ticket_available(bigint), @extschema@.ticket_status(bigint), '
        '@extschema@.ticket_status(bigint, text) TO %s', role);
    EXECUTE format('GRANT SELECT ON ticket_ext.availability TO %s', role);
END
$$;

-- Roles that were app roles before the update (every privilege 1.0's
-- grant_app gave, not just one of them) get 1.1's new app functions;
-- admin roles (1.0's grant_admin) get the new admin functions and views.
-- (Both further down, once those exist.)

-- ------------------------------------------------------------------
-- The publication for standard logical replication consumers is made on
-- request since 1.1 (a fresh 1.1 install, ticket_ext--1.1.sql, makes
-- none: pg_dump writes a publication out as an object of its own, and a
-- dump restored where CREATE EXTENSION had made it again failed with
-- "already exists").  An installation updated from 1.0 keeps its own,
-- which subscribers may use.
-- ------------------------------------------------------------------
CREATE FUNCTION ticket_ext.publish()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'ticket_ext_events') THEN
        RETURN false;
    END IF;
    CREATE PUBLICATION ticket_ext_events FOR TABLE ticket_ext.items, ticket_ext.holds;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ticket_ext.publish() IS
    'Create publication ticket_ext_events (items, holds) for CREATE SUBSCRIPTION and pgoutput consumers; false if it exists.';
REVOKE ALL ON FUNCTION ticket_ext.publish() FROM PUBLIC;

-- ------------------------------------------------------------------
-- stream_status gets last_ok_at, the sink's last acknowledgement: a
-- last_error older than it is a past failure (as pg_stat_archiver's
-- last_archived_time and last_failed_time).  The view is made again;
-- whoever could read it still can.
-- ------------------------------------------------------------------
SELECT pg_catalog.set_config('ticket_ext_upgrade.status_acl',
           coalesce((SELECT string_agg(concat_ws(' ', kind, a.grantee, a.privilege_type, a.is_grantable), ',')
                       FROM (SELECT 'TABLE' AS kind, relacl AS acl, relowner AS owner FROM pg_catalog.pg_class
                              WHERE oid = 'ticket_ext.stream_status'::pg_catalog.regclass
                             UNION ALL
                             SELECT 'FUNCTION', proacl, proowner FROM pg_catalog.pg_proc
                              WHERE oid = 'ticket_ext.stream_status()'::pg_catalog.regprocedure) o,
                            pg_catalog.aclexplode(o.acl) a
                      WHERE a.grantee <> o.owner), ''),
           true);
DROP VIEW ticket_ext.stream_status;
DROP FUNCTION ticket_ext.stream_status();
CREATE FUNCTION ticket_ext.stream_status(
    OUT sink text, OUT state text, OUT acked_lsn pg_lsn, OUT events_sent bigint,
    OUT retries bigint, OUT throttles bigint, OUT last_error text,
    OUT last_error_at timestamptz, OUT slot_confirmed_lsn pg_lsn,
    OUT lag_bytes bigint, OUT lag_seconds float8, OUT queued integer,
    OUT worker_pid integer, OUT delay_p50_ms float8, OUT delay_p99_ms float8,
    OUT requests bigint, OUT last_ok_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ticket_stream_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE VIEW ticket_ext.stream_status AS SELECT * FROM ticket_ext.stream_status();
COMMENT ON VIEW ticket_ext.stream_status IS
    'The event streaming worker: one row per sink (state, progress, errors, lag); last_error is past when last_ok_at is later.';
REVOKE ALL ON FUNCTION ticket_ext.stream_status() FROM PUBLIC;
REVOKE ALL ON ticket_ext.stream_status FROM PUBLIC;
DO $$
DECLARE
    g text[];
BEGIN
    FOR g IN SELECT string_to_array(x, ' ')
               FROM unnest(string_to_array(current_setting('ticket_ext_upgrade.status_acl'), ',')) x
    LOOP
        EXECUTE format('GRANT %s ON %s %s TO %s%s', g[3], g[1],
                       CASE g[1] WHEN 'TABLE' THEN 'ticket_ext.stream_status'
                                 ELSE 'ticket_ext.stream_status()' END,
                       CASE g[2] WHEN '0' THEN 'PUBLIC' ELSE g[2]::oid::regrole::text END,
                       CASE g[4] WHEN 't' THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

-- ------------------------------------------------------------------
-- Pools and holder limits (see ticket_ext--1.1.sql)
-- ------------------------------------------------------------------
ALTER TABLE ticket_ext.items
    ADD COLUMN pool_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN holder_limit integer CHECK (holder_limit > 0);
CREATE INDEX items_pool_ids_idx ON ticket_ext.items USING gin (pool_ids);
CREATE INDEX holds_holder_idx
    ON ticket_ext.holds (holder, item_id) INCLUDE (qty)
    WHERE ended_at IS NULL AND holder IS NOT NULL;
CREATE OR REPLACE VIEW ticket_ext.availability AS
    SELECT i.item_id, i.name, i.capacity, i.paused,
           @extschema@.ticket_available(i.item_id) AS available,
           i.pool_ids, i.holder_limit
      FROM ticket_ext.items i;

-- Shared capacity pools and per-customer limits (1.1).  A reservation of
-- an item also takes from each of its pools (ordinary items), all or
-- nothing; a holder limit caps one holder's held and sold qty on an item
-- (on a pool: over every item drawing on it).  docs/pools_and_limits.md.
CREATE FUNCTION ticket_ext.set_pools(item_id bigint, pool_ids bigint[])
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_set_pools'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.set_pools(bigint, bigint[]) IS
    'Make reservations of item_id also take from each pool (at most 8, one level); ''{}'' removes them. Refused while the item has active holds.';

CREATE FUNCTION ticket_ext.set_holder_limit(item_id bigint, max_qty integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'ticket_set_holder_limit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.set_holder_limit(bigint, integer) IS
    'Cap one holder''s held and sold qty on an item (a pool: over every item drawing on it); NULL removes. Returns the previous limit.';
REVOKE ALL ON FUNCTION ticket_ext.set_pools(bigint, bigint[]),
                       ticket_ext.set_holder_limit(bigint, integer) FROM PUBLIC;

-- Roles of 1.0: app roles (all of 1.0's grant_app privileges) get the new
-- app functions; admin roles (1.0's grant_admin) the new admin objects.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole
               FROM pg_proc p, aclexplode(p.proacl) a
              WHERE p.oid = '@extschema@.ticket_reserve(bigint, integer, text, interval, text)'::regprocedure
                AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
                AND has_schema_privilege(a.grantee, 'ticket_ext', 'USAGE')
                AND has_function_privilege(a.grantee, '@extschema@.ticket_confirm(bigint)', 'EXECUTE')
                AND has_function_privilege(a.grantee, '@extschema@.ticket_release(bigint)', 'EXECUTE')
                AND has_function_privilege(a.grantee, '@extschema@.ticket_available(bigint)', 'EXECUTE')
                AND has_table_privilege(a.grantee, 'ticket_ext.availability', 'SELECT')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.ticket_confirm(bigint, text), '
                       '@extschema@.ticket_release(bigint, text), @extschema@.ticket_status(bigint), '
                       '@extschema@.ticket_status(bigint, text) TO %s', r);
    END LOOP;
    FOR r IN SELECT DISTINCT a.grantee::regrole
               FROM pg_proc p, aclexplode(p.proacl) a
              WHERE p.oid = 'ticket_ext.set_capacity(bigint, bigint)'::regprocedure
                AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
                AND has_table_privilege(a.grantee, 'ticket_ext.holds', 'SELECT')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION ticket_ext.stream_state(), '
                       'ticket_ext.stream_resnapshot(text), ticket_ext.publish(), '
                       'ticket_ext.set_pools(bigint, bigint[]), '
                       'ticket_ext.set_holder_limit(bigint, integer) TO %s', r);
        EXECUTE format('GRANT SELECT ON ticket_ext.stream_state TO %s', r);
    END LOOP;
END
$$;
