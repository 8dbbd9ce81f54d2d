/* ticket_ext--1.0.sql: install script */

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
    updated_at  timestamptz NOT NULL DEFAULT now()
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

-- Item events (capacity, paused/resumed) need the old row to tell what
-- changed: items are few and rarely updated, so log whole rows.
ALTER TABLE ticket_ext.items REPLICA IDENTITY FULL;

-- The tables that carry the events, for standard logical replication
-- subscribers (CREATE SUBSCRIPTION ... PUBLICATION ticket_ext_events).
-- PostgreSQL 15 cannot make a publication part of an extension, so the
-- streaming worker drops it after DROP EXTENSION; one left over from an
-- earlier installation is replaced here.
DROP PUBLICATION IF EXISTS ticket_ext_events;
CREATE PUBLICATION ticket_ext_events FOR TABLE ticket_ext.items, ticket_ext.holds;

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

CREATE FUNCTION ticket_ext.stream_status(
    OUT sink text, OUT state text, OUT acked_lsn pg_lsn, OUT events_sent bigint,
    OUT retries bigint, OUT throttles bigint, OUT last_error text,
    OUT last_error_at timestamptz, OUT slot_confirmed_lsn pg_lsn,
    OUT lag_bytes bigint, OUT lag_seconds float8, OUT queued integer,
    OUT worker_pid integer, OUT delay_p50_ms float8, OUT delay_p99_ms float8,
    OUT requests bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ticket_stream_status'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE VIEW ticket_ext.stream_status AS SELECT * FROM ticket_ext.stream_status();

CREATE FUNCTION ticket_ext.stream_reset_stats()
RETURNS void
AS 'MODULE_PATHNAME', 'ticket_stream_reset_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON VIEW ticket_ext.stream_status IS
    'The event streaming worker: one row per sink (state, progress, errors, lag).';

CREATE VIEW ticket_ext.availability AS
    SELECT i.item_id, i.name, i.capacity, i.paused,
           @extschema@.ticket_available(i.item_id) AS available
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
                       ticket_available(bigint)
    FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ticket_ext FROM PUBLIC;

CREATE FUNCTION ticket_ext.grant_app(role regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA ticket_ext TO %s', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION '
        '@extschema@.ticket_reserve(bigint, integer, text, interval, text), '
        '@extschema@.ticket_confirm(bigint), @extschema@.ticket_release(bigint), '
        '@extschema@.ticket_available(bigint) TO %s', role);
    EXECUTE format('GRANT SELECT ON ticket_ext.availability TO %s', role);
END
$$;
COMMENT ON FUNCTION ticket_ext.grant_app(regrole) IS
    'Let a role reserve, confirm, release and read availability; nothing else.';

CREATE FUNCTION ticket_ext.grant_admin(role regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ticket_ext.grant_app(role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ticket_ext TO %s', role);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA ticket_ext TO %s', role);
END
$$;
COMMENT ON FUNCTION ticket_ext.grant_admin(regrole) IS
    'Let a role administer items (capacity, pause, verify, resync) and read the tables.';

REVOKE ALL ON FUNCTION ticket_ext.grant_app(regrole),
                       ticket_ext.grant_admin(regrole) FROM PUBLIC;
