-- bench/pools_bench.sh: ticket_reserve on item 1 (no pools, no limit)
\set h random(1, 50000)
SELECT ticket_reserve(1, 1, 'u' || :h);
