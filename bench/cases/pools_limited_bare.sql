-- bench/pools_bench.sh: item 6 takes from pools 17 and 18, limit 20 per
-- holder on the item and on pool 17 (checked on every call, never reached
-- in a 10 s run: no TK008, so no wrapper): what the checks cost a sale
\set h random(1, 50000)
SELECT ticket_reserve(6, 1, 'u' || :h);
