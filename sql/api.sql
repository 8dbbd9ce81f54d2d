-- The app-facing API: reserve, confirm, release, available.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
SELECT ticket_ext.create_item(1, 5, 'api concert');

SELECT ticket_available(1);

-- a reservation returns a hold id and takes tickets at once
SELECT ticket_reserve(1, 2, 'alice') AS h1 \gset
SELECT :h1 > 0 AS got_hold, ticket_available(1);
SELECT item_id, qty, status, holder, expires_at > now() AS in_future
  FROM ticket_ext.holds WHERE hold_id = :h1;

-- default hold duration comes from ticket_ext.hold_ttl
SET ticket_ext.hold_ttl = '90s';
SELECT ticket_reserve(1) AS h2 \gset
SELECT expires_at - created_at AS ttl FROM ticket_ext.holds WHERE hold_id = :h2;
RESET ticket_ext.hold_ttl;
SELECT ticket_reserve(1, 1, hold_for => '5 minutes') AS h3 \gset
SELECT expires_at - created_at AS ttl FROM ticket_ext.holds WHERE hold_id = :h3;
SELECT ticket_available(1);

-- sold out is NULL, not an error
SELECT ticket_reserve(1, 2) IS NULL AS sold_out;
SELECT ticket_reserve(1, 1) AS h4 \gset
SELECT ticket_reserve(1, 1) IS NULL AS sold_out, ticket_available(1);

-- confirm: true the first time, a no-op (false) the second time
SELECT ticket_confirm(:h1), ticket_confirm(:h1);
SELECT status, confirmed_at IS NOT NULL AS confirmed FROM ticket_ext.holds WHERE hold_id = :h1;

-- release gives tickets back at commit, whether held or sold
BEGIN;
SELECT ticket_release(:h2);
SELECT ticket_available(1) AS still_zero_before_commit;
COMMIT;
SELECT ticket_available(1);
SELECT ticket_release(:h1);
SELECT ticket_available(1);
SELECT status FROM ticket_ext.holds WHERE hold_id IN (:h1, :h2) ORDER BY hold_id;

-- a release that rolls back returns nothing
BEGIN;
SELECT ticket_release(:h3);
ROLLBACK;
SELECT ticket_available(1), status FROM ticket_ext.holds WHERE hold_id = :h3;

-- abort gives tickets back; the row is gone
BEGIN;
SELECT ticket_reserve(1, 2) AS h5 \gset
SELECT ticket_available(1) AS during;
ROLLBACK;
SELECT ticket_available(1) AS after_abort;
SELECT count(*) FROM ticket_ext.holds WHERE hold_id = :h5;

-- savepoints: rollback to savepoint gives back only what came after it
BEGIN;
SELECT ticket_reserve(1, 1) IS NOT NULL AS outer_hold;
SAVEPOINT s1;
SELECT ticket_reserve(1, 1) IS NOT NULL AS inner_hold;
SAVEPOINT s2;
SELECT ticket_reserve(1, 1) IS NOT NULL AS innermost_hold;
RELEASE SAVEPOINT s2;
SELECT ticket_available(1) AS all_taken;
ROLLBACK TO SAVEPOINT s1;
SELECT ticket_available(1) AS after_rollback_to_s1;
COMMIT;
SELECT ticket_available(1) AS after_commit;

-- an error inside a PL/pgSQL exception block rolls back its reservation
DO $$
BEGIN
  BEGIN
    PERFORM ticket_reserve(1, 1);
    RAISE EXCEPTION 'boom';
  EXCEPTION WHEN raise_exception THEN
    NULL;
  END;
END $$;
SELECT ticket_available(1) AS after_exception_block;

-- a release in the same transaction as its reservation nets to nothing
BEGIN;
SELECT ticket_reserve(1, 1) AS h6 \gset
SELECT ticket_release(:h6);
COMMIT;
SELECT ticket_available(1), (SELECT status FROM ticket_ext.holds WHERE hold_id = :h6);

-- idempotency: the same key on the same item returns the same hold
SELECT ticket_reserve(1, 1, 'bob', idempotency_key => 'order-17') AS k1 \gset
SELECT ticket_reserve(1, 1, 'bob', idempotency_key => 'order-17') = :k1 AS same_hold;
SELECT count(*) FROM ticket_ext.holds WHERE idempotency_key = 'order-17';
-- ... even after it was confirmed
SELECT ticket_confirm(:k1);
SELECT ticket_reserve(1, 1, 'bob', idempotency_key => 'order-17') = :k1 AS same_hold_after_confirm;
-- ... and a rolled-back attempt leaves the key free
BEGIN;
SELECT ticket_reserve(1, 1, idempotency_key => 'order-18') IS NOT NULL;
ROLLBACK;
SELECT count(*) FROM ticket_ext.holds WHERE idempotency_key = 'order-18';
-- the same key on another item is another order
SELECT ticket_ext.create_item(2, 3);
SELECT ticket_reserve(2, 1, idempotency_key => 'order-17') <> :k1 AS different_item_different_hold;

-- holder text round-trips exactly
SELECT ticket_reserve(2, 1, E'O''Brien \\ "quoted" ünïcødé') AS h7 \gset
SELECT holder FROM ticket_ext.holds WHERE hold_id = :h7;

-- availability view
SELECT item_id, name, capacity, paused, available FROM ticket_ext.availability
 WHERE item_id IN (1, 2) ORDER BY item_id;

-- counters agree with the tables
SELECT item_id, capacity, counter_taken, table_taken, in_flight, ok FROM ticket_ext.verify()
 WHERE item_id IN (1, 2) ORDER BY item_id;
