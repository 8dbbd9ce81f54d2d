-- SKIP LOCKED with a random starting seat: claimers spread out instead of
-- queueing at the first free row (seats are then assigned at random)
\set start random(1, 1500000)
UPDATE seats SET sold = true, sold_at = now()
 WHERE seat_id = (SELECT seat_id FROM seats
                   WHERE item_id = 1 AND NOT sold AND seat_id >= :start
                   ORDER BY seat_id LIMIT 1 FOR UPDATE SKIP LOCKED);
