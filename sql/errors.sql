-- Every documented error: SQLSTATE and message (README.md "Errors").
-- err() runs a statement and shows the error it raised, if any.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  -- hold ids depend on test order: show them as N
  RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'hold -?[0-9]+', 'hold N', 'g');
END $$;

SELECT ticket_ext.create_item(10, 3, 'errors');
SELECT ticket_reserve(10, 1) AS held \gset

-- unknown item
SELECT pg_temp.err('SELECT ticket_reserve(999)');
SELECT pg_temp.err('SELECT ticket_available(999)');
SELECT pg_temp.err('SELECT ticket_ext.set_capacity(999, 1)');
SELECT pg_temp.err('SELECT ticket_ext.pause(999)');
SELECT pg_temp.err('SELECT ticket_ext.resume(999)');
SELECT pg_temp.err('SELECT * FROM ticket_ext.verify(999)');
SELECT pg_temp.err('SELECT * FROM ticket_ext.resync(999)');
-- NULL arguments
SELECT pg_temp.err('SELECT ticket_reserve(NULL)');
SELECT pg_temp.err('SELECT ticket_reserve(10, NULL)');
SELECT pg_temp.err('SELECT ticket_available(NULL)');
SELECT pg_temp.err('SELECT ticket_confirm(NULL)');
SELECT pg_temp.err('SELECT ticket_release(NULL)');
SELECT pg_temp.err('SELECT ticket_ext.create_item(NULL, 1)');
SELECT pg_temp.err('SELECT ticket_ext.create_item(11, NULL)');
SELECT pg_temp.err('SELECT ticket_ext.set_capacity(10, NULL)');
SELECT pg_temp.err('SELECT ticket_ext.pause(NULL)');
-- quantity
SELECT pg_temp.err('SELECT ticket_reserve(10, 0)');
SELECT pg_temp.err('SELECT ticket_reserve(10, -1)');
SELECT pg_temp.err('SELECT ticket_reserve(10, 11)');
SET ticket_ext.max_per_order = 20;
SELECT pg_temp.err('SELECT ticket_reserve(10, 11)');   -- now allowed: sold out (NULL)
RESET ticket_ext.max_per_order;
-- hold duration
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, hold_for => '0 s')$$);
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, hold_for => '-5 min')$$);
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, hold_for => '2 days')$$);
-- text too long
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, repeat('x', 257))$$);
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, idempotency_key => repeat('k', 201))$$);
SELECT pg_temp.err($$SELECT ticket_ext.create_item(12, 1, repeat('n', 201))$$);
-- capacity
SELECT pg_temp.err('SELECT ticket_ext.create_item(13, -1)');
SELECT pg_temp.err('SELECT ticket_ext.set_capacity(10, -1)');
SELECT pg_temp.err('SELECT ticket_ext.create_item(13, 1000000000001)');
SELECT pg_temp.err('SELECT ticket_ext.create_item(10, 5)');   -- exists
-- paused item
SELECT ticket_ext.pause(10);
SELECT pg_temp.err('SELECT ticket_reserve(10)');
SELECT ticket_ext.resume(10);
SELECT pg_temp.err('SELECT ticket_reserve(10)');  -- allowed again
-- bad hold ids
SELECT pg_temp.err('SELECT ticket_confirm(0)');
SELECT pg_temp.err('SELECT ticket_confirm(-7)');
SELECT pg_temp.err('SELECT ticket_release(0)');
SELECT pg_temp.err('SELECT ticket_confirm(987654321)');
SELECT pg_temp.err('SELECT ticket_release(987654321)');
SELECT ticket_release(:held);
SELECT pg_temp.err('SELECT ticket_release(' || :held || ')');   -- already released
SELECT pg_temp.err('SELECT ticket_confirm(' || :held || ')');   -- released
-- expired holds
SELECT ticket_reserve(10, 1, hold_for => '1 ms') AS gone \gset
SELECT pg_sleep(0.01);
SELECT pg_temp.err('SELECT ticket_confirm(' || :gone || ')');    -- past its time
-- wait (at most 10 s) for the expiry worker to mark it expired
CREATE FUNCTION pg_temp.wait_expired(h bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN (SELECT status FROM ticket_ext.holds WHERE hold_id = h) = 'expired';
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN (SELECT status FROM ticket_ext.holds WHERE hold_id = h);
END $$;
SELECT pg_temp.wait_expired(:gone);
SELECT pg_temp.err('SELECT ticket_release(' || :gone || ')');
SELECT pg_temp.err('SELECT ticket_confirm(' || :gone || ')');
-- idempotency key reused for another quantity (TK006)
SELECT ticket_reserve(10, 1, idempotency_key => 'e-1') IS NOT NULL AS first;
SELECT pg_temp.err($$SELECT ticket_reserve(10, 2, idempotency_key => 'e-1')$$);
-- ... or by another holder: a key names one order, never someone else's hold
SELECT ticket_reserve(10, 1, 'alice', idempotency_key => 'e-2') AS alice \gset
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, 'mallory', idempotency_key => 'e-2')$$);
SELECT pg_temp.err($$SELECT ticket_reserve(10, 1, idempotency_key => 'e-2')$$);
SELECT ticket_reserve(10, 1, 'alice', idempotency_key => 'e-2') = :alice AS same_call_same_hold;
SELECT ticket_release(:alice);
-- an ended hold's key keeps answering with that hold; the errors on it say
-- to reserve again with a new key (the hint)
CREATE FUNCTION pg_temp.err_hint(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
  EXECUTE stmt;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
  RETURN SQLSTATE || ': ' || h;
END $$;
SELECT ticket_reserve(10, 1, 'alice', idempotency_key => 'e-2') = :alice AS key_returns_the_released_hold;
SELECT pg_temp.err_hint('SELECT ticket_confirm(' || :alice || ')');
SELECT pg_temp.err_hint('SELECT ticket_confirm(' || :gone || ')');
-- the holder check of confirm/release (TK007 is in test/pgtap/privileges.sql)
SELECT pg_temp.err('SELECT ticket_confirm(' || :alice || ', NULL)');
SELECT pg_temp.err('SELECT ticket_release(' || :alice || ', NULL)');
SELECT pg_temp.err('SELECT ticket_confirm(987654321, ''alice'')');
SELECT pg_temp.err('SELECT ticket_release(' || :alice || ', ''alice'')');  -- right holder: released already
-- limits apply to new holds: a retry gets its hold after they were lowered
SELECT ticket_ext.create_item(11, 10, 'limits');
SELECT ticket_reserve(11, 3, 'carol', idempotency_key => 'e-3') AS carol \gset
SET ticket_ext.max_per_order = 2;
SET ticket_ext.max_hold_ttl = '1s';
SELECT ticket_reserve(11, 3, 'carol', idempotency_key => 'e-3') = :carol AS retry_after_limits_lowered;
SELECT pg_temp.err($$SELECT ticket_reserve(11, 3, 'carol', idempotency_key => 'e-4')$$);  -- a new order: refused
RESET ticket_ext.max_per_order;
RESET ticket_ext.max_hold_ttl;
-- one rule for the default duration and hold_for: both at most max_hold_ttl
SET ticket_ext.hold_ttl = '2d';
SELECT pg_temp.err('SELECT ticket_reserve(10)');
RESET ticket_ext.hold_ttl;
-- an item created in this transaction cannot be sold before it commits
BEGIN;
SELECT ticket_ext.create_item(15, 1);
SELECT pg_temp.err('SELECT ticket_reserve(15)');
ROLLBACK;
-- read-only transactions
BEGIN READ ONLY;
SELECT pg_temp.err('SELECT ticket_reserve(10)');
SELECT pg_temp.err('SELECT ticket_ext.create_item(14, 1)');
SELECT ticket_available(10) >= 0 AS reading_is_fine;
COMMIT;
-- two-phase commit: refused when counters changed, allowed otherwise
BEGIN;
SELECT ticket_reserve(10) IS NOT NULL AS reserved;
PREPARE TRANSACTION 'te_refused';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'te_refused';
-- resync inside a transaction that changed counters
BEGIN;
SELECT ticket_reserve(10) IS NOT NULL AS reserved;
SELECT pg_temp.err('SELECT * FROM ticket_ext.resync(10)');
ROLLBACK;
-- bad batch size
SELECT pg_temp.err('SELECT ticket_ext.expire_holds(0)');
-- wrong types are refused by PostgreSQL itself
SELECT pg_temp.err($$SELECT ticket_reserve('abc')$$);
SELECT pg_temp.err($$SELECT ticket_reserve(10, 99999999999)$$);
-- the server kept running and the counters are right
SELECT item_id, counter_taken, table_taken, ok FROM ticket_ext.verify(10);
