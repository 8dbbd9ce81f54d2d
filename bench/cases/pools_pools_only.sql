-- bench/pools_bench.sh: item 4 takes from pools 15 and 16, no limit
\set h random(1, 50000)
SELECT ticket_reserve(4, 1, 'u' || :h);
