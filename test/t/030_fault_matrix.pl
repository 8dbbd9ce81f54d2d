# The fault matrix: one cluster streaming to a real Redis and a real
# kinesalite while a reserve/confirm/release/abort/savepoint load runs, and
# faults injected one scenario after the other.  After each scenario, once
# quiet: nothing oversold, counters == tables, every reservation a client
# saw commit still there, and every committed change in Redis exactly once
# and in Kinesis under exactly one event id (Kinesis may repeat a record;
# consumers drop repeats by event_id).  And after every scenario, each
# sink has converged: every hold's current state is what a consumer of
# the sink believes.  The last scenarios change the WAL history (every
# sink down past max_slot_wal_keep_size, a restore from a base backup, a
# promoted standby): there the sinks get a snapshot, and convergence is
# what is checked.  Some items draw on pools (one pool is itself the scarce
# item, sold directly too) and a holder limit is set on a pool: after every
# scenario no item or pool is oversold by the rows, each counter equals
# the rows' own sum (a hold counts on its item and each of its pools),
# ticket_available() is the least room over an item and its pools, and no
# holder is over the limit.  Prints the matrix as a table.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use Time::HiRes qw(usleep time);
use TicketTest;
use RedisTest;
use KinesisTest;

my $redis = RedisTest->new;
my $kin = KinesisTest->new(slow_proxy => 300);
$kin->create_stream('matrix', 2);
my $node = new_ticket_node('matrix', allows_streaming => 'logical',
	conf => "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.kinesis_stream = 'matrix'\n"
	  . "ticket_ext.kinesis_endpoint = '" . $kin->endpoint . "'\n"
	  . "ticket_ext.aws_access_key_id = 'AKIDMATRIX'\n"
	  . "ticket_ext.aws_secret_access_key = 'matrix-secret'\n"
	  . "ticket_ext.stream_backoff_min = 20ms\n"
	  . "ticket_ext.stream_backoff_max = 1s\n"
	  . "ticket_ext.stream_queue_max = 5000\n"
	  # holds without hold_for outlive the matrix (over 10 minutes): one
	  # expiring while a check reads the sinks and then the tables would
	  # look unconverged (expiry has its own scenario and 1-second holds)
	  . "ticket_ext.hold_ttl = '2h'\n"
	  # kinesalite enforces no shard limits: no pacing here (test/t/020
	  # paces against a proxy that enforces AWS's)
	  . "ticket_ext.kinesis_shard_records_per_second = 0\n");
ok(stream_worker_pid($node), 'worker up with Redis and Kinesis');

# items 1-4 roomy, 5 for mass expiry, 6 scarce (sold out most of the time:
# every sale there is at the capacity boundary), 9 for acknowledged sales;
# pools: 3 and 4 also take from 7 (roomy, a limit of 4 per holder over 3, 4
# and 7), 8 takes from the scarce 6 (so a take can fail at the pool after
# the item's succeeded, and be undone)
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(i, 200000, 'roomy ' || i) FROM generate_series(1, 4) i;
	SELECT ticket_ext.create_item(5, 5000, 'mass expiry');
	SELECT ticket_ext.create_item(6, 1500, 'scarce');
	SELECT ticket_ext.create_item(7, 200000, 'pool of 3 and 4');
	SELECT ticket_ext.create_item(8, 100000, 'draws on the scarce 6');
	SELECT ticket_ext.create_item(9, 100000000, 'acknowledged');
	-- each in a transaction of its own (psql runs these one by one)
	SELECT ticket_ext.set_pools(3, '{7}');
	SELECT ticket_ext.set_pools(4, '{7}');
	SELECT ticket_ext.set_pools(8, '{6}');
	SELECT ticket_ext.set_holder_limit(7, 4);
	CREATE SEQUENCE matrix_tk008;
	-- paused items raise TK001 and a holder over the limit TK008, either
	-- of which would end a pgbench client; the limited items' buyers are
	-- many unless named (the 'limited' script names a few)
	CREATE FUNCTION try_reserve(i bigint, q int, h interval DEFAULT NULL, who text DEFAULT NULL)
	RETURNS bigint LANGUAGE plpgsql AS $$
	BEGIN
		RETURN ticket_reserve(i, q, coalesce(who, CASE WHEN i IN (3, 4, 7)
			THEN 'm' || (random() * 1000000)::int ELSE 'matrix' END), h);
	EXCEPTION WHEN SQLSTATE 'TK001' THEN
		RETURN NULL;
	WHEN SQLSTATE 'TK008' THEN
		PERFORM nextval('matrix_tk008');
		RETURN NULL;
	END $$;
	-- what the rows say, computed here: a hold counts on its item and on
	-- each of the item's pools
	CREATE VIEW matrix_draws AS
	SELECT d.item_id, h.holder, h.qty
	  FROM ticket_ext.holds h
	  JOIN ticket_ext.items m ON m.item_id = h.item_id
	 CROSS JOIN LATERAL unnest(m.item_id || m.pool_ids) AS d(item_id)
	 WHERE h.ended_at IS NULL AND h.status IN ('held', 'sold');
	CREATE VIEW matrix_truth AS
	WITH taken AS (SELECT item_id, sum(qty) AS taken FROM matrix_draws GROUP BY item_id),
	t AS MATERIALIZED (
		SELECT i.item_id, i.capacity, i.pool_ids, coalesce(k.taken, 0)::bigint AS taken
		  FROM ticket_ext.items i LEFT JOIN taken k USING (item_id))
	SELECT t.*, (SELECT min(greatest(p.capacity - p.taken, 0)) FROM t p
	              WHERE p.item_id = t.item_id OR p.item_id = ANY (t.pool_ids)) AS room
	  FROM t;
	CREATE VIEW matrix_over_limit AS
	SELECT d.item_id, d.holder, sum(d.qty) AS has, i.holder_limit
	  FROM matrix_draws d JOIN ticket_ext.items i ON i.item_id = d.item_id
	 WHERE i.holder_limit IS NOT NULL
	 GROUP BY d.item_id, d.holder, i.holder_limit
	HAVING sum(d.qty) > i.holder_limit;
});
is(q1(q{SELECT string_agg(item_id || ':' || pool_ids::text || ':' || coalesce(holder_limit, 0), ' ' ORDER BY item_id)
          FROM ticket_ext.items WHERE pool_ids <> '{}' OR holder_limit IS NOT NULL}),
	'3:{7}:0 4:{7}:0 7:{}:4 8:{6}:0', 'pools and the holder limit set');

my $pick = "\\set i random(1, 4)\n\\set q random(1, 3)\n";
# a few holders on the limited pool's items, with 1-second holds: the
# limit is hit (TK008) and freed again all along
my $few = "\\set p random(3, 4)\n\\set b random(1, 12)\n\\set q random(1, 3)\n";
my @mix = pgbench_scripts(
	reserve => [ 25, "${pick}SELECT try_reserve(:i, :q);\n" ],
	# the scarce item, sold directly and through item 8 drawing on it
	scarce => [ 15, "\\set s random(0, 1)\nSELECT try_reserve(6 + 2 * :s, 1);\n" ],
	limited => [ 10, "${few}SELECT try_reserve(:p, :q, '1 second', 'b' || :b);\n"
		  . "SELECT ticket_release(h) FROM (SELECT try_reserve(7, 1, '1 second', 'b' || :b) AS h) s\n"
		  . " WHERE h IS NOT NULL;\n" ],
	confirm => [ 15, "${pick}SELECT ticket_confirm(try_reserve(:i, :q));\n" ],
	release => [ 10, "${pick}SELECT ticket_release(try_reserve(:i, :q));\n" ],
	short => [ 10, "${pick}SELECT try_reserve(:i, :q, '1 second');\n" ],
	abort => [ 15, "${pick}BEGIN;\nSELECT try_reserve(:i, :q);\nROLLBACK;\n" ],
	savepoint => [ 10, "${pick}BEGIN;\nSELECT try_reserve(:i, 1);\nSAVEPOINT s;\n"
		  . "SELECT try_reserve(8, :q);\nROLLBACK TO s;\nSELECT try_reserve(:i, :q);\nCOMMIT;\n" ]);
# half of all transactions abort, whole or to a savepoint
my @aborty = pgbench_scripts(
	commit => [ 50, "${pick}SELECT ticket_confirm(try_reserve(:i, :q));\n" ],
	abort => [ 30, "${pick}BEGIN;\nSELECT try_reserve(:i, :q);\nSELECT try_reserve(8, 1);\nROLLBACK;\n" ],
	savepoint => [ 20, "${pick}BEGIN;\nSAVEPOINT a;\nSELECT try_reserve(6, :q);\nROLLBACK TO a;\n"
		  . "SELECT try_reserve(:i, 1);\nSAVEPOINT b;\nSELECT ticket_release(try_reserve(:i, 1));\n"
		  . "RELEASE b;\nCOMMIT;\n" ]);

my $tmp = $PostgreSQL::Test::Utils::tmp_check;

# pgbench in the background; returns (handle, output ref)
sub load
{
	my ($secs, $clients, $tps, @scripts) = @_;
	my $out = '';
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $secs, '-R', $tps, @scripts,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>&', \$out);
	return ($h, \$out);
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# ---------------------------------------------------------------------------
# Checks after a scenario, once quiet.  Returns the table row's counts.
# what the sinks delivered so far: change -> times, Kinesis ids, read positions
my (%redis_seen, %kin_seen, %kin_ids, %kin_after, $redis_last);
my @rows;
# what a consumer of each sink believes (hold -> status), kept up to date
my (%r_state, %k_state, %k_last, %k_log);

# New Kinesis records, as a consumer applies them: per item, only events
# above the last (origin, event_id) it applied.
sub kinesis_apply
{
	my ($records) = @_;
	my @apply;
	for my $r (@$records)
	{
		my $e = $r->{data};
		next unless defined $e->{item_id};
		my ($l, $q) = split /-/, $e->{event_id};
		my $key = [ $e->{origin}, $l, $q ];
		my $last = $k_last{ $e->{item_id} };
		my $older = $last && !($key->[0] > $last->[0] || ($key->[0] == $last->[0]
			&& ($key->[1] > $last->[1] || ($key->[1] == $last->[1] && $key->[2] > $last->[2]))));
		$k_log{ $e->{hold_id} } .= "$e->{type} $e->{origin} $e->{event_id} $r->{shard}/$r->{seq}"
		  . ($older ? " skipped (last @$last)" : '') . '; '
		  if defined $e->{hold_id};
		next if $older;
		$k_last{ $e->{item_id} } = $key;
		push @apply, $e;
	}
	sink_state_apply(\%k_state, \@apply);
}

sub sinks_caught_up
{
	my $lsn = q1('SELECT pg_current_wal_lsn()');
	return $node->poll_query_until('postgres', qq{
		SELECT bool_and(slot_confirmed_lsn >= '$lsn' AND state = 'ok')
		  FROM ticket_ext.stream_status WHERE sink IN ('redis', 'kinesis')});
}

sub check_scenario
{
	my ($name, $runs, $ackfile, $holds_before, $redis_before, %o) = @_;
	ok(wait_for_server($node), "$name: server accepts queries");
	# quiet: the short holds have expired (no expiry commits while the
	# streams are read), no transaction open on any item
	ok($node->poll_query_until('postgres', q{
		SELECT NOT EXISTS (SELECT 1 FROM ticket_ext.holds
		                    WHERE status = 'held' AND expires_at < now() + interval '2 seconds')}),
		"$name: no hold left due for expiry");
	check_no_overdue($node, $name);
	ok($node->poll_query_until('postgres', q{
		SELECT bool_and(ok) FROM ticket_ext.verify()}), "$name: verify() ok once quiet")
	  or diag(q1('SELECT * FROM ticket_ext.verify()'));
	my $oversold = q1('SELECT count(*) FROM ticket_ext.verify() WHERE table_taken > capacity');
	my $mismatch = q1('SELECT count(*) FROM ticket_ext.verify() WHERE NOT ok');
	is($oversold, 0, "$name: no item oversold");
	is($mismatch, 0, "$name: counters == tables for every item");

	# pools and the holder limit, from the rows alone (matrix_truth); read
	# again if an expiry committed between verify's reading and ours
	my $pools_sql = q{
		SELECT t.item_id || ': capacity ' || t.capacity || ', rows say ' || t.taken || ' taken, counter '
		       || v.counter_taken || ', verify ' || coalesce(v.ok::text, 'unknown')
		       || ', available ' || ticket_available(t.item_id) || ' for a room of ' || t.room
		  FROM matrix_truth t JOIN ticket_ext.verify() v USING (item_id)
		 WHERE t.taken > t.capacity OR v.ok IS NOT TRUE OR v.counter_taken <> t.taken
		    OR v.counter_capacity <> t.capacity OR ticket_available(t.item_id) <> t.room};
	$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM ($pools_sql) bad");
	my @pools_bad = split /\n/, q1($pools_sql);
	is(scalar(@pools_bad), 0, "$name: items and pools: not oversold, counters == the rows' sums, "
		  . 'available = the least room over an item and its pools')
	  or diag(join("\n", @pools_bad));
	my $over_limit = q1('SELECT count(*) FROM matrix_over_limit');
	is($over_limit, 0, "$name: no holder over the limit")
	  or diag(q1(q{SELECT string_agg(holder || ' has ' || has || ' on ' || item_id, ', ') FROM matrix_over_limit}));
	$oversold += scalar(@pools_bad);

	my ($acked, $lost_acked) = $o{no_acks} ? (0, 0) : acked_holds($node, $ackfile);
	is($lost_acked, 0, "$name: every acknowledged reservation ($acked) is in the table")
	  if -e $ackfile && !$o{no_acks};

	ok(sinks_caught_up(), "$name: Redis and Kinesis caught up")
	  or diag(q1('SELECT * FROM ticket_ext.stream_status'));

	my $entries = $redis->entries('ticket_ext:events', $redis_last);
	$redis_last = $entries->[-1]{id} if @$entries;
	my $records = $kin->records('matrix', \%kin_after);
	$kin_after{ $_->{shard} } = $_->{seq} for @$records;

	# every sink converged on the tables
	sink_state_apply(\%r_state, $entries);
	kinesis_apply($records);
	my $diverged = check_converged($node, \%r_state, "$name, Redis");
	my $kdiverged = check_converged($node, \%k_state, "$name, Kinesis");
	if ($kdiverged)
	{
		my %active = map { split /\|/ } split /\n/,
		  q1("SELECT item_id || ':' || hold_id, status FROM ticket_ext.holds WHERE ended_at IS NULL");
		my @bad = grep { ($k_state{$_} // '') ne $active{$_} } sort keys %active;
		diag("Kinesis, hold $_: " . ($k_log{ (split /:/)[1] } // 'no record')) for @bad[0 .. 2];
	}
	$diverged += $kdiverged;

	my $holds = q1('SELECT count(*) FROM ticket_ext.holds') - $holds_before;
	my $events = ($redis->command('XLEN', 'ticket_ext:events') || 0) - $redis_before;
	if ($o{history})
	{
		push @rows, [ $name, $runs, $holds, $events, $oversold + $mismatch, $over_limit,
			$lost_acked + $diverged, 0, 0 ];
		return;
	}
	my $want = expected_hold_events($node);

	# Redis: every committed change exactly once (XADD ids dedupe repeats)
	my $rdup = 0;
	for my $e (@$entries)
	{
		next unless defined $e->{hold_id} && $e->{hold_id} ne '' && $e->{type} !~ /^snapshot/;
		$rdup++ if $redis_seen{"$e->{type} $e->{hold_id}"}++;
	}
	my $rmissing = grep { !$redis_seen{$_} } keys %$want;
	my $rextra = grep { !$want->{$_} } keys %redis_seen;

	# Kinesis: every committed change under exactly one event id
	my ($krepeats, $kdup, $kconflict) = (0, 0, 0);
	for my $r (@$records)
	{
		my $e = $r->{data};
		next if $e->{type} =~ /^snapshot/;
		my $change = "$e->{type} " . ($e->{hold_id} // '');
		if (defined $kin_ids{ $e->{event_id} })
		{
			$krepeats++;
			# a repeat must be the same change, never another one under its id
			$kconflict++ if $kin_ids{ $e->{event_id} } ne $change;
			next;
		}
		$kin_ids{ $e->{event_id} } = $change;
		next unless defined $e->{hold_id};
		$kdup++ if $kin_seen{"$e->{type} $e->{hold_id}"}++;
	}
	my $kmissing = grep { !$kin_seen{$_} } keys %$want;
	my $kextra = grep { !$want->{$_} } keys %kin_seen;

	is($rmissing + $kmissing, 0, "$name: no committed change missing (Redis $rmissing, Kinesis $kmissing)");
	is($rextra + $kextra, 0, "$name: nothing streamed that was not committed (Redis $rextra, Kinesis $kextra)");
	is($kconflict, 0, "$name: a repeated Kinesis record is always the same change");
	# repeats only from a call in flight when something died (at most a
	# call, 500 records, per run): a replay re-sending what Kinesis has
	# would show thousands
	cmp_ok($krepeats, '<=', 500 * $runs, "$name: Kinesis repeats ($krepeats) at most one call per run");
	is($rdup + $kdup, 0, "$name: no change twice (Redis $rdup, Kinesis under two ids $kdup)");

	push @rows, [ $name, $runs, $holds, $events, $oversold + $mismatch, $over_limit,
		$lost_acked + $rmissing + $kmissing + $diverged, $rdup + $kdup, $krepeats ];
}

# Run one scenario: $body->($ackfile) injects the faults.
sub scenario
{
	my ($name, $runs, $body, %o) = @_;
	# TICKET_MATRIX_ONLY=<regex>: run only the matching scenarios
	return if $ENV{TICKET_MATRIX_ONLY} && $name !~ /$ENV{TICKET_MATRIX_ONLY}/;
	my $holds_before = q1('SELECT count(*) FROM ticket_ext.holds');
	my $redis_before = $redis->command('XLEN', 'ticket_ext:events') || 0;
	my $ackfile = "$tmp/acked_" . ($name =~ s/\W+/_/gr);
	my $t0 = time;
	$body->($ackfile);
	note(sprintf('%s: faults done in %.1f s', $name, time - $t0));
	$t0 = time;
	check_scenario($name, $runs, $ackfile, $holds_before, $redis_before, %o);
	note(sprintf('%s: checked in %.1f s', $name, time - $t0));
}

# A burst with an acknowledging client; $fault->() runs 2 s into it.
sub burst_with
{
	my ($ackfile, $fault, %o) = @_;
	my ($h) = load($o{secs} // 30, 16, $o{tps} // 400, @{ $o{scripts} // \@mix });
	my $acker = start_ack_client($node, $ackfile, 9, 20_000);
	sleep 2;
	$fault->();
	kill 'KILL', $acker;
	waitpid $acker, 0;
	$h->kill_kill;
	$h->finish;
}

sub busy_backend
{
	return q1(q{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type = 'client backend' AND query LIKE '%reserve%'
		   AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1});
}

# --- kill -9 of random backends during a burst ------------------------------
# (runs kept to what fits make test's 20 minutes; `make soak` goes longer)
scenario('kill -9 a backend', 3, sub {
	my ($ack) = @_;
	for my $run (1 .. 4)
	{
		burst_with($ack, sub {
			my $victim = busy_backend();
			kill 'KILL', $victim if $victim =~ /^\d+$/;
			usleep(300_000);
		});
		wait_for_server($node) or die "server did not come back";
	}
});

# --- pg_ctl stop -m immediate during a burst, then start --------------------
scenario('immediate stop', 2, sub {
	my ($ack) = @_;
	for my $run (1 .. 3)
	{
		burst_with($ack, sub { $node->stop('immediate'); });
		$node->start;
	}
});

# --- SIGKILL of the streaming worker with batches in flight -----------------
scenario('worker SIGKILL', 2, sub {
	my ($ack) = @_;
	for my $run (1 .. 4)
	{
		burst_with($ack, sub {
			my $pid = stream_worker_pid($node);
			kill 'KILL', $pid if $pid;
			usleep(300_000);
		}, tps => 1200);
		wait_for_server($node) or die "server did not come back";
	}
});

# --- sinks stopped for 10 s under load ---------------------------------------
for my $down ([ 'Redis down 10 s', 1, 0 ], [ 'kinesalite down 10 s', 0, 1 ], [ 'both down 10 s', 1, 1 ])
{
	my ($name, $r, $k) = @$down;
	scenario($name, 1, sub {
		my ($ack) = @_;
		burst_with($ack, sub {
			$redis->kill9 if $r;
			$kin->stop_kinesalite if $k;
			sleep 10;
			$redis->start if $r;
			$kin->start if $k;
			sleep 2;
		});
	});
}

# --- capacity lowered and raised, pause/resume, resync, all during load -----
scenario('admin during load', 1, sub {
	my ($ack) = @_;
	burst_with($ack, sub {
		for my $k (1 .. 6)
		{
			my $taken = q1('SELECT table_taken FROM ticket_ext.verify(1)');
			q1("SELECT ticket_ext.set_capacity(1, $taken + 50)");    # almost sold out
			q1('SELECT ticket_ext.pause(2)');
			q1('SELECT ticket_ext.set_capacity(6, 1000)');             # below what is sold
			usleep(300_000);
			q1('SELECT ticket_ext.resync(3)');
			q1('SELECT ticket_ext.resume(2)');
			q1('SELECT ticket_ext.set_capacity(1, 200000)');
			q1('SELECT ticket_ext.set_capacity(6, 1500)');
			q1('SELECT * FROM ticket_ext.resync()');
			usleep(300_000);
		}
	}, tps => 800);
	is(q1('SELECT count(*) FROM ticket_ext.items WHERE paused'), 0, 'admin: nothing left paused');
});

# --- thousands of holds expiring at once while new reservations arrive ------
scenario('4,000 holds expire at once', 1, sub {
	my ($ack) = @_;
	q1(q{SELECT ticket_reserve(5, 1, 'mass', '3 seconds') FROM generate_series(1, 4000)});
	my @onto5 = pgbench_scripts(r5 => [ 1, "SELECT try_reserve(5, 1);\n" ]);
	burst_with($ack, sub { sleep 6; }, scripts => \@onto5, tps => 400);
	ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 4000 FROM ticket_ext.holds WHERE holder = 'mass' AND status = 'expired'}),
		'mass expiry: all 4,000 expired');
	cmp_ok(q1(q{SELECT count(*) FROM ticket_ext.holds WHERE item_id = 5 AND holder = 'matrix'}),
		'>', 1000, 'mass expiry: the freed tickets were sold again');
});

# --- 50% aborts, savepoint-heavy, PREPARE TRANSACTION paths ------------------
scenario('50% aborts, savepoints, PREPARE', 1, sub {
	my ($ack) = @_;
	my ($refused, $committed, $rolled) = (0, 0, 0);
	burst_with($ack, sub {
		for my $k (1 .. 40)
		{
			my ($ret, $out, $err) = $node->psql('postgres',
				"BEGIN; SELECT try_reserve(1, 1); PREPARE TRANSACTION 'r$k';");
			$refused++ if $err =~ /cannot PREPARE a transaction that changed ticket_ext counters/;
			my $h = q1("SELECT ticket_reserve(2, 1, 'prep')");
			q1("BEGIN; SELECT ticket_confirm($h); PREPARE TRANSACTION 'c$k';");
			if ($k % 2)
			{
				q1("COMMIT PREPARED 'c$k'");
				$committed++;
			}
			else
			{
				q1("ROLLBACK PREPARED 'c$k'");
				$rolled++;
			}
		}
	}, scripts => \@aborty, tps => 800);
	is($refused, 40, 'PREPARE after a reservation refused each time');
	is(q1(q{SELECT count(*) FILTER (WHERE status = 'sold') || '/' || count(*)
	         FROM ticket_ext.holds WHERE holder = 'prep'}), "$committed/40",
		'COMMIT PREPARED confirmed, ROLLBACK PREPARED left held');
});

# --- a slow sink: retained WAL grows, the warning fires, sales go on ---------
scenario('slow sink (300 ms per call)', 1, sub {
	my ($ack) = @_;
	my $log_at = -s $node->logfile;
	q1("ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->slow_endpoint . "'");
	q1("ALTER SYSTEM SET ticket_ext.stream_wal_warning = '1MB'");
	q1('SELECT pg_reload_conf()');
	my ($h, $out) = load(10, 16, 800, @mix);
	$h->finish;
	my ($done) = $$out =~ /number of transactions actually processed: (\d+)/;
	cmp_ok($done // 0, '>=', 6000, "slow sink: sales went on (" . ($done // 0) . " of ~8,000 in 10 s)");
	ok($node->wait_for_log(qr/retains \d+ MB of WAL/, $log_at),
		'slow sink: the WARNING about retained WAL is in the log');
	cmp_ok(q1(q{SELECT max(lag_bytes) FROM ticket_ext.stream_status WHERE sink = 'kinesis'}),
		'>', 1024 * 1024, 'slow sink: stream_status shows the WAL held for Kinesis');
	q1("ALTER SYSTEM RESET ticket_ext.kinesis_endpoint");
	q1("ALTER SYSTEM RESET ticket_ext.stream_wal_warning");
	q1('SELECT pg_reload_conf()');
});

# --- Redis accepts connections and refuses writes (out of memory) ----------
scenario('Redis refuses writes (OOM) 8 s', 1, sub {
	my ($ack) = @_;
	burst_with($ack, sub {
		$redis->command('CONFIG', 'SET', 'maxmemory', '1');
		sleep 8;
		$redis->command('CONFIG', 'SET', 'maxmemory', '0');
		sleep 2;
	});
});

# --- Kinesis black-holed: accepts TCP, never answers ------------------------
scenario('Kinesis black-holed 8 s', 1, sub {
	my ($ack) = @_;
	my $hole = IO::Socket::INET->new(Listen => 128, LocalAddr => '127.0.0.1', LocalPort => 0)
	  or die "listen: $!";
	burst_with($ack, sub {
		q1("ALTER SYSTEM SET ticket_ext.kinesis_endpoint = 'http://127.0.0.1:" . $hole->sockport . "/'");
		q1('SELECT pg_reload_conf()');
		sleep 8;
		q1('ALTER SYSTEM RESET ticket_ext.kinesis_endpoint');
		q1('SELECT pg_reload_conf()');
		sleep 2;
	});
	close $hole;
});

# The scenarios that follow end in snapshots of every active hold (tens of
# thousands by now, on six items): with one record per item per Kinesis
# call that takes minutes against kinesalite.  Many per call keeps the
# matrix short; per-item order under partial failures is 020's business.
q1('ALTER SYSTEM SET ticket_ext.kinesis_records_per_item = 500');
q1('SELECT pg_reload_conf()');

# --- every sink down, queue full, WAL past max_slot_wal_keep_size -----------
scenario('all sinks down, queue full, slot lost', 1, sub {
	my ($ack) = @_;
	q1("ALTER SYSTEM SET max_slot_wal_keep_size = '48MB'");
	q1("ALTER SYSTEM SET ticket_ext.stream_queue_max = 1000");
	q1('SELECT pg_reload_conf()');
	q1('CREATE TABLE IF NOT EXISTS noise (pad text)');
	my %origins = map { split /\|/ } split /\n/, q1('SELECT sink, origin FROM ticket_ext.stream_state');
	burst_with($ack, sub {
		$redis->kill9;
		$kin->stop_kinesalite;
		sleep 4;
		for (1 .. 6)
		{
			q1("INSERT INTO noise SELECT repeat('z', 1000) FROM generate_series(1, 12000)");
			q1('SELECT pg_switch_wal()');
		}
		my $t0 = time;
		my ($rc) = $node->psql('postgres', "SET statement_timeout = '10s'; CHECKPOINT");
		my $took = time - $t0;
		is($rc, 0, sprintf('slot lost: CHECKPOINT past max_slot_wal_keep_size returned in %.1f s', $took));
		ok($node->poll_query_until('postgres', qq{
				SELECT bool_and(origin > $origins{redis} * (sink = 'redis')::int + $origins{kinesis} * (sink = 'kinesis')::int)
				  FROM ticket_ext.stream_state}),
			'slot lost: both slots were invalidated and replaced (new origins)');
		q1('TRUNCATE noise');
		$redis->start;
		$kin->start;
	}, tps => 800);
	q1('ALTER SYSTEM RESET max_slot_wal_keep_size');
	q1('ALTER SYSTEM RESET ticket_ext.stream_queue_max');
	q1('SELECT pg_reload_conf()');
}, history => 1);

# --- restore from a base backup taken during the load ------------------------
scenario('restore from a base backup', 1, sub {
	my ($ack) = @_;
	burst_with($ack, sub {
		$node->backup('matrix_backup');
		sleep 3;				# the original goes on: sinks get events the backup lacks
	}, secs => 8);
	sinks_caught_up();
	$node->stop('immediate');
	my $restored = PostgreSQL::Test::Cluster->new('matrix_restored');
	$restored->init_from_backup($node, 'matrix_backup');
	$restored->start;
	$node = $restored;
	burst_with("$ack.after", sub { sleep 4; }, secs => 8);
}, history => 1, no_acks => 1);

# --- promotion of an asynchronous standby that replayed what was not streamed
scenario('promoted lagging standby', 1, sub {
	my ($ack) = @_;
	$node->backup('matrix_standby');
	my $standby = PostgreSQL::Test::Cluster->new('matrix_standby');
	$standby->init_from_backup($node, 'matrix_standby', has_streaming => 1);
	$standby->start;
	burst_with($ack, sub {
		$redis->kill9;
		$kin->stop_kinesalite;
		sleep 6;				# committed, replicated, never streamed
	});
	my $lsn = q1('SELECT pg_current_wal_lsn()');
	$standby->poll_query_until('postgres', "SELECT pg_last_wal_replay_lsn() >= '$lsn'")
	  or die 'standby behind';
	$node->stop('immediate');
	$redis->start;
	$kin->start;
	$standby->promote;
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'not promoted';
	$node = $standby;
	burst_with("$ack.after", sub { sleep 4; }, secs => 8);
}, history => 1);

# --- the matrix ----------------------------------------------------------
my @head = ('scenario', 'runs', 'reservations', 'events', 'oversells', 'over limit', 'lost', 'duplicates',
	'kinesis repeats');
my $fmt = "%-34s %5s %13s %8s %10s %10s %6s %11s %16s\n";
my $table = sprintf($fmt, @head);
my @total = (0) x 8;
for my $r (@rows)
{
	$table .= sprintf($fmt, @$r);
	$total[$_] += $r->[ $_ + 1 ] for 0 .. 7;
}
$table .= sprintf($fmt, 'total', @total);
diag("fault matrix\n$table");
is($total[3] + $total[4] + $total[5] + $total[6], 0,
	'fault matrix: 0 oversells, 0 over a limit, 0 lost (or not converged), 0 duplicates');
# every scenario's load but the mass expiry's has the limited buyers
my $tk008 = q1('SELECT last_value FROM matrix_tk008');
cmp_ok($tk008, '>', 100, "the holder limit was hit ($tk008 times TK008)")
  unless $ENV{TICKET_MATRIX_ONLY};

$node->stop;
done_testing();
