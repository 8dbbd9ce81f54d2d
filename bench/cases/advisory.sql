WITH s AS (UPDATE inventory SET sold = sold + 1
            WHERE item_id = 1 AND sold < capacity AND pg_try_advisory_xact_lock(1)
            RETURNING item_id)
INSERT INTO sales (item_id, qty, holder) SELECT item_id, 1, 'bench' FROM s;
