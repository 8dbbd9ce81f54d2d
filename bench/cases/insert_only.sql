INSERT INTO sales (item_id, qty, holder) VALUES (1, 1, 'bench');
