-- bench/pools_bench.sh: the same through pools_limited's TK008-catching
-- wrapper (its subtransaction's cost, nothing else)
\set h random(1, 50000)
SELECT bench_reserve(1, 1, 'u' || :h);
