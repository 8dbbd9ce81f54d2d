-- The output plugin, deterministically, through the SQL interface (as
-- contrib/test_decoding does): committed changes, an aborted transaction,
-- a rolled-back savepoint, capacity, pause/resume, commit markers, the last
-- event of each transaction ("last", "tx_events").  LSNs,
-- xids and times are masked.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
-- newer 15.x minor releases list the plugins a slot may use
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_settings WHERE name = 'output_plugin_libraries') THEN
    PERFORM set_config('output_plugin_libraries',
                       current_setting('output_plugin_libraries') || ', ticket_ext', false);
  END IF;
END $$;
SELECT 'init' FROM pg_create_logical_replication_slot('regress_plugin', 'ticket_ext');
CREATE FUNCTION masked(opts text[] DEFAULT '{}') RETURNS SETOF text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(data,
           '"event_id":"\d+-', '"event_id":"L-', 'g'),
           '"(lsn|end_lsn)":"[0-9A-F]+/[0-9A-F]+"', '"\1":"L"', 'g'),
           '"xid":\d+', '"xid":X', 'g'),
           '"commit_time":"[^"]+"', '"commit_time":"T"', 'g'),
           '"hold_id":\d+', '"hold_id":H', 'g')
    FROM pg_logical_slot_get_changes('regress_plugin', NULL, NULL, VARIADIC opts)
$$;

SELECT ticket_ext.create_item(501, 10, 'plugin');
SELECT ticket_confirm(ticket_reserve(501, 2, 'alice')) IS NOT NULL AS confirmed;
BEGIN; SELECT ticket_reserve(501, 1, 'aborted') IS NOT NULL; ROLLBACK;
BEGIN;
SELECT ticket_reserve(501, 1, 'kept') IS NOT NULL;
SAVEPOINT s;
SELECT ticket_reserve(501, 1, 'rolled back') IS NOT NULL;
ROLLBACK TO SAVEPOINT s;
SELECT ticket_release(ticket_reserve(501, 1, NULL));
SELECT ticket_reserve(501, 1, '') IS NOT NULL;
COMMIT;
SELECT ticket_ext.set_capacity(501, 20);
SELECT ticket_ext.pause(501);
SELECT ticket_ext.resume(501);
-- an unrelated table: no event
CREATE TABLE other (x int);
INSERT INTO other VALUES (1);
SELECT * FROM masked();

-- with commit markers: one after each transaction that had events
SELECT ticket_reserve(501, 1, 'marked') IS NOT NULL;
SELECT * FROM masked(ARRAY['commit-markers', 'on']);

-- pools and holder limits (1.1): a "pools" and a "holder_limit" event;
-- a reservation's events stay those of its item
SELECT ticket_ext.create_item(502, 5, 'pool');
SELECT ticket_ext.create_item(503, 5, 'drawing on it');
SELECT ticket_ext.set_pools(503, '{502}');
SELECT ticket_ext.set_holder_limit(502, 4);
SELECT ticket_reserve(503, 2, 'bea') IS NOT NULL;
SELECT ticket_ext.set_holder_limit(502, NULL);
SELECT ticket_ext.create_item(504, 5, 'pools removed');
SELECT ticket_ext.set_pools(504, '{502,501}');
SELECT ticket_ext.set_pools(504, '{}');
SELECT * FROM masked();

-- an unknown option is an error naming it
SELECT * FROM masked(ARRAY['no-such-option', 'on']);

SELECT pg_drop_replication_slot('regress_plugin');
