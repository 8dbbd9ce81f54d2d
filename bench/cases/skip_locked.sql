-- claim the first free seat (the common queue pattern)
UPDATE seats SET sold = true, sold_at = now()
 WHERE seat_id = (SELECT seat_id FROM seats WHERE item_id = 1 AND NOT sold
                   LIMIT 1 FOR UPDATE SKIP LOCKED);
