# The worker never leaves the replication connection unread, never blocks
# on slot creation, and says what the stream is doing:
#  - every sink down, the queue full: the stream is closed (not left
#    unread), so a CHECKPOINT that must invalidate the slot under
#    max_slot_wal_keep_size returns at once; the worker survives, replaces
#    the lost slot with a new one and a snapshot of the tables, and Redis
#    converges on the tables once it is back;
#  - slot creation waiting for an open transaction: a ticket write inside
#    a transaction that has an xid fails at once (TK004) instead of
#    waiting for a slot that waits for it; the wait and the pids are in
#    stream_state; the worker still answers SIGHUP meanwhile;
#  - the worker's identity is cleared when it exits; SIGTERM is a clean
#    shutdown with a last feedback.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use TicketTest;
use RedisTest;

my $redis = RedisTest->new;
my $node = new_ticket_node('backpressure', allows_streaming => 'logical',
	conf => "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n"
	  . "ticket_ext.stream_queue_max = 1000\n"
	  . "max_slot_wal_keep_size = 48MB\n"
	  . "wal_keep_size = 0\n"
	  . "max_wal_size = 1GB\n");
my $worker = stream_worker_pid($node);
ok($worker, 'worker up');
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 10000000, 'backpressure')");
$node->poll_query_until('postgres',
	"SELECT state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'") or die 'not streaming';
pass('stream_state says streaming');

# --- every sink down, the queue full --------------------------------------
$redis->kill9;
$node->safe_psql('postgres', 'CREATE TABLE noise (id serial, pad text)');
# far more events than the queue holds: the walsender has plenty to send
$node->safe_psql('postgres',
	"SELECT ticket_reserve(1, 1, 'q' || g) FROM generate_series(1, 3000) g") for 1 .. 5;
ok($node->poll_query_until('postgres',
		"SELECT state = 'queue full' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'queue full: the stream is closed, stream_state says so');
like($node->safe_psql('postgres', 'SELECT detail FROM ticket_ext.stream_state WHERE sink = \'redis\''),
	qr/reopens from the slot/, 'the detail says what happens next');
# WAL past max_slot_wal_keep_size
for (1 .. 6)
{
	$node->safe_psql('postgres',
		"INSERT INTO noise (pad) SELECT repeat('z', 1000) FROM generate_series(1, 12000)");
	$node->safe_psql('postgres', 'SELECT pg_switch_wal()');
}
my $lost_origin = $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'");
my $t0 = time;
my ($rc, $out, $err) = $node->psql('postgres', "SET statement_timeout = '10s'; CHECKPOINT");
my $took = time - $t0;
is($rc, 0, "CHECKPOINT past max_slot_wal_keep_size returns (took ${took}s)") or diag($err);
ok($took < 10, 'within 10 s');
# (PostgreSQL's own word: the worker may already be replacing the slot)
like(slurp_file($node->logfile), qr/invalidating slot "ticket_ext_stream" because its restart_lsn .* exceeds max_slot_wal_keep_size/,
	'the safety valve worked: the slot was invalidated');
ok($node->poll_query_until('postgres',
		"SELECT origin > $lost_origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'the worker replaced the lost slot with a new one (new origin)');
like(slurp_file($node->logfile), qr/ticket_ext_stream" of the redis sink was invalidated at .*\n.*DETAIL:.*gone from WAL/,
	'the log says the slot was lost and why');
is(stream_worker_pid($node), $worker, 'the worker is still the same process');
$node->safe_psql('postgres', "SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE hold_id % 7 = 0");
$node->safe_psql('postgres', "SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE hold_id % 7 = 1");

# Redis comes back: it gets the new slot's snapshot, then what followed
$redis->start;
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok($node->poll_query_until('postgres', qq{
		SELECT state = 'ok' AND slot_confirmed_lsn >= '$lsn' FROM ticket_ext.stream_status WHERE sink = 'redis'}),
	'Redis back: the sink is ok and caught up');
check_converged($node, $redis->entries('ticket_ext:events'), 'after the lost slot');
my $entries = $redis->entries('ticket_ext:events');
my ($first_new) = grep { ($_->{origin} // '') ne $lost_origin } @$entries;
is($first_new->{type}, 'snapshot_item', 'the new slot\'s events begin with its snapshot');
unlike(slurp_file($node->logfile), qr/cannot wait on socket event without a socket/,
	'the worker never waited on a closed socket');
is(stream_worker_pid($node), $worker, 'the worker never exited');
is($node->safe_psql('postgres', 'SELECT state FROM ticket_ext.stream_state WHERE sink = \'redis\''), 'streaming',
	'streaming again');

# --- slot creation waits for an open transaction with an xid -------------
$node->safe_psql('postgres', 'DROP EXTENSION ticket_ext');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream'")
  or die 'slot not dropped';
my ($in, $sout, $serr) = ('', '', '');
my $s1 = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$sout, '2>', \$serr);
$in .= "BEGIN; INSERT INTO noise (pad) VALUES ('open'); SELECT 'pid=' || pg_backend_pid();\n";
$s1->pump until $sout =~ /pid=(\d+)/;
my $s1pid = $1;
$node->safe_psql('postgres', 'CREATE EXTENSION ticket_ext');
ok($node->poll_query_until('postgres',
		"SELECT state = 'creating slot' AND detail LIKE '%$s1pid%' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'stream_state: creating slot, waiting for the open transaction (its pid named)');

# the worker answers SIGHUP while the slot waits: sinks off shows at once
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.redis_url = ''; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', "SELECT state = 'no sinks' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'SIGHUP is handled while the slot creation waits');
$node->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.redis_url; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', "SELECT state = 'creating slot' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'settings back: creating the slot again');

# a write elsewhere waits (bounded) and fails with TK004 while the slot waits
my ($r2, $o2, $e2) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT ticket_ext.create_item(8, 10)");
like($e2, qr/TK004.*event stream is not ready/s, 'another session gets TK004 (stream not ready) after the bounded wait') or diag("rc=$r2 out=$o2 err=$e2");
# a ticket write in the very transaction the slot waits for fails at once
$t0 = time;
$in .= "SELECT ticket_ext.create_item(7, 10);\n";
$s1->pump until $serr =~ /ERROR/;
# (the error ended that transaction: the slot is created now)
$took = time - $t0;
like($serr, qr/event stream is not ready/, 'a write in the transaction the slot waits for is refused');
ok($took < 3, "... at once (${took}s, not after the 10 s gate timeout)");
$in .= "ROLLBACK;\n\\q\n";
$s1->finish;
ok($node->poll_query_until('postgres', "SELECT state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'once the transaction ends the slot is created and streaming starts');
$node->safe_psql('postgres', 'SELECT ticket_ext.create_item(7, 10)');
$node->safe_psql('postgres', "SELECT ticket_reserve(7, 1, 'after')");
my $delivered = 0;
for (1 .. 100)
{
	$delivered = grep { ($_->{holder} // '') eq 'after' } @{ $redis->entries('ticket_ext:events') };
	last if $delivered;
	usleep(100_000);
}
is($delivered, 1, 'a sale after the wait reaches Redis once');

# --- identity cleared on exit; SIGTERM is a clean shutdown ---------------
$worker = stream_worker_pid($node);
my $confirmed_before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my $log_at = -s $node->logfile;
# the postmaster restarts it after a second: in between nobody is shown
is($node->safe_psql('postgres', qq{
	SELECT pg_terminate_backend($worker);
	DO \$\$
	BEGIN
		FOR i IN 1 .. 100 LOOP
			IF (SELECT worker_pid IS NULL AND state = 'stopped'
			      FROM ticket_ext.stream_state WHERE sink = 'redis') THEN
				RAISE NOTICE 'cleared';
				RETURN;
			END IF;
			PERFORM pg_sleep(0.01);
		END LOOP;
		RAISE EXCEPTION 'the exited worker was still shown';
	END \$\$;
	SELECT 'cleared'}), "t\ncleared", 'the exited worker\'s identity is cleared (worker_pid NULL, stopped)');
my $new = stream_worker_pid($node);
ok($new && $new != $worker, 'a new worker took over');
my $later = substr(slurp_file($node->logfile), $log_at);
unlike($later, qr/FATAL:.*terminating background worker "ticket_ext stream"/,
	'SIGTERM: a clean shutdown, not a FATAL');
ok($node->poll_query_until('postgres',
		"SELECT confirmed_flush_lsn >= '$confirmed_before' FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream'"),
	'the slot is confirmed past what was committed before the restart');

# --- a stream that fails right after it starts backs off ------------------
$node->poll_query_until('postgres',
	"SELECT state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'") or die 'not streaming';
$log_at = -s $node->logfile;
my $killed = $node->safe_psql('postgres', q{
	DO $$
	DECLARE n int := 0;
	BEGIN
		FOR i IN 1 .. 300 LOOP		-- 6 s: kill its walsender as soon as it appears
			n := n + (SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
			            FROM (SELECT pid FROM pg_stat_activity
			                   WHERE backend_type = 'walsender' AND application_name = 'ticket_ext stream'
			                  OFFSET 0) w);		-- OFFSET 0: filter first, then terminate
			PERFORM pg_sleep(0.02);
			PERFORM pg_stat_clear_snapshot();	-- see new backends within this transaction
		END LOOP;
		RAISE NOTICE '%', n;
		PERFORM set_config('test.killed', n::text, false);
	END $$;
	SELECT current_setting('test.killed')});
cmp_ok($killed, '<=', 12, "a stream failing right after it starts is retried with backoff ($killed attempts in 6 s, not 30)");
cmp_ok($killed, '>=', 2, '... and retried');
my $interrupted = () = substr(slurp_file($node->logfile), $log_at) =~ /event stream interrupted/g;
is($interrupted, 1, 'one WARNING, not one per attempt');

# --- stream_resnapshot() while the old walsender holds on to the slot -------
$node->poll_query_until('postgres',
	"SELECT state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'") or die 'not streaming';
my $origin0 = $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'");
my $walsender = $node->safe_psql('postgres',
	"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream'");
kill 'STOP', $walsender;		# slow to let go of the slot
$node->safe_psql('postgres', "SELECT ticket_ext.stream_resnapshot('redis')");
sleep 7;						# longer than the worker waits for it
kill 'CONT', $walsender;
ok($node->poll_query_until('postgres',
		"SELECT origin > $origin0 FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'stream_resnapshot() asked while the slot was still held: done once it was let go');

$node->stop;
$redis->stop;
done_testing();
