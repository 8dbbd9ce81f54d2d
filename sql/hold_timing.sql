-- When a hold runs out: hold_for counts from the moment the tickets are
-- taken (clock time), not from the start of the transaction; a hold whose
-- transaction stays open past its expiry still expires after COMMIT.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;

-- wait (up to 10 s) until a hold has left the 'held' state
CREATE FUNCTION wait_not_held(h bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  FOR i IN 1..100 LOOP
    SELECT status INTO s FROM ticket_ext.holds WHERE hold_id = h;
    EXIT WHEN s <> 'held';
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN s;
END $$;

SELECT ticket_ext.create_item(701, 10, 'hold timing');
-- a hold taken late in a long transaction lasts its full hold_for
BEGIN;
SELECT pg_sleep(1.2);
SELECT ticket_confirm(ticket_reserve(701, 1, 'late', '1 second')) AS confirmed_in_time;
COMMIT;
SELECT status, expires_at - created_at AS hold_length,
       created_at > now() - interval '1 minute' AS created_recently
  FROM ticket_ext.holds WHERE holder = 'late';
-- the same with an idempotency key (a different code path)
BEGIN;
SELECT pg_sleep(1.2);
SELECT ticket_confirm(ticket_reserve(701, 1, 'late-key', '1 second', 'k-701')) AS confirmed_in_time;
COMMIT;

-- hold_for is a duration (a day is 24 hours, a month 30 days): the limit
-- ticket_ext.max_hold_ttl (1 day here) is checked on what the hold lasts,
-- so months offset by days cannot make a hold of years
SELECT ticket_reserve(701, 1, 'months', '1200 months -35999 days') IS NOT NULL AS one_day_in_months;
SELECT ticket_reserve(701, 1, 'huge', '3000000 months -89999999 days') IS NOT NULL AS one_day_again;
SELECT holder, expires_at - created_at AS lasts FROM ticket_ext.holds
 WHERE holder IN ('months', 'huge') ORDER BY holder;
SELECT ticket_reserve(701, 1, 'too long', '2 months -59 days 00:00:01');
SELECT ticket_reserve(701, 1, 'too long', '1 month -30 days 00:00:01') IS NOT NULL AS one_second;
SELECT ticket_reserve(701, 1, 'negative', '1 month -31 days');

-- a transaction that stays open longer than its hold: the hold is overdue
-- when it commits, and the worker (ticket_ext.expiry_interval = 200ms here)
-- expires it soon after
SELECT ticket_ext.create_item(101, 10, 'slow transaction');
BEGIN;
SELECT ticket_reserve(101, 2, 'slow', '1 second') AS slow \gset
SELECT pg_sleep(2);
COMMIT;
SELECT wait_not_held(:slow) AS slow_hold;
-- even a hold of one microsecond in a transaction that lasts a second
BEGIN;
SELECT ticket_reserve(101, 3, 'tiny', '1 microsecond') AS tiny \gset
SELECT pg_sleep(1);
COMMIT;
SELECT wait_not_held(:tiny) AS tiny_hold;
SELECT ticket_available(101) AS all_back;
SELECT item_id, table_taken, in_flight, ok FROM ticket_ext.verify(101);
-- nothing held past its expiry
SELECT count(*) AS overdue_held FROM ticket_ext.holds
 WHERE status = 'held' AND expires_at < now() - interval '3 seconds';
