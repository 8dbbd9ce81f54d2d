WITH s AS (UPDATE inventory SET sold = sold + 1
            WHERE item_id = 1 AND sold < capacity RETURNING item_id)
INSERT INTO sales (item_id, qty, holder) SELECT item_id, 1, 'bench' FROM s;
