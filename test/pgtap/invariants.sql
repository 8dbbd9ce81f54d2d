-- Invariants over a long random walk of committed and aborted operations
-- (reserve, confirm, release, savepoint rollbacks, capacity changes,
-- pauses, expiries), checked after every step:
--   * the counters equal the tables (verify ok);
--   * available = max(capacity - taken, 0);
--   * a reservation never succeeds beyond capacity.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
SELECT plan(7);

CREATE TABLE tk_violations (step int, what text);
SELECT ticket_ext.create_item(600, 40, 'random walk');
SELECT setseed(0.4242);

CREATE PROCEDURE tk_random_walk(steps int) LANGUAGE plpgsql AS $$
DECLARE
  op float8;
  h bigint;
  cap bigint;
  taken bigint;
  before_taken bigint;
  v record;
BEGIN
  FOR i IN 1..steps LOOP
    op := random();
    SELECT capacity INTO cap FROM ticket_ext.items WHERE item_id = 600;
    SELECT coalesce(sum(qty), 0) INTO before_taken
      FROM ticket_ext.holds WHERE item_id = 600 AND status IN ('held', 'sold');
    IF op < 0.35 THEN
      h := ticket_reserve(600, 1 + (random() * 3)::int, 'walk',
                          CASE WHEN random() < 0.2 THEN interval '1 ms' END);
      COMMIT;
      IF h IS NOT NULL AND before_taken >= cap THEN
        INSERT INTO tk_violations VALUES (i, 'reserved beyond capacity');
      END IF;
    ELSIF op < 0.45 THEN
      -- reserve, then roll the transaction back
      PERFORM ticket_reserve(600, 2);
      ROLLBACK;
    ELSIF op < 0.55 THEN
      -- reserve inside a savepoint that fails
      BEGIN
        PERFORM ticket_reserve(600, 1);
        PERFORM ticket_reserve(600, 1);
        RAISE EXCEPTION 'roll back to savepoint';
      EXCEPTION WHEN raise_exception THEN NULL;
      END;
      COMMIT;
    ELSIF op < 0.68 THEN
      SELECT hold_id INTO h FROM ticket_ext.holds
       WHERE item_id = 600 AND status = 'held' AND expires_at > clock_timestamp()
       ORDER BY random() LIMIT 1;
      BEGIN
        IF h IS NOT NULL THEN PERFORM ticket_confirm(h); END IF;
      EXCEPTION WHEN SQLSTATE 'TK003' THEN
        NULL;  -- a 1 ms hold ran out meanwhile: that is the expected error
      END;
      COMMIT;
    ELSIF op < 0.80 THEN
      SELECT hold_id INTO h FROM ticket_ext.holds
       WHERE item_id = 600 AND status IN ('held', 'sold') ORDER BY random() LIMIT 1;
      IF h IS NOT NULL THEN PERFORM ticket_release(h); END IF;
      IF random() < 0.3 THEN ROLLBACK; ELSE COMMIT; END IF;
    ELSIF op < 0.88 THEN
      PERFORM ticket_ext.set_capacity(600, 20 + (random() * 40)::int);
      IF random() < 0.3 THEN ROLLBACK; ELSE COMMIT; END IF;
    ELSIF op < 0.93 THEN
      PERFORM ticket_ext.pause(600);
      IF random() < 0.5 THEN ROLLBACK; ELSE COMMIT; END IF;
      PERFORM ticket_ext.resume(600);
      COMMIT;
    ELSE
      PERFORM ticket_ext.expire_holds();
      COMMIT;
    END IF;

    SELECT * INTO v FROM ticket_ext.verify(600);
    IF NOT v.ok THEN
      INSERT INTO tk_violations VALUES (i, format('verify: %s', row_to_json(v)));
    END IF;
    IF ticket_available(600) <> greatest(v.capacity - v.table_taken, 0) THEN
      INSERT INTO tk_violations VALUES (i, 'available <> capacity - taken');
    END IF;
    COMMIT;
  END LOOP;
END $$;

CALL tk_random_walk(3000);

SELECT is((SELECT count(*) FROM tk_violations WHERE what = 'reserved beyond capacity'), 0::bigint,
          'no reservation succeeded beyond capacity');
SELECT is((SELECT count(*) FROM tk_violations WHERE what LIKE 'verify%'), 0::bigint,
          'counters equalled the tables after every step');
SELECT is((SELECT count(*) FROM tk_violations WHERE what LIKE 'available%'), 0::bigint,
          'available = capacity - taken after every step');
-- make sure an expiry happened, whatever the walk's timing did
DO $$ BEGIN
  PERFORM ticket_ext.set_capacity(600, 1000);
END $$;
DO $$ BEGIN
  PERFORM ticket_reserve(600, 1, 'last', '1 ms');
END $$;
DO $$ BEGIN
  PERFORM pg_sleep(0.02);
  PERFORM ticket_ext.expire_holds();
END $$;
SELECT cmp_ok((SELECT count(DISTINCT status) FROM ticket_ext.holds WHERE item_id = 600), '=', 4::bigint,
              'the walk produced held, sold, released and expired holds');
SELECT cmp_ok((SELECT count(*) FROM ticket_ext.holds WHERE item_id = 600), '>', 200::bigint,
              'the walk committed hundreds of reservations');

-- the counters survive being thrown away: resync from the tables is a no-op
SELECT is((SELECT corrected FROM ticket_ext.resync(600)), false, 'resync finds nothing to correct');
SELECT is((SELECT ok FROM ticket_ext.verify(600)), true, 'verify ok at the end');

SELECT * FROM finish();
DROP PROCEDURE tk_random_walk(int);
DROP TABLE tk_violations;
