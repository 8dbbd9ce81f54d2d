-- Pools and per-customer limits (1.1): the contract and every error.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
\set VERBOSITY default

-- a festival: day capacities 1001 (Friday, 5) and 1002 (Saturday, 4);
-- a Friday ticket 1011 and a weekend pass 1013, each with room of its own
SELECT ticket_ext.create_item(1001, 5, 'Friday capacity');
SELECT ticket_ext.create_item(1002, 4, 'Saturday capacity');
SELECT ticket_ext.create_item(1011, 100, 'Friday ticket');
SELECT ticket_ext.create_item(1013, 100, 'Weekend pass');
SELECT ticket_ext.set_pools(1011, '{1001}');
SELECT ticket_ext.set_pools(1013, '{1001,1002}');
SELECT item_id, pool_ids, holder_limit, available FROM ticket_ext.availability
 WHERE item_id BETWEEN 1001 AND 1013 ORDER BY item_id;

-- a pass takes from both days, all or nothing
SELECT ticket_reserve(1013, 3, 'ann') IS NOT NULL AS pass_reserved;
SELECT ticket_available(1001) AS fri, ticket_available(1002) AS sat,
       ticket_available(1011) AS fri_ticket, ticket_available(1013) AS pass;
-- Saturday has 1 left: a pass of 2 is refused and takes nothing (Friday keeps 2)
SELECT ticket_reserve(1013, 2, 'bob') IS NULL AS pass_sold_out;
SELECT ticket_available(1001) AS fri_unchanged;
SELECT ticket_reserve(1011, 2, 'bob') IS NOT NULL AS fri_ticket_reserved;
SELECT ticket_available(1001) AS fri, ticket_available(1011) AS fri_ticket,
       ticket_available(1013) AS pass;
SELECT ticket_reserve(1011, 1, 'cy') IS NULL AS friday_sold_out;
-- a pool is an ordinary item too: nothing left to sell directly
SELECT ticket_reserve(1001, 1, 'cy') IS NULL AS pool_sold_out;

-- abort and savepoint rollback give back to every pool
BEGIN;
SELECT ticket_reserve(1002, 1, 'dee') IS NOT NULL AS sat_direct;
SAVEPOINT s;
SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE item_id = 1013;
ROLLBACK TO SAVEPOINT s;
SELECT ticket_available(1002) AS sat_in_xact;
ROLLBACK;
SELECT ticket_available(1002) AS sat_after_rollback;

-- release gives back to the item and every pool, at commit
BEGIN;
SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE item_id = 1013;
SELECT ticket_available(1001) AS fri_before_commit;
COMMIT;
SELECT ticket_available(1001) AS fri, ticket_available(1002) AS sat,
       ticket_available(1013) AS pass;

-- pausing a pool stops every item drawing on it (TK001)
SELECT ticket_ext.pause(1002);
SELECT ticket_reserve(1013, 1, 'eve');
SELECT ticket_reserve(1011, 1, 'eve') IS NOT NULL AS friday_still_on_sale;
SELECT ticket_ext.resume(1002);
SELECT ticket_reserve(1013, 1, 'eve') IS NOT NULL AS pass_on_sale_again;

-- verify and resync cover pools: taken of a pool = its holds + its items'
SELECT item_id, capacity, counter_taken, table_taken, ok
  FROM ticket_ext.verify() WHERE item_id BETWEEN 1001 AND 1013 ORDER BY item_id;
SELECT item_id, counter_taken_before, table_taken, corrected
  FROM ticket_ext.resync() WHERE item_id BETWEEN 1001 AND 1013 ORDER BY item_id;

-- set_pools errors
SELECT ticket_ext.set_pools(1011, NULL);
SELECT ticket_ext.set_pools(1011, '{1011}');
SELECT ticket_ext.set_pools(1011, '{1001,1001}');
SELECT ticket_ext.set_pools(1011, '{1001,NULL}');
SELECT ticket_ext.set_pools(1011, '{1,2,3,4,5,6,7,8,9}');
SELECT ticket_ext.set_pools(1011, '{{1001},{1002}}');
SELECT ticket_ext.set_pools(1011, '{999999}');
SELECT ticket_ext.set_pools(999999, '{1001}');
-- one level: a pool draws on no pool, an item drawing on pools is nobody's pool (so no cycle)
SELECT ticket_ext.create_item(1020, 10, 'fresh');
SELECT ticket_ext.set_pools(1001, '{1020}');
SELECT ticket_ext.set_pools(1020, '{1013}');
-- the item has active holds: refused, the pools stay (55000)
SELECT ticket_ext.set_pools(1011, '{1002}');
SELECT pool_ids FROM ticket_ext.items WHERE item_id = 1011;
-- the same pools again: nothing to change, accepted
SELECT ticket_ext.set_pools(1011, '{1001}');
-- not in a transaction that sold (it would wait for itself)
BEGIN;
SELECT ticket_reserve(1020, 1) IS NOT NULL;
SELECT ticket_ext.set_pools(1020, '{1002}');
ROLLBACK;
-- changes roll back; sales of the item wait for the commit
BEGIN;
SELECT ticket_ext.set_pools(1020, '{1002}');
SELECT ticket_reserve(1020, 1);
ROLLBACK;
SELECT pool_ids, ticket_available(1020) AS avail FROM ticket_ext.availability WHERE item_id = 1020;
BEGIN;
SELECT ticket_ext.set_pools(1020, '{1002}');
SAVEPOINT a;
SELECT ticket_ext.set_pools(1020, '{1001,1002}');
ROLLBACK TO SAVEPOINT a;
COMMIT;
SELECT pool_ids, ticket_available(1020) AS avail FROM ticket_ext.availability WHERE item_id = 1020;
-- an empty array removes the pools
SELECT ticket_ext.set_pools(1020, '{}');
SELECT pool_ids, ticket_available(1020) AS avail FROM ticket_ext.availability WHERE item_id = 1020;
-- not in a prepared transaction
BEGIN;
SELECT ticket_ext.set_pools(1020, '{1002}');
PREPARE TRANSACTION 'pools';
SELECT pool_ids FROM ticket_ext.items WHERE item_id = 1020;

-- nor a transaction holding a holder's lock (a sold-out answer on a limited
-- pool) or the pools lock (set_pools that changed nothing): a prepared one
-- would keep them
BEGIN;
SELECT ticket_ext.set_pools(1011, '{1001}');
PREPARE TRANSACTION 'pools_unchanged';
SELECT ticket_ext.create_item(1050, 1, 'tiny pool');
SELECT ticket_ext.create_item(1051, 5, 'drawing on it');
SELECT ticket_ext.set_pools(1051, '{1050}');
SELECT ticket_ext.set_holder_limit(1050, 3);
SELECT ticket_reserve(1050, 1, 'zed') IS NOT NULL AS last_one;
BEGIN;
SELECT ticket_reserve(1051, 1, 'yan') IS NULL AS sold_out;
PREPARE TRANSACTION 'holder_locked';
SELECT ticket_reserve(1051, 1, 'yan') IS NULL AS still_sold_out_not_waiting;
SELECT count(*) AS prepared FROM pg_prepared_xacts;

-- an item created in the same transaction: pools at once, sold after commit
BEGIN;
SELECT ticket_ext.create_item(1030, 50, 'Saturday ticket');
SELECT ticket_ext.set_pools(1030, '{1002}');
COMMIT;
SELECT ticket_available(1030) AS sat_ticket, ticket_available(1002) AS sat;

-- per-customer limits
SELECT ticket_ext.create_item(1040, 100, 'limited');
SELECT ticket_ext.set_holder_limit(1040, 4) AS previous;
SELECT ticket_ext.set_holder_limit(1040, 4) AS previous;
SELECT ticket_reserve(1040, 3, 'fay') IS NOT NULL AS three;
SELECT ticket_reserve(1040, 2, 'fay');
SELECT ticket_reserve(1040, 1, 'fay') IS NOT NULL AS fourth;
SELECT ticket_reserve(1040, 1, 'fay');
SELECT ticket_reserve(1040, 4, 'gus') IS NOT NULL AS another_holder;
SELECT ticket_reserve(1040, 1);
-- one statement, several calls: they count each other
SELECT count(*) FILTER (WHERE h IS NOT NULL) AS reserved FROM (
  SELECT ticket_reserve(1040, 2, 'hal') AS h FROM generate_series(1, 2)) s;
SELECT ticket_reserve(1040, 2, 'hal') FROM generate_series(1, 1);
-- an idempotent retry counts once
SELECT ticket_reserve(1040, 2, 'ivy', idempotency_key => 'k') IS NOT NULL AS first;
SELECT ticket_reserve(1040, 2, 'ivy', idempotency_key => 'k') =
       (SELECT hold_id FROM ticket_ext.holds WHERE holder = 'ivy') AS retry_same_hold;
SELECT ticket_reserve(1040, 2, 'ivy') IS NOT NULL AS up_to_the_limit;
-- a release gives the allowance back when it commits; confirming keeps it taken
BEGIN;
SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE holder = 'fay' AND qty = 3;
SELECT ticket_reserve(1040, 3, 'fay') IS NOT NULL AS after_own_release;
ROLLBACK;
SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE holder = 'gus';
SELECT ticket_reserve(1040, 1, 'gus');
-- savepoint rollback gives the allowance back
BEGIN;
SAVEPOINT s;
SELECT ticket_reserve(1040, 4, 'jo') IS NOT NULL AS in_savepoint;
ROLLBACK TO SAVEPOINT s;
SELECT ticket_reserve(1040, 4, 'jo') IS NOT NULL AS after_rollback;
COMMIT;
-- a limit on a pool counts every item drawing on it
SELECT ticket_ext.set_holder_limit(1001, 2);
SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE item_id IN (1011, 1013) AND ended_at IS NULL;
SELECT ticket_reserve(1011, 1, 'kim') IS NOT NULL AS friday_ticket;
SELECT ticket_reserve(1013, 1, 'kim') IS NOT NULL AS weekend_pass;
SELECT ticket_reserve(1013, 1, 'kim');
SELECT ticket_reserve(1002, 1, 'kim') IS NOT NULL AS saturday_direct_unlimited;
-- lowering below what a holder has cancels nothing, refuses more
SELECT ticket_ext.set_holder_limit(1040, 2) AS previous;
SELECT sum(qty) AS fay_keeps FROM ticket_ext.holds WHERE holder = 'fay' AND ended_at IS NULL;
SELECT ticket_reserve(1040, 1, 'fay');
SELECT ticket_ext.set_holder_limit(1040, NULL) AS previous;
SELECT ticket_reserve(1040, 1, 'fay') IS NOT NULL AS unlimited_again;
-- errors
SELECT ticket_ext.set_holder_limit(1040, 0);
SELECT ticket_ext.set_holder_limit(1040, -1);
SELECT ticket_ext.set_holder_limit(999999, 4);
BEGIN;
SELECT ticket_reserve(1040, 1) IS NOT NULL;
SELECT ticket_ext.set_holder_limit(1040, 4);
ROLLBACK;
SELECT item_id, holder_limit FROM ticket_ext.availability WHERE holder_limit IS NOT NULL ORDER BY 1;
SELECT item_id, ok FROM ticket_ext.verify() WHERE item_id >= 1000 AND NOT ok;
-- verify compares the pools and limit in shared memory with the items row
UPDATE ticket_ext.items SET holder_limit = 9 WHERE item_id = 1040;
SELECT item_id, ok FROM ticket_ext.verify(1040);
UPDATE ticket_ext.items SET holder_limit = NULL WHERE item_id = 1040;
SELECT item_id, ok FROM ticket_ext.verify(1040);
-- ... and set_pools/set_holder_limit with the row's own values put the
-- counters' copy right after such an UPDATE (the call is then not a no-op)
UPDATE ticket_ext.items SET holder_limit = 9 WHERE item_id = 1040;
SELECT ticket_ext.set_holder_limit(1040, 9) AS previous;
SELECT item_id, ok FROM ticket_ext.verify(1040);
SELECT ticket_ext.set_holder_limit(1040, NULL) AS previous;
SELECT ticket_ext.create_item(1060, 10, 'odd array');
SELECT ticket_ext.set_pools(1060, '[0:1]={1050,1001}');
SELECT pool_ids, array_lower(pool_ids, 1) FROM ticket_ext.items WHERE item_id = 1060;
UPDATE ticket_ext.items SET pool_ids = '{1001}' WHERE item_id = 1060;
SELECT item_id, ok FROM ticket_ext.verify(1060);
SELECT ticket_ext.set_pools(1060, '{1001}');
SELECT item_id, ok FROM ticket_ext.verify(1060);
-- an empty holder is no customer on a limited item
SELECT ticket_ext.set_holder_limit(1060, 2);
SELECT ticket_reserve(1060, 1, '');

-- the SQLSTATE of each error above (docs/errors.md)
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT ticket_ext.set_holder_limit(1040, 1);
SELECT pg_temp.err('SELECT ticket_reserve(1040, 1, ''fay'')') AS holder_limit;
SELECT pg_temp.err('SELECT ticket_reserve(1040, 1)') AS holder_required;
SELECT ticket_ext.pause(1001);
SELECT pg_temp.err('SELECT ticket_reserve(1011, 1, ''lee'')') AS pool_paused;
SELECT ticket_ext.resume(1001);
SELECT pg_temp.err('SELECT ticket_ext.set_pools(1011, NULL)') AS null_pools;
SELECT pg_temp.err('SELECT ticket_ext.set_pools(1011, ''{1011}'')') AS itself;
SELECT pg_temp.err('SELECT ticket_ext.set_pools(1011, ''{1,2,3,4,5,6,7,8,9}'')') AS too_many;
SELECT pg_temp.err('SELECT ticket_ext.set_pools(1011, ''{999999}'')') AS unknown_pool;
SELECT pg_temp.err('SELECT ticket_ext.set_pools(1001, ''{1020}'')') AS pool_of_pools;
SELECT pg_temp.err('SELECT ticket_ext.set_pools(1011, ''{1002}'')') AS active_holds;
SELECT pg_temp.err('SELECT ticket_ext.set_holder_limit(1040, 0)') AS bad_limit;
