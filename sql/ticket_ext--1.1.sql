/* ticket_ext--1.1.sql: install script of version 1.1 (1.0 plus
   ticket_ext--1.0--1.1.sql gives the same objects: test/t/009_upgrade.pl) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION ticket_ext" to load this file. \quit

-- Tables (the truth), admin functions and views live in schema ticket_ext;
-- the four app functions go into the schema the extension is created in
-- (public by default), so "SELECT ticket_reserve(...)" works as is.
CREATE SCHEMA ticket_ext;

CREATE TABLE ticket_ext.items (
    item_id     bigint PRIMARY KEY,
    name        text,
    capacity    bigint NOT NULL CHECK (capacity >= 0),
    paused      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- set only by ticket_ext.set_pools() and set_holder_limit() (1.1)
    pool_ids    bigint[] NOT NULL DEFAULT '{}',
    holder_limit integer CHECK (holder_limit > 0)
);
COMMENT ON TABLE ticket_ext.items IS
    'Items on sale. Change only through ticket_ext functions: shared-memory counters cache it.';

-- Ids come from a sequence with a per-backend cache: no hot sequence page
-- under load; gaps after a restart are harmless.
CREATE SEQUENCE ticket_ext.holds_hold_id_seq CACHE 32;

-- No foreign key to items and no CHECK constraints, on purpose: a
-- foreign key takes a KEY SHARE lock on the item row at every insert (the
-- hot row this extension exists to avoid), and CHECK expressions are
-- rebuilt for every insert.  Only ticket_ext's C functions write this
-- table; they guarantee qty > 0, a known item, a valid status ('held',
-- 'sold', 'released', 'expired') and ended_at IS NULL exactly when the
-- status is held or sold.
CREATE TABLE ticket_ext.holds (
    hold_id         bigint PRIMARY KEY
                    DEFAULT nextval('ticket_ext.holds_hold_id_seq'),
    item_id         bigint NOT NULL,
    qty             integer NOT NULL,
    status          text NOT NULL DEFAULT 'held',
    holder          text,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    ended_at        timestamptz     -- set when released or expired
) WITH (fillfactor = 50);  -- room for each row's one update (confirm/release/expiry)
ALTER SEQUENCE ticket_ext.holds_hold_id_seq OWNED BY ticket_ext.holds.hold_id;
COMMENT ON TABLE ticket_ext.holds IS
    'One row per reservation. held and sold rows count against capacity.';

-- The one secondary index: the active (held or sold, i.e. not ended)
-- holds of an item, by expiry: what is taken (counter rebuilds and verify
-- sum qty with index-only scans) and which holds may be due.  It leaves
-- out status on purpose: confirming a hold (held -> sold) then changes no
-- indexed column and is a HOT update, which the free space left by
-- fillfactor makes possible.
CREATE INDEX holds_item_idx
    ON ticket_ext.holds (item_id, expires_at) INCLUDE (qty)
    WHERE ended_at IS NULL;
-- Idempotent retries; partial, so calls without a key pay nothing.
CREATE UNIQUE INDEX holds_idempotency_idx
    ON ticket_ext.holds (item_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Pools (1.1): the items drawing on a pool, for loading and verifying
-- its counter (pool_ids @> ARRAY[pool]) without reading every item.
CREATE INDEX items_pool_ids_idx ON ticket_ext.items USING gin (pool_ids);

-- Per-customer limits (1.1): one holder's active holds, counted at each
-- reservation of a limited item; partial, so holds without a holder cost
-- nothing.
CREATE INDEX holds_holder_idx
    ON ticket_ext.holds (holder, item_id) INCLUDE (qty)
    WHERE ended_at IS NULL AND holder IS NOT NULL;

-- Item events (capacity, paused/resumed) need the old row to tell what
-- changed: items are few and rarely updated, so log whole rows.
ALTER TABLE ticket_ext.items REPLICA IDENTITY FULL;

-- No publication: ticket_ext.publish() makes one on request (pg_dump
-- writes a publication out as an object of its own; one made here as well
-- would clash when a dump is restored).

-- pg_dump keeps the data of these tables.
SELECT pg_catalog.pg_extension_config_dump('ticket_ext.items', '');
SELECT pg_catalog.pg_extension_config_dump('ticket_ext.holds', '');
SELECT pg_catalog.pg_extension_config_dump('ticket_ext.holds_hold_id_seq', '');

-- ------------------------------------------------------------------
-- App functions.  Not SECURITY DEFINER: the C code runs its own fixed,
-- schema-qualified statements as the tables' owner, so callers need only
-- EXECUTE.  Not STRICT, so NULL arguments get a clear error.
-- ------------------------------------------------------------------
CREATE FUNCTION ticket_reserve(item_id bigint, qty integer DEFAULT 1,
                               holder text DEFAULT NULL,
                               hold_for interval DEFAULT NULL,
                               idempotency_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ticket_reserve'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_reserve(bigint, integer, text, interval, text) IS
    'Hold qty tickets of an item; returns the hold id, or NULL when sold out.';

CREATE FUNCTION ticket_confirm(hold_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ticket_confirm'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_confirm(bigint) IS
    'Turn a hold into a sale (paid). true = confirmed now, false = was already sold.';

CREATE FUNCTION ticket_release(hold_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_release'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_release(bigint) IS
    'Give a held or sold hold''s tickets back (at commit).';

CREATE FUNCTION ticket_available(item_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ticket_available'
LANGUAGE C VOLATILE PARALLEL UNSAFE;  -- may load counters: needs a fresh snapshot
COMMENT ON FUNCTION ticket_available(bigint) IS
    'Tickets left, from shared memory.';

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


-- ------------------------------------------------------------------
-- Admin functions (schema ticket_ext)
-- ------------------------------------------------------------------
CREATE FUNCTION ticket_ext.create_item(item_id bigint, capacity bigint,
                                       name text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_create_item'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION ticket_ext.set_capacity(item_id bigint, capacity bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ticket_set_capacity'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.set_capacity(bigint, bigint) IS
    'Change capacity online; returns the previous capacity.';

CREATE FUNCTION ticket_ext.pause(item_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_pause'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION ticket_ext.resume(item_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_resume'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION ticket_ext.verify(item_id bigint DEFAULT NULL,
    OUT item_id bigint, OUT capacity bigint, OUT counter_capacity bigint,
    OUT counter_taken bigint, OUT table_taken bigint, OUT in_flight bigint,
    OUT paused boolean, OUT ok boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ticket_verify'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.verify(bigint) IS
    'Counters against the tables; exact when in_flight = 0.';

CREATE FUNCTION ticket_ext.resync(item_id bigint DEFAULT NULL,
    OUT item_id bigint, OUT counter_taken_before bigint,
    OUT table_taken bigint, OUT corrected boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ticket_resync'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.resync(bigint) IS
    'Rebuild counters from the tables while sales go on.';

CREATE FUNCTION ticket_ext.expire_holds(batch integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ticket_expire_holds'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION ticket_ext.expire_holds(integer) IS
    'Expire overdue holds now (the expiry worker does this every second).';

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

CREATE FUNCTION ticket_ext.stream_reset_stats()
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_stream_reset_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON VIEW ticket_ext.stream_status IS
    'The event streaming worker: one row per sink (state, progress, errors, lag); last_error is past when last_ok_at is later.';

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

CREATE VIEW ticket_ext.availability AS
    SELECT i.item_id, i.name, i.capacity, i.paused,
           @extschema@.ticket_available(i.item_id) AS available,
           i.pool_ids, i.holder_limit
      FROM ticket_ext.items i;

-- ------------------------------------------------------------------
-- Privileges: nothing for PUBLIC.  Grant an application role the app
-- functions with ticket_ext.grant_app(role); admins get everything from
-- ticket_ext.grant_admin(role).
-- ------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA ticket_ext FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA ticket_ext FROM PUBLIC;
REVOKE ALL ON FUNCTION ticket_reserve(bigint, integer, text, interval, text),
                       ticket_confirm(bigint), ticket_release(bigint),
                       ticket_available(bigint), ticket_confirm(bigint, text),
                       ticket_release(bigint, text), ticket_status(bigint),
                       ticket_status(bigint, text)
    FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ticket_ext FROM PUBLIC;

CREATE FUNCTION ticket_ext.grant_app(role regrole)
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
COMMENT ON FUNCTION ticket_ext.grant_app(regrole) IS
    'Let a role reserve, confirm, release, read a hold''s status and availability; nothing else.';

CREATE FUNCTION ticket_ext.grant_admin(role regrole)
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
COMMENT ON FUNCTION ticket_ext.grant_admin(regrole) IS
    'Let a role administer items (capacity, pause, verify, resync) and read the tables.';

REVOKE ALL ON FUNCTION ticket_ext.grant_app(regrole),
                       ticket_ext.grant_admin(regrole) FROM PUBLIC;
