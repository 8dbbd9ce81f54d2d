-- Admin API: capacity changes, pause/resume, verify, resync.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
SELECT ticket_ext.create_item(20, 10, 'admin show');
SELECT ticket_reserve(20, 4) IS NOT NULL AS reserved;

-- raising capacity: visible after commit, not before
BEGIN;
SELECT ticket_ext.set_capacity(20, 15) AS previous;
SELECT ticket_available(20) AS before_commit;
COMMIT;
SELECT ticket_available(20) AS after_commit;

-- a raise that rolls back changes nothing
BEGIN;
SELECT ticket_ext.set_capacity(20, 100);
ROLLBACK;
SELECT ticket_available(20), (SELECT capacity FROM ticket_ext.items WHERE item_id = 20);

-- lowering capacity: takes effect at once
BEGIN;
SELECT ticket_ext.set_capacity(20, 6);
SELECT ticket_available(20) AS during;
ROLLBACK;
SELECT ticket_available(20) AS after_rollback;
SELECT ticket_ext.set_capacity(20, 6);
SELECT ticket_available(20);

-- lowering below what is taken stops sales and cancels nothing
SELECT ticket_ext.set_capacity(20, 2);
SELECT ticket_available(20), ticket_reserve(20) IS NULL AS sold_out;
SELECT count(*), sum(qty) FROM ticket_ext.holds WHERE item_id = 20 AND status = 'held';
SELECT item_id, capacity, counter_capacity, counter_taken, table_taken, ok FROM ticket_ext.verify(20);
-- raising again reopens sales, counting what is taken
SELECT ticket_ext.set_capacity(20, 7);
SELECT ticket_available(20);

-- capacity changes inside savepoints
BEGIN;
SAVEPOINT a;
SELECT ticket_ext.set_capacity(20, 5);
ROLLBACK TO SAVEPOINT a;
SELECT ticket_available(20) AS restored;
SAVEPOINT b;
SELECT ticket_ext.set_capacity(20, 9);
RELEASE SAVEPOINT b;
COMMIT;
SELECT ticket_available(20) AS after_savepoint_commit;

-- pause takes effect at once; rollback undoes it
BEGIN;
SELECT ticket_ext.pause(20);
SELECT paused FROM ticket_ext.availability WHERE item_id = 20;
ROLLBACK;
SELECT ticket_reserve(20) IS NOT NULL AS sells;
SELECT ticket_ext.pause(20);
SELECT ticket_ext.pause(20);  -- pausing twice is harmless
-- resume takes effect at commit
BEGIN;
SELECT ticket_ext.resume(20);
ROLLBACK;
SELECT item_id, paused, ok FROM ticket_ext.verify(20);
SELECT ticket_ext.resume(20);
SELECT ticket_reserve(20) IS NOT NULL AS sells_again;

-- verify and resync over all items
SELECT ticket_ext.create_item(21, 0, 'empty');
SELECT ticket_reserve(21) IS NULL AS nothing_to_sell;
SELECT item_id, capacity, counter_taken, table_taken, in_flight, paused, ok
  FROM ticket_ext.verify() WHERE item_id IN (20, 21) ORDER BY item_id;
SELECT * FROM ticket_ext.resync() WHERE item_id IN (20, 21) ORDER BY item_id;

-- resync repairs a counter after someone wrote the table directly
UPDATE ticket_ext.holds SET status = 'released', ended_at = now() WHERE item_id = 20 AND status = 'held'
  AND hold_id = (SELECT min(hold_id) FROM ticket_ext.holds WHERE item_id = 20 AND status = 'held');
SELECT item_id, counter_taken, table_taken, ok FROM ticket_ext.verify(20);
SELECT * FROM ticket_ext.resync(20);
SELECT item_id, counter_taken, table_taken, ok FROM ticket_ext.verify(20);

-- expire_holds() expires due holds now (the worker does it by itself too)
SELECT ticket_reserve(21, 1) IS NULL AS still_nothing;
SELECT ticket_ext.set_capacity(21, 3);
SELECT ticket_reserve(21, 2, hold_for => '10 ms') IS NOT NULL AS short_hold;
SELECT pg_sleep(0.05);
SELECT ticket_ext.expire_holds() >= 0 AS ran;
SELECT status FROM ticket_ext.holds WHERE item_id = 21;
SELECT ticket_available(21);
