# Event streaming to a real redis-server: exactly the committed changes,
# with the right fields and in order; nothing lost or doubled when Redis
# crashes mid-burst, when the worker is stopped or killed, or when the
# server stops immediately; consumer groups; settings reload.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;

my $redis = RedisTest->new;
my $node = new_ticket_node('stream', conf => "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.stream_backoff_max = 1s\n");
my $key = 'ticket_ext:events';
ok(stream_worker_pid($node), 'the streaming worker runs (pg_stat_activity)');

# --- exactly the committed changes, with their fields -------------------
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(1, 1000, 'stream test');
	SELECT ticket_reserve(1, 1 + g % 3, 'buyer "' || g || '" \ ok') FROM generate_series(1, 20) g;
});
$node->safe_psql('postgres', q{
	BEGIN; SELECT ticket_reserve(1, 2, 'aborted'); ROLLBACK;
	BEGIN; SELECT ticket_reserve(1, 1, 'kept');
	  SAVEPOINT s; SELECT ticket_reserve(1, 1, 'rolled back'); ROLLBACK TO SAVEPOINT s;
	COMMIT;
	SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE hold_id % 2 = 0;
	SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE hold_id % 5 = 0;
	SELECT ticket_ext.set_capacity(1, 900);
	SELECT ticket_ext.pause(1);
	SELECT ticket_ext.resume(1);
});
my $n = check_stream($node, $redis, $key, 'basic');
cmp_ok($n, '>', 30, "basic: $n hold events");

my @entries = @{ $redis->entries($key) };
is($entries[0]{type}, 'snapshot_end', 'the stream begins with the new slot\'s (empty) snapshot');
is_deeply([ @{ $entries[0] }{qw(holds last tx_events)} ], [ 0, 'true', 1 ],
	'... which says it had no holds and was the one event of its snapshot');
my ($first) = grep { $_->{type} eq 'reserved' } @entries;
is_deeply([ sort keys %$first ],
	[ sort qw(id event_id v type item_id hold_id qty holder commit_time lsn xid origin) ],
	'an event carries exactly the documented fields');
is($first->{v}, '2', 'format version 2');
is($first->{origin}, $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'origin is the slot\'s, as stream_state shows it');
my @tx = grep { $_->{lsn} eq $first->{lsn} } @entries;
is(scalar(@tx), 20, 'the 20 reservations of one transaction share its commit LSN');
is_deeply([ map { $_->{last} // '' } @tx ], [ ('') x 19, 'true' ],
	'only the last event of the transaction says "last"');
is($tx[-1]{tx_events}, 20, '... with the number of events of the transaction');
like($first->{commit_time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'commit_time is ISO 8601 UTC');
like($first->{lsn}, qr{^[0-9A-F]+/[0-9A-F]+$}, 'lsn looks like an LSN');
like($first->{xid}, qr/^\d+$/, 'xid is a number');
my ($holder) = grep { $_->{holder} eq 'buyer "7" \\ ok' } @entries;
ok($holder, 'holder text with quotes and backslashes arrives unchanged');
ok(!grep({ $_->{holder} =~ /aborted|rolled back/ } @entries),
	'aborted transactions and rolled-back savepoints produce no event');
is(join(',', map { $_->{type} } grep { $_->{hold_id} eq '' && $_->{type} !~ /^snapshot/ } @entries),
	'capacity,capacity,paused,resumed', 'item events: created, capacity changed, paused, resumed');
my ($cap) = grep { $_->{type} eq 'capacity' && $_->{capacity} eq '900' } @entries;
ok($cap, 'the capacity event carries the new capacity');

# a NULL holder and an empty one stay distinct: no field vs an empty one
my $h_null = $node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, NULL)");
my $h_empty = $node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, '')");
check_stream($node, $redis, $key, 'NULL and empty holders');
my %by_hold = map { ($_->{hold_id} // '') => $_ } grep { $_->{type} eq 'reserved' } @{ $redis->entries($key) };
ok(!exists $by_hold{$h_null}{holder}, 'a NULL holder: no holder field');
is($by_hold{$h_empty}{holder}, '', "an empty holder: holder ''");

# --- Redis crashes in the middle of a burst ------------------------------
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(2, 1000000, 'burst')");
my @mix = pgbench_scripts(
	reserve => [ 50, "SELECT ticket_reserve(2, 1, 'b');\n" ],
	confirm => [ 20, "SELECT ticket_confirm(ticket_reserve(2, 2, 'c'));\n" ],
	release => [ 15, "SELECT ticket_release(ticket_reserve(2, 1, 'r'));\n" ],
	abort => [ 15, "BEGIN;\nSELECT ticket_reserve(2, 1, 'a');\nROLLBACK;\n" ]);
my $load = start_load($node, 8, 8, 1500, @mix);
sleep 2;
$redis->kill9;
sleep 4;    # Redis down: the worker retries with backoff, WAL is kept
my $down = $node->safe_psql('postgres', "SELECT state, retries > 0, last_error IS NOT NULL FROM ticket_ext.stream_status WHERE sink = 'redis'");
like($down, qr/^(retrying|connecting)\|t\|t$/, "while Redis is down the status shows it ($down)");
$redis->start;
$load->finish;
is($load->result(0), 0, 'the burst itself never noticed Redis was down');
check_stream($node, $redis, $key, 'after a Redis crash');
my $warnings = () = slurp_file($node->logfile) =~ /redis sink failing/g;
ok($warnings >= 1 && $warnings <= 3, "the outage was logged on state change, not per retry ($warnings lines)");
like(slurp_file($node->logfile), qr/redis sink recovered/, 'the recovery was logged');

# --- the worker stopped (SIGTERM) and killed (SIGKILL) mid-batch ---------
for my $round (1 .. 3)
{
	my $burst = start_load($node, 4, 8, 1500, @mix);
	usleep(800_000);
	my $pid = stream_worker_pid($node);
	kill 'TERM', $pid;
	$burst->finish;
	ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'ticket_ext stream redis' AND pid <> $pid}),
		"SIGTERM round $round: the postmaster restarted the worker");
}
check_stream($node, $redis, $key, 'after SIGTERMs');
for my $round (1 .. 2)
{
	my $burst = start_load($node, 4, 8, 1500, @mix);
	usleep(800_000);
	kill 'KILL', stream_worker_pid($node);    # a crash: the server restarts everything
	$burst->finish;
	ok(wait_for_server($node), "SIGKILL round $round: server back");
	ok(stream_worker_pid($node), "SIGKILL round $round: worker back");
}
check_stream($node, $redis, $key, 'after SIGKILLs');
check_invariants($node, 2, 'after worker crashes');

# --- immediate stop mid-burst --------------------------------------------
{
	my $burst = start_load($node, 4, 8, 1500, @mix);
	usleep(1_500_000);
	$node->stop('immediate');
	$burst->finish;
	$node->start;
	check_stream($node, $redis, $key, 'after pg_ctl stop -m immediate');
}

# --- two readers in one consumer group get every event once --------------
my $all = scalar @{ $redis->entries($key) };
$redis->command('XGROUP', 'CREATE', $key, 'readers', '0');
my %seen;
my ($dup, $turn) = (0, 0);
for (1 .. 100000)
{
	my $consumer = 'reader' . ($turn++ % 2);
	my $r = $redis->command('XREADGROUP', 'GROUP', 'readers', $consumer, 'COUNT', 97,
		'STREAMS', $key, '>');
	last unless ref $r eq 'ARRAY';
	for my $msg (@{ $r->[0][1] })
	{
		$dup++ if $seen{ $msg->[0] }++;
		$redis->command('XACK', $key, 'readers', $msg->[0]);
	}
}
is(scalar(keys %seen), $all, "two readers in a consumer group read all $all entries");
is($dup, 0, '... each exactly once');

# --- Redis refusing writes: out of memory, then a read-only replica -------
sub refusal_round
{
	my ($label, $refuse, $accept, $pattern) = @_;
	$redis->command(@$refuse);
	my $burst = start_load($node, 3, 4, 500, @mix);
	$burst->finish;
	ok($node->poll_query_until('postgres', qq{
		SELECT last_error ~ '$pattern' AND state = 'retrying'
		  FROM ticket_ext.stream_status WHERE sink = 'redis'}),
		"$label: the sink reports it and retries");
	$redis->command(@$accept);
	check_stream($node, $redis, $key, "after $label");
}
refusal_round('Redis out of memory',
	[ 'CONFIG', 'SET', 'maxmemory', '1' ], [ 'CONFIG', 'SET', 'maxmemory', '0' ], 'OOM');
refusal_round('a read-only replica',
	[ 'REPLICAOF', '127.0.0.1', '1' ], [ 'REPLICAOF', 'NO', 'ONE' ], 'READONLY');

# --- settings reload: a new stream key, one stream per item ---------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET ticket_ext.redis_stream = 'shop';
	ALTER SYSTEM SET ticket_ext.redis_stream_per_item = on;
	SELECT pg_reload_conf();
});
# a new stream key holds nothing: the sink places itself there at once (on
# reconnecting with the new settings, not at the next event) with a snapshot
# of the tables; the reservation below comes after that snapshot
my $snapshot_done = 0;
for (1 .. 300)
{
	$snapshot_done = grep { $_->{type} eq 'snapshot_end' } @{ $redis->entries('shop') };
	last if $snapshot_done;
	usleep(100_000);
}
ok($snapshot_done, 'after SIGHUP, with no new event, the new stream key gets a snapshot');
$node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'after reload')");
my $per_item;
for (1 .. 100)
{
	$per_item = $redis->entries('shop:1');
	last if grep { $_->{type} eq 'reserved' } @$per_item;
	usleep(100_000);
}
my @news = grep { $_->{type} !~ /^snapshot/ } @$per_item;
is(scalar(@news), 1, 'after SIGHUP the new event went to the per-item stream shop:1');
is($news[0]{holder}, 'after reload', '... and it is the new reservation');
my ($snap_item) = grep { $_->{type} eq 'snapshot_item' } @$per_item;
my $active = $node->safe_psql('postgres',
	"SELECT count(*) FROM ticket_ext.holds WHERE item_id = 1 AND ended_at IS NULL AND holder IS DISTINCT FROM 'after reload'");
is($snap_item->{holds}, $active, "... after a snapshot of item 1 with its $active active holds");
is(scalar(grep { $_->{type} eq 'snapshot_hold' } @$per_item), $active, '... each of them listed');
is($per_item->[0]{type}, 'snapshot_item', '... which comes first');
is(join(',', map { $_->{type} } @{ $redis->entries('shop') }), 'snapshot_end',
	'the end of the snapshot, of no item, is in the base stream');

# --- MAXLEN ~ trimming ------------------------------------------------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET ticket_ext.redis_maxlen = 10;
	SELECT pg_reload_conf();
});
sleep 1;
$node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'trim') FROM generate_series(1, 300)")
  for 1 .. 2;
$node->poll_query_until('postgres',
	"SELECT slot_confirmed_lsn >= pg_current_wal_lsn() - 1000000 AND queued = 0 FROM ticket_ext.stream_status WHERE sink = 'redis'")
  or die;
sleep 2;
my $len = $redis->command('XLEN', 'shop:1');
ok($len > 0 && $len < 300, "MAXLEN ~ 10 keeps the stream short ($len of 600 entries)");

$node->stop;
$redis->stop;
done_testing();
