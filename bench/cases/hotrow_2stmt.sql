BEGIN;
UPDATE inventory SET sold = sold + 1 WHERE item_id = 1 AND sold < capacity;
INSERT INTO sales (item_id, qty, holder) VALUES (1, 1, 'bench');
COMMIT;
