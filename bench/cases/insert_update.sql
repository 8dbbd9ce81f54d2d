BEGIN;
INSERT INTO sales (item_id, qty, holder) VALUES (1, 1, 'bench') RETURNING sale_id AS s \gset
UPDATE sales SET status = 'sold' WHERE sale_id = :s;
COMMIT;
