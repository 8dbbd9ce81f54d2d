-- bench/pools_bench.sh: item 2 takes from pools 11 and 12, limit 4 per
-- holder on the item and on pool 11; at the limit: NULL (TK008 caught)
\set h random(1, 50000)
SELECT bench_reserve(2, 1, 'u' || :h);
