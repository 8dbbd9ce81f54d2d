-- Tables of the benchmark's peers, next to ticket_ext's own, in one cluster.
CREATE EXTENSION IF NOT EXISTS ticket_ext;
SELECT ticket_ext.create_item(1, 1000000000000, 'bench') WHERE NOT EXISTS
  (SELECT 1 FROM ticket_ext.items WHERE item_id = 1);

-- hot row: one inventory row per item, a sale row per ticket
CREATE TABLE inventory (item_id bigint PRIMARY KEY, capacity bigint NOT NULL, sold bigint NOT NULL);
INSERT INTO inventory VALUES (1, 1000000000000, 0);
-- one durable row per sale: the INSERT-only ceiling writes the same shape
CREATE TABLE sales (
  sale_id bigserial PRIMARY KEY,
  item_id bigint NOT NULL,
  qty integer NOT NULL,
  holder text,
  status text NOT NULL DEFAULT 'held',
  created_at timestamptz NOT NULL DEFAULT now()
);
-- SKIP LOCKED: one row per seat, claimed by the first free one
CREATE TABLE seats (
  seat_id bigint PRIMARY KEY,
  item_id bigint NOT NULL,
  sold boolean NOT NULL DEFAULT false,
  sold_at timestamptz
);
CREATE INDEX seats_free_idx ON seats (item_id, seat_id) WHERE NOT sold;
