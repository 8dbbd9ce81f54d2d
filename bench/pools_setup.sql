-- bench/pools_bench.sh: one hot item three ways, in one cluster.
CREATE EXTENSION IF NOT EXISTS ticket_ext;

-- 1. plain: item 1, no pools, no limit
SELECT ticket_ext.create_item(1, 1000000000000, 'plain');
-- 2. pools + limit: item 2 draws on pools 11 and 12; a holder may have 4
--    on the item, and 4 on pool 11 (over every item drawing on it), so
--    both kinds of limit are checked at every reservation
SELECT ticket_ext.create_item(11, 1000000000000, 'pool A');
SELECT ticket_ext.create_item(12, 1000000000000, 'pool B');
SELECT ticket_ext.create_item(2, 1000000000000, 'pools + limit');
SELECT ticket_ext.set_pools(2, '{11,12}');
SELECT ticket_ext.set_holder_limit(2, 4);
SELECT ticket_ext.set_holder_limit(11, 4);
-- the two halves apart: item 4 takes from pools 15 and 16 (no limit),
-- item 5 has a limit of 4 (no pools)
SELECT ticket_ext.create_item(15, 1000000000000, 'pool C');
SELECT ticket_ext.create_item(16, 1000000000000, 'pool D');
SELECT ticket_ext.create_item(4, 1000000000000, 'pools only');
SELECT ticket_ext.set_pools(4, '{15,16}');
SELECT ticket_ext.create_item(5, 1000000000000, 'limit only');
SELECT ticket_ext.set_holder_limit(5, 4);
-- the cost on a sale that passes its checks: item 6 takes from pools 17
-- and 18, limit 20 on the item and on pool 17 (a holder never gets near
-- it in a run, so no TK008 and no wrapper: limited_bare)
SELECT ticket_ext.create_item(17, 1000000000000, 'pool E');
SELECT ticket_ext.create_item(18, 1000000000000, 'pool F');
SELECT ticket_ext.create_item(6, 1000000000000, 'pools + limit, never reached');
SELECT ticket_ext.set_pools(6, '{17,18}');
SELECT ticket_ext.set_holder_limit(6, 20);
SELECT ticket_ext.set_holder_limit(17, 20);

-- A holder at its limit gets TK008, an error, which would abort the
-- pgbench client: the app's answer "no more for you" becomes NULL here.
-- The EXCEPTION block costs a subtransaction per call, measured on its
-- own by the plain_wrapped case.  (ticket_reserve raises TK008 before it
-- takes anything, so there is nothing to give back.)
CREATE FUNCTION bench_reserve(item bigint, q integer, who text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN ticket_reserve(item, q, who);
EXCEPTION WHEN SQLSTATE 'TK008' THEN
  RETURN NULL;
END $$;

-- 3. the plain-SQL peer, the pretix way, on tables of its own: quotas
--    (the item's own capacity and two pools), limits on quotas (a holder's
--    qty over the quota's items), transaction advisory locks on the
--    customer and on every quota of the item, counts, insert.
CREATE TABLE peer_quotas (
  quota_id     bigint PRIMARY KEY,
  capacity     bigint NOT NULL,
  holder_limit integer               -- NULL: no per-customer limit
);
CREATE TABLE peer_item_quotas (
  item_id  bigint NOT NULL,
  quota_id bigint NOT NULL REFERENCES peer_quotas,
  PRIMARY KEY (item_id, quota_id)
);
CREATE INDEX peer_item_quotas_quota_idx ON peer_item_quotas (quota_id, item_id);
CREATE SEQUENCE peer_holds_seq CACHE 32;
CREATE TABLE peer_holds (
  hold_id    bigint PRIMARY KEY DEFAULT nextval('peer_holds_seq'),
  item_id    bigint NOT NULL,
  qty        integer NOT NULL,
  holder     text NOT NULL,
  status     text NOT NULL DEFAULT 'held',
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
-- what a quota has taken (index-only sum per item) and what a customer has
CREATE INDEX peer_holds_item_idx ON peer_holds (item_id) INCLUDE (qty)
  WHERE status IN ('held', 'sold');
CREATE INDEX peer_holds_holder_idx ON peer_holds (holder) INCLUDE (item_id, qty)
  WHERE status IN ('held', 'sold');

-- item 3: its own quota 3 (limit 4) and pools 13 (limit 4) and 14, as item 2
INSERT INTO peer_quotas VALUES (3, 1000000000000, 4), (13, 1000000000000, 4), (14, 1000000000000, NULL);
INSERT INTO peer_item_quotas VALUES (3, 3), (3, 13), (3, 14);

-- hold id, or NULL when sold out or over the customer's limit
CREATE FUNCTION peer_reserve(p_item bigint, p_qty integer, p_holder text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  q    record;
  v_id bigint;
BEGIN
  -- the customer first: a second tab of the same customer waits here,
  -- holding no quota; nobody else waits for this lock
  PERFORM pg_advisory_xact_lock(2, hashtext(p_holder));
  -- the cheap check first: what this customer has on each limited quota
  -- of the item (the customer's few rows, by index)
  FOR q IN
    SELECT pq.quota_id, pq.holder_limit,
           (SELECT coalesce(sum(h.qty), 0) FROM peer_holds h
             WHERE h.holder = p_holder AND h.status IN ('held', 'sold')
               AND h.item_id IN (SELECT m.item_id FROM peer_item_quotas m
                                  WHERE m.quota_id = pq.quota_id)) AS have
      FROM peer_item_quotas iq JOIN peer_quotas pq ON pq.quota_id = iq.quota_id
     WHERE iq.item_id = p_item AND pq.holder_limit IS NOT NULL
  LOOP
    IF q.have + p_qty > q.holder_limit THEN
      RETURN NULL;
    END IF;
  END LOOP;
  -- every quota of the item, in ascending order (no deadlock between
  -- items sharing pools); held to commit, so the next buyer's count sees
  -- this insert
  FOR q IN SELECT quota_id FROM peer_item_quotas WHERE item_id = p_item ORDER BY quota_id LOOP
    PERFORM pg_advisory_xact_lock(1, q.quota_id::integer);
  END LOOP;
  -- what each quota has taken, in this statement's snapshot (taken after
  -- the locks): each member item's active holds summed once (MATERIALIZED:
  -- not once per quota), by an index-only scan (no sort, no hash of the rows)
  FOR q IN
    WITH members AS (
      SELECT DISTINCT m.item_id
        FROM peer_item_quotas iq JOIN peer_item_quotas m ON m.quota_id = iq.quota_id
       WHERE iq.item_id = p_item),
    taken AS MATERIALIZED (
      SELECT mi.item_id,
             (SELECT coalesce(sum(h.qty), 0) FROM peer_holds h
               WHERE h.item_id = mi.item_id AND h.status IN ('held', 'sold')) AS qty
        FROM members mi)
    SELECT iq.quota_id, pq.capacity, sum(t.qty) AS taken
      FROM peer_item_quotas iq
      JOIN peer_quotas pq ON pq.quota_id = iq.quota_id
      JOIN peer_item_quotas m ON m.quota_id = iq.quota_id
      JOIN taken t ON t.item_id = m.item_id
     WHERE iq.item_id = p_item
     GROUP BY iq.quota_id, pq.capacity
  LOOP
    IF q.taken + p_qty > q.capacity THEN
      RETURN NULL;
    END IF;
  END LOOP;
  INSERT INTO peer_holds (item_id, qty, holder, expires_at)
  VALUES (p_item, p_qty, p_holder, now() + interval '10 minutes')
  RETURNING hold_id INTO v_id;
  RETURN v_id;
END $$;
