# The slot and the standard consumers: pg_recvlogical reads the same JSON
# events through the output plugin; a second cluster subscribes to the
# publication; an idle stream keeps confirming (no WAL pinned); a slow
# sink makes the WAL warning fire; a wrong password is a clear error that
# never shows the secret; DROP EXTENSION removes slot and publication.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;

my $redis = RedisTest->new(password => 's3cret-pw');
my $node = new_ticket_node('lifecycle2', allows_streaming => 'logical',
	conf => "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n"
	  . "ticket_ext.stream_queue_max = 1000\n");    # small: outages overflow it
ok(stream_worker_pid($node), 'worker up');
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 100, 'consumers')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream' AND active")
  or die 'slot not active';
pass('the worker created its slot and streams from it');

# --- pg_recvlogical with the extension's output plugin -------------------
my $allowed = $node->safe_psql('postgres',
	"SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'");
my $pgopts = $allowed eq '' ? '' : "-c output_plugin_libraries=ticket_ext";
$node->command_ok([ 'pg_recvlogical', '-d', $node->connstr('postgres'), '--slot', 'recv_test',
		'--create-slot', '--plugin', 'ticket_ext' ], 'pg_recvlogical creates a slot with plugin ticket_ext')
  if $pgopts eq '';
if ($pgopts ne '')
{
	local $ENV{PGOPTIONS} = $pgopts;
	$node->command_ok([ 'pg_recvlogical', '-d', $node->connstr('postgres'), '--slot', 'recv_test',
			'--create-slot', '--plugin', 'ticket_ext' ], 'pg_recvlogical creates a slot with plugin ticket_ext');
}
$node->safe_psql('postgres', q{
	SELECT ticket_confirm(ticket_reserve(1, 2, 'recv'));
	BEGIN; SELECT ticket_reserve(1, 1, 'never'); ROLLBACK;
});
my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my $out;
{
	local $ENV{PGOPTIONS} = $pgopts;
	$out = `pg_recvlogical -d '@{[$node->connstr('postgres')]}' --slot recv_test --start --endpos $endpos -f - 2>&1`;
}
my @lines = grep { /^\{/ } split /\n/, $out;
is(scalar(@lines), 2, 'pg_recvlogical printed two events (the aborted one is absent)') or diag($out);
like($lines[0], qr/^\{"event_id":"\d+-0","v":2,"type":"reserved","item_id":1,"hold_id":\d+,"qty":2,"holder":"recv","commit_time":"[0-9T:.\-]+Z","lsn":"[0-9A-F\/]+","xid":\d+\}$/,
	'reserved: one JSON object with the documented fields');
like($lines[1], qr/^\{"event_id":"\d+-1","v":2,"type":"confirmed",.*,"last":true,"tx_events":2\}$/,
	'confirmed: same transaction, next index, its last event');
$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('recv_test')");

# --- a second cluster subscribes to the publication ----------------------
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->start;
$sub->safe_psql('postgres', q{
	CREATE SCHEMA ticket_ext;
	CREATE TABLE ticket_ext.items (item_id bigint PRIMARY KEY, name text, capacity bigint,
		paused boolean, created_at timestamptz, updated_at timestamptz);
	CREATE TABLE ticket_ext.holds (hold_id bigint PRIMARY KEY, item_id bigint, qty integer,
		status text, holder text, idempotency_key text, created_at timestamptz,
		expires_at timestamptz, confirmed_at timestamptz, ended_at timestamptz);
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_publication'), '0',
	'CREATE EXTENSION makes no publication (pg_dump would write it out twice)');
is($node->safe_psql('postgres', 'SELECT ticket_ext.publish()'), 't', 'ticket_ext.publish() makes it');
is($node->safe_psql('postgres', 'SELECT ticket_ext.publish()'), 'f', '... once');
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION tk_sub CONNECTION 'host=" . $node->host
	  . " port=" . $node->port . " dbname=postgres' PUBLICATION ticket_ext_events");
$node->safe_psql('postgres', "SELECT ticket_release(ticket_reserve(1, 3, 'subscribed'))");
$sub->poll_query_until('postgres',
	"SELECT status = 'released' FROM ticket_ext.holds WHERE holder = 'subscribed'")
  or die 'subscriber did not catch up';
is($sub->safe_psql('postgres', 'SELECT count(*) FROM ticket_ext.holds'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM ticket_ext.holds'),
	'the subscriber has every hold row');
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION tk_sub');
$sub->stop;

# --- an idle stream (only other tables busy) still confirms --------------
$node->safe_psql('postgres', 'CREATE TABLE noise (id serial, pad text)');
my $before = $node->safe_psql('postgres',
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream'");
$node->safe_psql('postgres', "INSERT INTO noise (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000)")
  for 1 .. 5;
$node->safe_psql('postgres', "INSERT INTO noise (pad) VALUES ('last')");
ok($node->poll_query_until('postgres', qq{
	SELECT pg_current_wal_lsn() - confirmed_flush_lsn < 65536
	  FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream'}),
	"with no ticket events the slot still moves (was $before)");

# --- wrong password: clear error, secret never shown ---------------------
# (the password lives in a file: PostgreSQL itself logs a reloaded setting's
# new value, so a password in redis_url would reach the log on a reload)
my $pwfile = "$PostgreSQL::Test::Utils::tmp_check/redis.pw";
sub write_password { open my $fh, '>', $pwfile or die $!; print $fh "$_[0]\n"; close $fh; chmod 0600, $pwfile; }
write_password('wrong-pw');
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.redis_url = '" . $redis->url('') . "'");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.redis_password_file = '$pwfile'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'during bad auth')");
ok($node->poll_query_until('postgres',
		"SELECT state = 'error' FROM ticket_ext.stream_status WHERE sink = 'redis'"),
	'a wrong password puts the sink in state error');
my $status = $node->safe_psql('postgres', "SELECT last_error FROM ticket_ext.stream_status WHERE sink = 'redis'");
like($status, qr/AUTH/i, "last_error says what is wrong ($status)");
unlike($status . slurp_file($node->logfile), qr/wrong-pw/, 'no password in the status view or the log');
my ($se, $so);
$node->psql('postgres', 'CREATE ROLE peeker LOGIN');
$node->psql('postgres', 'SHOW ticket_ext.redis_url', stdout => \$so, stderr => \$se,
	extra_params => [ '-U', 'peeker' ]);
like($se, qr/permission denied|must be superuser/, 'a non-superuser cannot SHOW the Redis URL');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_settings WHERE name = 'ticket_ext.redis_url'", extra_params => [ '-U', 'peeker' ]),
	'0', '... nor see it in pg_settings');
write_password('s3cret-pw');
ok($node->poll_query_until('postgres',
		"SELECT state = 'ok' FROM ticket_ext.stream_status WHERE sink = 'redis'"),
	'with the right password in the file it recovers (no reload needed)');
unlike(slurp_file($node->logfile), qr/s3cret-pw/, 'the password from the file is never logged');
check_stream($node, $redis, 'ticket_ext:events', 'after the auth error');

# --- a sink down: WAL is kept and the warning fires ----------------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET ticket_ext.stream_wal_warning = '2MB';
	SELECT pg_reload_conf();
});
$redis->kill9;
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(2, 1000000)");
$node->safe_psql('postgres', "SELECT ticket_reserve(2, 1, repeat('w', 200)) FROM generate_series(1, 3000)");
$node->safe_psql('postgres', "INSERT INTO noise (pad) SELECT repeat('y', 300) FROM generate_series(1, 20000)");
ok($node->poll_query_until('postgres', q{
	SELECT lag_bytes > 2 * 1024 * 1024 FROM ticket_ext.stream_status WHERE sink = 'redis'}),
	'while Redis is down the slot retains WAL');
my $warned = '';
for (1 .. 50)
{
	($warned) = slurp_file($node->logfile) =~ /(ticket_ext_stream" retains \d+ MB of WAL.*\n.*DETAIL:.*)/;
	last if $warned;
	usleep(200_000);
}
like($warned, qr/DETAIL:  \d+ MB are events the redis sink has not acknowledged yet/,
	'the retained-WAL warning fired, blaming the sink');
$redis->start;
check_stream($node, $redis, 'ticket_ext:events', 'after the outage');
ok($node->poll_query_until('postgres', q{
	SELECT lag_bytes < 1024 * 1024 FROM ticket_ext.stream_status WHERE sink = 'redis'}),
	'the retained WAL is released once Redis has everything');

# --- a long transaction holds WAL back: the warning says so, not the sink --
sleep 2;					# the "back under" LOG first
my $log_at = -s $node->logfile;
my ($lin, $lout) = ('', '');
my $long = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$lin, '>', \$lout);
$lin .= "BEGIN; INSERT INTO noise (pad) VALUES ('long'); SELECT 'open ' || pg_backend_pid();\n";
$long->pump until $lout =~ /open (\d+)/;
my $long_pid = $1;
sleep 16;					# older than the 15 s a restart_lsn may lag anyway
$node->safe_psql('postgres', "INSERT INTO noise (pad) SELECT repeat('y', 300) FROM generate_series(1, 20000)");
$node->safe_psql('postgres', "SELECT ticket_reserve(2, 1, 'during-long') FROM generate_series(1, 200)");
my $long_warning = '';
for (1 .. 100)
{
	($long_warning) = substr(slurp_file($node->logfile), $log_at) =~ /(retains \d+ MB of WAL.*\n.*DETAIL:.*)/;
	last if $long_warning;
	usleep(200_000);
}
like($long_warning, qr/MB are held by a long-running transaction \(the oldest: pid $long_pid, open \d+ s\)/,
	'WAL a long transaction holds back: the warning names the transaction, not the sink');
$lin .= "COMMIT;\n\\q\n";
$long->finish;

# --- DROP EXTENSION: the worker lets go, slot and publication disappear --
$node->safe_psql('postgres', 'DROP EXTENSION ticket_ext');
ok($node->poll_query_until('postgres', q{
	SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream')
	   AND NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'ticket_ext_events')}),
	'DROP EXTENSION: slot and publication removed by the worker');
$node->safe_psql('postgres', 'CREATE EXTENSION ticket_ext');
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(5, 10)");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream' AND active}),
	'CREATE EXTENSION again: the worker streams again');

# --- DROP EXTENSION, then CREATE EXTENSION while the worker cleans up ------
# gdb holds the worker as it starts its cleanup (it has just seen the
# extension gone); CREATE EXTENSION runs meanwhile.  The cleanup must not
# drop the new installation's publication or slot.
$node->safe_psql('postgres', 'DROP EXTENSION ticket_ext');
my $wpid = stream_worker_pid($node);
my $held = gdb_hold($wpid, 'break drop_leftovers', 'continue');
my ($cin, $cout, $cerr) = ('', '', '');
my $creator = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'),
	'-c', 'CREATE EXTENSION ticket_ext', '-c', 'SELECT ticket_ext.publish()', '-c', "SELECT 'created'" ], '<', \$cin, '>', \$cout, '2>', \$cerr);
# it is either done or waiting for the worker's lock; give it a moment
$node->poll_query_until('postgres', q{
	SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'ticket_ext')
	    OR EXISTS (SELECT 1 FROM pg_stat_activity WHERE query = 'CREATE EXTENSION ticket_ext' AND wait_event_type = 'Lock')});
gdb_release($held);
$creator->finish;
is($cout, "t\ncreated\n", 'CREATE EXTENSION (and publish()) during the cleanup succeeded') or diag($cerr);
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(6, 10)");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream' AND active}),
	'the new installation streams');
sleep 3;	# a cleanup that went wrong would have dropped them by now
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM pg_publication WHERE pubname = 'ticket_ext_events') || ','
	    || (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream')}), '1,1',
	'the cleanup of the dropped installation left the new publication and slot alone');
$node->safe_psql('postgres', "SELECT ticket_reserve(6, 1, 'after-race')");
my $after_race;
for (1 .. 100)
{
	($after_race) = grep { ($_->{holder} // '') eq 'after-race' } @{ $redis->entries('ticket_ext:events') };
	last if $after_race;
	usleep(100_000);
}
ok($after_race, '... and its events reach Redis');

# --- DROP and CREATE EXTENSION in one breath (between the worker's looks) --
my $before_quick = $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'");
$node->safe_psql('postgres', "SELECT ticket_reserve(6, 1, 'old-installation-' || g) FROM generate_series(1, 5) g");
$node->poll_query_until('postgres', "SELECT queued = 0 FROM ticket_ext.stream_status WHERE sink = 'redis'");
$node->safe_psql('postgres', 'DROP EXTENSION ticket_ext; CREATE EXTENSION ticket_ext; SELECT ticket_ext.create_item(7, 10); SELECT ticket_ext.create_item(6, 100)');
$node->safe_psql('postgres', "SELECT ticket_reserve(7, 1, 'new-installation')");
ok($node->poll_query_until('postgres', qq{
	SELECT origin > $before_quick FROM ticket_ext.stream_state WHERE sink = 'redis'}),
	'a reinstall between two of the worker\'s looks: a new slot and a snapshot');
my $lsn_q = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->poll_query_until('postgres', qq{
	SELECT slot_confirmed_lsn >= '$lsn_q' FROM ticket_ext.stream_status WHERE sink = 'redis'});
check_converged($node, $redis->entries('ticket_ext:events'), 'after a quick reinstall');

# --- the slot renamed by a reload: the old slot becomes the new one --------
my $origin = $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'");
my $top = $redis->entries('ticket_ext:events')->[-1]{id};
$redis->kill9;			# nothing delivered meanwhile: the old slot holds the events
$node->safe_psql('postgres', "SELECT ticket_reserve(6, 1, 'before-rename-' || g) FROM generate_series(1, 5) g");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.stream_slot = 'renamed_stream'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', q{
	SELECT string_agg(slot_name, ',') = 'renamed_stream' FROM pg_replication_slots WHERE plugin = 'ticket_ext'}),
	'after the rename only the new slot is left');
is($node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'redis'"), $origin,
	'... with the same origin: a copy, not a new history');
$redis->start;
$node->safe_psql('postgres', "SELECT ticket_reserve(6, 1, 'after-rename')");
my $lsn0 = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->poll_query_until('postgres', qq{
	SELECT slot_confirmed_lsn >= '$lsn0' FROM ticket_ext.stream_status WHERE sink = 'redis'});
my @since = @{ $redis->entries('ticket_ext:events', $top) };
is(join(',', sort map { $_->{holder} } grep { ($_->{holder} // '') =~ /rename/ } @since),
	join(',', sort((map { "before-rename-$_" } 1 .. 5), 'after-rename')),
	'after the rename: the events committed before and after it, each once');
is(scalar(grep { $_->{type} =~ /^snapshot/ } @since), 0, '... and no snapshot (nothing was lost)');

# --- a sink turned off and on again: its slot goes, then a snapshot --------
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.redis_url = ''");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', q{
	SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE plugin = 'ticket_ext')}),
	'a sink turned off: its slot is dropped (it would pin WAL)');
$node->safe_psql('postgres', "SELECT ticket_confirm(ticket_reserve(6, 1, 'while-off'))");
$node->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.redis_url");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', qq{
	SELECT origin > $origin AND state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'}),
	'turned on again: a new slot');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->poll_query_until('postgres', qq{
	SELECT slot_confirmed_lsn >= '$lsn' FROM ticket_ext.stream_status WHERE sink = 'redis'});
check_converged($node, $redis->entries('ticket_ext:events'), 'a sink turned off and on');

$node->stop;
$redis->stop;
done_testing();
