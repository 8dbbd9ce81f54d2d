-- ticket_ext refuses to run in parallel mode (a PARALLEL SAFE wrapper can
-- smuggle its functions into a parallel worker): a clear error, and no
-- transaction left counted as open on the item.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ticket_ext;
RESET client_min_messages;
SELECT ticket_ext.create_item(401, 1, 'parallel');
SELECT ticket_reserve(401) IS NOT NULL AS took_the_last;

CREATE FUNCTION try_buy(bigint) RETURNS bigint LANGUAGE sql PARALLEL SAFE
  AS 'SELECT ticket_reserve($1)';
CREATE FUNCTION peek(bigint) RETURNS bigint LANGUAGE sql PARALLEL SAFE
  AS 'SELECT ticket_available($1)';
CREATE FUNCTION give_back(bigint) RETURNS void LANGUAGE sql PARALLEL SAFE
  AS 'SELECT ticket_release($1)';
SET force_parallel_mode = on;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
\set VERBOSITY default
SELECT try_buy(401);
SELECT peek(401);
SELECT give_back(1);
\set VERBOSITY terse
RESET force_parallel_mode;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;

-- nothing is left open on the item; resync and sales work
SELECT in_flight, ok FROM ticket_ext.verify(401);
SELECT item_id, corrected FROM ticket_ext.resync(401);
SELECT try_buy(401) IS NULL AS sold_out_outside_parallel_mode;
