-- bench/pools_bench.sh: the plain-SQL peer (advisory locks, counts, insert)
\set h random(1, 50000)
SELECT peer_reserve(3, 1, 'u' || :h);
