-- Least privilege: an app role can reserve, confirm, release and read
-- availability, and nothing else.  Admin functions, tables and settings
-- are out of its reach; search_path tricks cannot redirect our SQL.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
-- autocommit on purpose: releases and capacity raises apply at commit
SELECT plan(64);

CREATE ROLE tk_app LOGIN;
CREATE ROLE tk_admin LOGIN;
CREATE ROLE tk_nobody LOGIN;
SELECT ticket_ext.grant_app('tk_app');
SELECT ticket_ext.grant_admin('tk_admin');
SELECT ticket_ext.create_item(500, 10, 'privileges');

-- nothing for PUBLIC
SET ROLE tk_nobody;
SELECT throws_ok('SELECT ticket_reserve(500)', '42501', NULL, 'a role without grants cannot reserve');
SELECT throws_ok('SELECT ticket_available(500)', '42501', NULL, 'a role without grants cannot read availability');
RESET ROLE;

SET ROLE tk_app;
SELECT lives_ok('SELECT ticket_reserve(500, 2, ''app'')', 'app can reserve');
SELECT is(ticket_available(500), 8::bigint, 'app can read availability');
SELECT throws_ok('SELECT hold_id FROM ticket_ext.holds', '42501', NULL, 'app cannot read holds');
SELECT throws_ok('SELECT * FROM ticket_ext.items', '42501', NULL, 'app cannot read items');
SELECT throws_ok($$INSERT INTO ticket_ext.holds (item_id, qty, expires_at) VALUES (500, 1, now())$$,
                 '42501', NULL, 'app cannot insert holds directly');
SELECT throws_ok('UPDATE ticket_ext.items SET capacity = 1000', '42501', NULL, 'app cannot update items');
SELECT throws_ok('DELETE FROM ticket_ext.holds', '42501', NULL, 'app cannot delete holds');
SELECT throws_ok('SELECT ticket_ext.set_capacity(500, 1000)', '42501', NULL, 'app cannot change capacity');
SELECT throws_ok('SELECT ticket_ext.create_item(501, 10)', '42501', NULL, 'app cannot create items');
SELECT throws_ok('SELECT ticket_ext.pause(500)', '42501', NULL, 'app cannot pause');
SELECT throws_ok('SELECT ticket_ext.resume(500)', '42501', NULL, 'app cannot resume');
SELECT throws_ok('SELECT * FROM ticket_ext.resync()', '42501', NULL, 'app cannot resync');
SELECT throws_ok('SELECT * FROM ticket_ext.verify()', '42501', NULL, 'app cannot run verify');
SELECT throws_ok('SELECT ticket_ext.expire_holds()', '42501', NULL, 'app cannot force expiry');
SELECT throws_ok($$SELECT ticket_ext.grant_admin('tk_app')$$, '42501', NULL, 'app cannot grant itself admin');
SELECT throws_ok('SET ticket_ext.max_per_order = 1000', '42501', NULL, 'app cannot raise max_per_order');
SELECT throws_ok('SET ticket_ext.max_hold_ttl = ''30d''', '42501', NULL, 'app cannot raise max_hold_ttl');
SELECT throws_ok('SET ticket_ext.resync_timeout = 1', '42501', NULL, 'app cannot change resync_timeout');
SELECT throws_ok('SELECT nextval(''ticket_ext.holds_hold_id_seq'')', '42501', NULL, 'app cannot use the id sequence');
SELECT lives_ok('SET ticket_ext.hold_ttl = ''5min''', 'app may choose its default hold duration');
SELECT is((SELECT available FROM ticket_ext.availability WHERE item_id = 500), 8::bigint,
          'app can read the availability view');
RESET ROLE;

-- the app can confirm and release holds it knows the id of
SELECT hold_id AS app_hold FROM ticket_ext.holds WHERE holder = 'app' \gset
SET ROLE tk_app;
SELECT is((SELECT status || ' ' || item_id || ' ' || qty || ' ' || holder FROM ticket_status(:app_hold)),
          'held 500 2 app', 'app can read its hold''s status without the tables');
SELECT throws_ok('SELECT ticket_confirm(' || :app_hold || ', ''someone else'')', 'TK007', NULL,
                 'confirm with another holder is refused (TK007)');
SELECT ok(ticket_confirm(:app_hold, 'app'), 'app can confirm, naming the holder');
SELECT is((SELECT status FROM ticket_status(:app_hold)), 'sold', 'the status says sold');
SELECT throws_ok('SELECT ticket_release(' || :app_hold || ', ''someone else'')', 'TK007', NULL,
                 'release with another holder is refused (TK007)');
SELECT is((SELECT status FROM ticket_status(:app_hold)), 'sold', '... and changed nothing');
SELECT lives_ok('SELECT ticket_release(' || :app_hold || ')', 'app can release');
SELECT is((SELECT status FROM ticket_status(:app_hold)), 'released', 'the status says released');
SELECT is((SELECT count(*) FROM ticket_status(987654321)), 0::bigint, 'no row for an unknown hold');
RESET ROLE;
SET ROLE tk_nobody;
SELECT throws_ok('SELECT * FROM ticket_status(1)', '42501', NULL, 'a role without grants cannot read a hold''s status');
RESET ROLE;

-- search_path cannot redirect the extension's statements: a role that
-- shadows the = operator and now() in its own schema changes nothing
CREATE SCHEMA tk_evil AUTHORIZATION tk_app;
SET ROLE tk_app;
CREATE FUNCTION tk_evil.int8eq_trap(bigint, bigint) RETURNS boolean
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trap operator called'; END $$;
CREATE OPERATOR tk_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = tk_evil.int8eq_trap);
CREATE FUNCTION tk_evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'epoch'::timestamptz $$;
SET search_path = tk_evil, pg_catalog, public;
SELECT lives_ok('SELECT ticket_reserve(500, 1, ''evil'')', 'reserve ignores a shadowed = operator');
SELECT lives_ok($$SELECT ticket_reserve(500, 1, idempotency_key => 'evil-1')$$,
                'the idempotent path ignores it too');
RESET search_path;
RESET ROLE;
SELECT hold_id AS evil_hold FROM ticket_ext.holds WHERE holder = 'evil' \gset
SELECT ok((SELECT expires_at > now() FROM ticket_ext.holds WHERE hold_id = :evil_hold),
          'a shadowed now() did not set the expiry');
SET ROLE tk_app;
SET search_path = tk_evil, pg_catalog, public;
SELECT lives_ok('SELECT ticket_confirm(' || :evil_hold || ')', 'confirm ignores the trap');
SELECT lives_ok('SELECT ticket_release(' || :evil_hold || ')', 'release ignores the trap');
RESET search_path;
RESET ROLE;

-- secrets: not readable through SHOW or pg_settings; no way to reload,
-- change settings, or stop the workers
SELECT pid AS stream_pid FROM pg_stat_activity WHERE backend_type = 'ticket_ext stream redis' \gset
SELECT pid AS expiry_pid FROM pg_stat_activity WHERE backend_type = 'ticket_ext expiry' \gset
SET ROLE tk_app;
SELECT throws_ok('SHOW ticket_ext.aws_secret_access_key', '42501', NULL, 'app cannot SHOW the AWS secret key');
SELECT throws_ok('SHOW ticket_ext.aws_access_key_id', '42501', NULL, 'app cannot SHOW the AWS key id');
SELECT throws_ok('SHOW ticket_ext.redis_url', '42501', NULL, 'app cannot SHOW the Redis URL (may hold a password)');
SELECT throws_ok('SHOW ticket_ext.redis_password_file', '42501', NULL, 'app cannot SHOW the Redis password file');
SELECT throws_ok('SHOW ticket_ext.stream_conninfo', '42501', NULL, 'app cannot SHOW the worker''s conninfo');
SELECT is((SELECT count(*) FROM pg_settings
            WHERE name IN ('ticket_ext.aws_secret_access_key', 'ticket_ext.aws_access_key_id',
                           'ticket_ext.redis_url', 'ticket_ext.redis_password_file',
                           'ticket_ext.stream_conninfo')),
          0::bigint, 'pg_settings hides the secret settings from app');
SELECT throws_ok('SELECT pg_reload_conf()', '42501', NULL, 'app cannot reload the configuration');
-- (ALTER SYSTEM cannot run inside throws_ok's transaction: ask the catalog)
SELECT ok(NOT has_parameter_privilege('tk_app', 'ticket_ext.redis_url', 'ALTER SYSTEM')
          AND NOT has_parameter_privilege('tk_app', 'ticket_ext.aws_secret_access_key', 'SET'),
          'app cannot ALTER SYSTEM or SET the secret settings');
SELECT throws_ok('SELECT pg_terminate_backend(' || :stream_pid || ')', '42501', NULL,
                 'app cannot stop the streaming worker');
SELECT throws_ok('SELECT pg_cancel_backend(' || :stream_pid || ')', '42501', NULL,
                 'app cannot signal the streaming worker');
SELECT throws_ok('SELECT pg_terminate_backend(' || :expiry_pid || ')', '42501', NULL,
                 'app cannot stop the expiry worker');
SELECT throws_ok($$SELECT pg_drop_replication_slot('ticket_ext_stream')$$, '42501', NULL,
                 'app cannot drop the replication slot');
RESET ROLE;
SELECT is((SELECT pid FROM pg_stat_activity WHERE backend_type = 'ticket_ext stream redis'), :stream_pid,
          'the streaming worker still runs');

-- the admin role can administer
SET ROLE tk_admin;
SELECT lives_ok('SELECT ticket_ext.set_capacity(500, 20)', 'admin can change capacity');
SELECT lives_ok('SELECT ticket_ext.pause(500)', 'admin can pause');
SELECT lives_ok('SELECT ticket_ext.resume(500)', 'admin can resume');
SELECT is((SELECT bool_and(ok) FROM ticket_ext.verify(500)), true, 'admin can verify');
SELECT lives_ok('SELECT * FROM ticket_ext.resync(500)', 'admin can resync');
-- an admin cannot hand out privileges it cannot grant: refused, not a
-- warning and a silent no-op
SELECT throws_ok($$SELECT ticket_ext.grant_app('tk_nobody')$$, '42501', NULL,
                 'a non-superuser admin cannot run grant_app');
SELECT throws_ok($$SELECT ticket_ext.grant_admin('tk_nobody')$$, '42501', NULL,
                 'a non-superuser admin cannot run grant_admin');
RESET ROLE;
SELECT ok(NOT has_function_privilege('tk_nobody', 'ticket_reserve(bigint, integer, text, interval, text)', 'EXECUTE'),
          'the refused grant_app granted nothing');
SELECT ok(NOT has_function_privilege('tk_nobody', 'ticket_ext.set_capacity(bigint, bigint)', 'EXECUTE'),
          'the refused grant_admin granted nothing');
-- a role that does hold the privileges WITH GRANT OPTION may pass them on
CREATE ROLE tk_delegate LOGIN;
GRANT USAGE ON SCHEMA ticket_ext TO tk_delegate WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION ticket_reserve(bigint, integer, text, interval, text), ticket_confirm(bigint),
      ticket_confirm(bigint, text), ticket_release(bigint), ticket_release(bigint, text),
      ticket_available(bigint), ticket_status(bigint), ticket_status(bigint, text),
      ticket_ext.grant_app(regrole)
   TO tk_delegate WITH GRANT OPTION;
GRANT SELECT ON ticket_ext.availability TO tk_delegate WITH GRANT OPTION;
SET ROLE tk_delegate;
SELECT lives_ok($$SELECT ticket_ext.grant_app('tk_nobody')$$, 'a role with GRANT OPTION can run grant_app');
RESET ROLE;
SELECT ok(has_function_privilege('tk_nobody', 'ticket_reserve(bigint, integer, text, interval, text)', 'EXECUTE'),
          'and the grant took effect');
-- (what tk_delegate granted goes with its own grant option)
REVOKE ALL ON FUNCTION ticket_reserve(bigint, integer, text, interval, text), ticket_confirm(bigint),
      ticket_confirm(bigint, text), ticket_release(bigint), ticket_release(bigint, text),
      ticket_available(bigint), ticket_status(bigint), ticket_status(bigint, text),
      ticket_ext.grant_app(regrole)
  FROM tk_delegate CASCADE;
REVOKE ALL ON ticket_ext.availability FROM tk_delegate CASCADE;
REVOKE ALL ON SCHEMA ticket_ext FROM tk_delegate CASCADE;

-- every SECURITY DEFINER function of the extension pins search_path
SELECT is((SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
            WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ticket_ext')
              AND p.prosecdef
              AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')),
          0::bigint, 'no SECURITY DEFINER function without a pinned search_path');
-- and nothing of ours is executable by PUBLIC
SELECT is((SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
            WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ticket_ext')
              AND has_function_privilege('tk_nobody', p.oid, 'EXECUTE')),
          0::bigint, 'no extension function is executable by PUBLIC');

SELECT * FROM finish();

DROP SCHEMA tk_evil CASCADE;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ticket_ext FROM tk_app, tk_admin;
DROP OWNED BY tk_app, tk_admin, tk_nobody, tk_delegate;
DROP ROLE tk_app, tk_admin, tk_nobody, tk_delegate;
