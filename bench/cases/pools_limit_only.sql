-- bench/pools_bench.sh: item 5 has a holder limit of 4, no pools; at the
-- limit: NULL (TK008 caught)
\set h random(1, 50000)
SELECT bench_reserve(5, 1, 'u' || :h);
