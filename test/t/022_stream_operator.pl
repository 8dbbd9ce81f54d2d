# What operators do to a running stream, and what the Redis sink must do
# about it (each case failed before its fix):
#  1. FLUSHALL, or DEL of the stream and its position, while streaming:
#     the worker notices before its next write (the position it wrote is
#     gone) and brings Redis back to the tables with a snapshot, instead of
#     going on with a partial stream;
#  2. a second cluster pointed at the same Redis stream: refused, with a
#     "history conflict" saying what to do, until stream_resnapshot() makes
#     it the source; stream_state then says "streaming" again;
#  3. ticket_ext.stream_slot set to another consumer's slot (same plugin):
#     refused, that slot kept, ours kept;
#  4. a rename whose slot copy fails (every slot in use): retried, never a
#     new slot with a snapshot that leaves the old one behind;
#  5. the slot's origin file cannot be written: nothing streams from a
#     slot whose origin is not on disk, so a restart is not taken for
#     another history.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;

my $redis = RedisTest->new;

sub conf
{
	my ($stream, $extra) = @_;
	return "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.redis_stream = '$stream'\n"
	  . "ticket_ext.stream_backoff_min = 20ms\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n"
	  . ($extra // '');
}

sub caught_up
{
	my ($node, $label) = @_;
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	# (streaming: a new slot's snapshot is all queued; queued = 0: all sent)
	ok($node->poll_query_until('postgres', qq{
		SELECT s.state = 'ok' AND s.slot_confirmed_lsn >= '$lsn' AND s.queued = 0 AND t.state = 'streaming'
		  FROM ticket_ext.stream_status s JOIN ticket_ext.stream_state t USING (sink) WHERE sink = 'redis'}),
		"$label: Redis caught up")
	  or diag($node->safe_psql('postgres', 'SELECT * FROM ticket_ext.stream_status; SELECT * FROM ticket_ext.stream_state'));
}

sub stream_state
{
	my ($node) = @_;
	return $node->safe_psql('postgres', "SELECT state || ': ' || coalesce(detail, '') FROM ticket_ext.stream_state WHERE sink = 'redis'");
}

# wait until stream_state's detail for the sink matches (SQL LIKE)
sub wait_detail
{
	my ($node, $sink, $like, $label) = @_;
	$like =~ s/'/''/g;
	ok($node->poll_query_until('postgres',
			"SELECT detail LIKE '$like' FROM ticket_ext.stream_state WHERE sink = '$sink'"), $label)
	  or diag($node->safe_psql('postgres', 'SELECT * FROM ticket_ext.stream_state'));
}

sub origin_of
{
	my ($node) = @_;
	return $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'");
}

sub slots
{
	my ($node) = @_;
	return join ',', split /\n/, $node->safe_psql('postgres', 'SELECT slot_name FROM pg_replication_slots ORDER BY 1');
}

sub reserve
{
	my ($node, $item, $n, $who) = @_;
	$node->safe_psql('postgres', "SELECT ticket_reserve($item, 1, '$who-' || g) FROM generate_series(1, $n) g");
}

my $a = new_ticket_node('op_a', conf => conf('op', "max_replication_slots = 4\noutput_plugin_libraries = 'ticket_ext'\n"));
$a->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 100000, 'a')");
reserve($a, 1, 50, 'first');
caught_up($a, 'A');

# --- 1. FLUSHALL, then DEL of the stream and its position ------------------
my $origin = origin_of($a);
$redis->command('FLUSHALL');
reserve($a, 1, 30, 'after-flush');
$a->safe_psql('postgres', "SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE hold_id % 4 = 0");
ok($a->poll_query_until('postgres', "SELECT origin > $origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'FLUSHALL: the worker noticed and took a new slot with a snapshot');
caught_up($a, 'after FLUSHALL');
check_converged($a, $redis->entries('op'), 'after FLUSHALL');
like(slurp_file($a->logfile), qr/the position op:position is not the one this worker wrote/,
	'the log says why');

$origin = origin_of($a);
$redis->command('DEL', 'op', 'op:position');
reserve($a, 1, 20, 'after-del');
ok($a->poll_query_until('postgres', "SELECT origin > $origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'DEL of the stream and its position: a snapshot again');
caught_up($a, 'after DEL');
check_converged($a, $redis->entries('op'), 'after DEL');

# the worker's own position writes between batches (idle progress) leave no
# WATCH behind that would void the next batch
my $retries = $a->safe_psql('postgres', "SELECT retries FROM ticket_ext.stream_status WHERE sink = 'redis'");
reserve($a, 1, 1, 'before-idle');
$a->safe_psql('postgres', "CREATE TABLE other_wal AS SELECT generate_series(1, 20000) AS x");
sleep 3;					# the position is written once a second while idle
reserve($a, 1, 1, 'after-idle');
caught_up($a, 'after idle position writes');
is($a->safe_psql('postgres', "SELECT retries FROM ticket_ext.stream_status WHERE sink = 'redis'"), $retries,
	'a position written between batches does not void the next batch (no retry)');

# FLUSHALL while a snapshot is being sent: the rest of the queue would not
# bring Redis back; a snapshot again does
reserve($a, 1, 5000, 'many');
caught_up($a, 'before a long snapshot');
$a->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.stream_batch_size = 10; SELECT pg_reload_conf()");
$origin = origin_of($a);
my $len = $redis->command('XLEN', 'op');
$a->safe_psql('postgres', "SELECT ticket_ext.stream_resnapshot('redis')");
$a->poll_query_until('postgres', "SELECT origin > $origin FROM ticket_ext.stream_state WHERE sink = 'redis'")
  or die 'no new slot';
my $snap_origin = origin_of($a);
my $flushed_at;
for (1 .. 20000)
{
	my $now = $redis->command('XLEN', 'op');
	if ($now > $len + 200)
	{
		$redis->command('FLUSHALL');
		$flushed_at = $now - $len;
		last;
	}
	usleep(1000);
}
ok(defined $flushed_at && $flushed_at < 5000, "FLUSHALL while the snapshot was sent (after " . ($flushed_at // '?') . " of its entries)");
ok($a->poll_query_until('postgres', "SELECT origin > $snap_origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'... noticed: another snapshot');
reserve($a, 1, 5, 'after-flush-in-snapshot');
caught_up($a, 'after FLUSHALL during a snapshot');
check_converged($a, $redis->entries('op'), 'after FLUSHALL during a snapshot');
$a->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.stream_batch_size; SELECT pg_reload_conf()");

# --- 2. a second cluster on the same stream ---------------------------------
my $b = new_ticket_node('op_b', conf => conf('op'));
$b->safe_psql('postgres', "SELECT ticket_ext.create_item(2, 1000, 'b')");
reserve($b, 2, 10, 'other-cluster');
ok($b->poll_query_until('postgres', q{
		SELECT state = 'error' AND last_error LIKE 'history: the sink holds %, written by another cluster%'
		  FROM ticket_ext.stream_status WHERE sink = 'redis'}),
	'a second cluster finds the stream written by another cluster: refused')
  or diag(stream_state($b));
ok($b->poll_query_until('postgres', "SELECT state = 'history conflict' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'its stream_state says "history conflict"');
like($b->safe_psql('postgres', "SELECT last_error FROM ticket_ext.stream_status WHERE sink = 'redis'"),
	qr/stream_resnapshot\('redis'\)/, '... and what to do to make it the source');
# reinstalling the extension there is not an admin's word to take over
$b->safe_psql('postgres', "DROP EXTENSION ticket_ext; CREATE EXTENSION ticket_ext; SELECT ticket_ext.create_item(2, 1000, 'b')");
reserve($b, 2, 10, 'other-cluster');
sleep 3;
ok($b->poll_query_until('postgres', "SELECT state = 'history conflict' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'after DROP and CREATE EXTENSION the second cluster is still refused')
  or diag(stream_state($b));
reserve($a, 1, 5, 'a-goes-on');
caught_up($a, 'the first cluster goes on');
is(scalar(grep { ($_->{holder} // '') =~ /^other-cluster/ || ($_->{item_id} // 0) == 2 } @{ $redis->entries('op') }), 0,
	'nothing of the second cluster reached Redis');
check_converged($a, $redis->entries('op'), 'the first cluster, with a second one refused');

$b->safe_psql('postgres', "SELECT ticket_ext.stream_resnapshot('redis')");
reserve($b, 2, 5, 'b-source');
caught_up($b, 'the second cluster made the source');
check_converged($b, $redis->entries('op'), 'the second cluster after stream_resnapshot()');
ok($b->poll_query_until('postgres', "SELECT state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'its stream_state no longer says "history conflict"')
  or diag(stream_state($b));
reserve($a, 1, 5, 'a-now-refused');
ok($a->poll_query_until('postgres', "SELECT state = 'history conflict' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'now the first cluster is refused');
$b->stop;
# the first cluster back as the source (what an operator does)
$a->safe_psql('postgres', "SELECT ticket_ext.stream_resnapshot('redis')");
reserve($a, 1, 5, 'a-source-again');	# (caught up = past this, not an old LSN)
caught_up($a, 'the first cluster made the source again');
check_converged($a, $redis->entries('op'), 'the first cluster again');

# --- 3. stream_slot set to another consumer's slot --------------------------
my $own = $a->safe_psql('postgres', "SELECT slot_name FROM ticket_ext.stream_state WHERE sink = 'redis'");
$a->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('someone_else', 'ticket_ext')");
$a->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.stream_slot = 'someone_else'; SELECT pg_reload_conf()");
wait_detail($a, 'redis', q{%"someone_else" exists and is not this worker's%},
	'stream_slot naming another consumer\'s slot: refused, and said');
sleep 1;
is(slots($a), "someone_else,$own", 'that slot is kept, and ours too');
$a->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.stream_slot; SELECT pg_reload_conf()");
reserve($a, 1, 5, 'back');
caught_up($a, 'stream_slot reset');
$a->safe_psql('postgres', "SELECT pg_drop_replication_slot('someone_else')");

# a second sink told to use the first sink's slot (it has no origin file of
# its own yet): refused, not shared
$a->safe_psql('postgres', qq{
	ALTER SYSTEM SET ticket_ext.kinesis_stream = 'nowhere';
	ALTER SYSTEM SET ticket_ext.kinesis_endpoint = 'http://127.0.0.1:1/';
	ALTER SYSTEM SET ticket_ext.aws_access_key_id = 'AKIDTEST';
	ALTER SYSTEM SET ticket_ext.aws_secret_access_key = 'x';
	ALTER SYSTEM SET ticket_ext.kinesis_slot = '$own';
	SELECT pg_reload_conf()});
wait_detail($a, 'kinesis', qq{%"$own" exists and is not this worker's%},
	'kinesis_slot naming the Redis sink\'s slot: refused');
reserve($a, 1, 5, 'redis-goes-on');
caught_up($a, 'Redis, with Kinesis refused');
$a->safe_psql('postgres', qq{
	ALTER SYSTEM RESET ticket_ext.kinesis_stream; ALTER SYSTEM RESET ticket_ext.kinesis_endpoint;
	ALTER SYSTEM RESET ticket_ext.aws_access_key_id; ALTER SYSTEM RESET ticket_ext.aws_secret_access_key;
	ALTER SYSTEM RESET ticket_ext.kinesis_slot; SELECT pg_reload_conf()});
is(slots($a), $own, 'only the Redis sink\'s slot is left');

# --- 4. a rename whose copy fails -----------------------------------------
$origin = origin_of($a);
$a->safe_psql('postgres', "SELECT pg_create_physical_replication_slot('filler_' || g) FROM generate_series(1, 3) g");
$a->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.stream_slot = 'renamed'; SELECT pg_reload_conf()");
wait_detail($a, 'redis', '%replication slots are in use%',
	'a rename with every slot in use: the copy fails, and stream_state says so');
reserve($a, 1, 10, 'during-rename');
sleep 1;
is(slots($a), "filler_1,filler_2,filler_3,$own", 'the old slot is kept meanwhile');
$a->safe_psql('postgres', "SELECT pg_drop_replication_slot('filler_1')");
caught_up($a, 'after the rename');
is(slots($a), 'filler_2,filler_3,renamed', 'the old slot became the new one: nothing left behind');
is(origin_of($a), $origin, 'the same origin: a copy, no snapshot');
is(scalar(grep { ($_->{holder} // '') =~ /^during-rename/ && $_->{type} eq 'reserved' } @{ $redis->entries('op') }), 10,
	'the reservations made during the rename reached Redis as events');
$a->safe_psql('postgres', "SELECT pg_drop_replication_slot('filler_' || g) FROM generate_series(2, 3) g");

# --- 5. the slot's origin file cannot be written ---------------------------
$origin = origin_of($a);
my $tmp = $a->data_dir . '/ticket_ext.redis.slot.tmp';
mkdir $tmp or die "mkdir $tmp: $!";	# open() of the temporary file fails (EISDIR)
$a->safe_psql('postgres', "SELECT ticket_ext.stream_resnapshot('redis')");
wait_detail($a, 'redis', 'could not write $PGDATA/ticket_ext.redis.slot%',
	'the origin file cannot be written: the worker waits, and says so');
reserve($a, 1, 10, 'while-unwritable');
like(slurp_file($a->logfile), qr/could not write ".*ticket_ext\.redis\.slot": Is a directory/, 'the log says why');
rmdir $tmp or die;
ok($a->poll_query_until('postgres', "SELECT origin > $origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'once it can be written: a new slot with a snapshot');
caught_up($a, 'after the file could be written');
$a->restart;
reserve($a, 1, 5, 'after-restart');
caught_up($a, 'after a restart');
unlike(stream_state($a), qr/history conflict/, 'a restart is not taken for another history');
check_converged($a, $redis->entries('op'), 'after a restart');
$a->stop;

$redis->stop;
done_testing();
