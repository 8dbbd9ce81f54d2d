# Sinks that another WAL history fed: every such case ends with the sink
# converged on this server's tables (every hold's current state), by a
# snapshot of the tables taken in the new slot's starting snapshot.
#  1. a server restored from a base backup, while Redis and Kinesis hold
#     events the original server wrote after the backup (ids above the
#     restored server's own);
#  2. the original server started again afterwards: Redis, now fed from a
#     newer slot, refuses it ("history"), nothing is written;
#  3. a promoted asynchronous standby that replayed changes the old
#     primary never streamed (its sinks were down);
#  4. a file-level copy of the data directory, slot included, started
#     after the original went on: the fork under the same slot is caught
#     by the transaction of Redis's last event;
#  5. a Redis that lost writes it had acknowledged (no append-only file):
#     it holds less than the slot was confirmed to, and gets a snapshot;
# and a crash restart is never taken for a new history.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PostgreSQL::Test::RecursiveCopy;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;
use KinesisTest;

my $redis = RedisTest->new;
my $kin = KinesisTest->new;
$kin->create_stream($_, 2) for qw(restore failover fork);

sub sink_conf
{
	my ($name) = @_;
	return "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.redis_stream = '$name'\n"
	  . "ticket_ext.kinesis_stream = '$name'\n"
	  . "ticket_ext.kinesis_endpoint = '" . $kin->endpoint . "'\n"
	  . "ticket_ext.aws_access_key_id = 'AKIDTEST'\n"
	  . "ticket_ext.aws_secret_access_key = 'secret'\n"
	  . "ticket_ext.stream_backoff_min = 20ms\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n";
}

sub caught_up
{
	my ($node, $label, @sinks) = @_;
	@sinks = qw(redis kinesis) unless @sinks;
	my $in = join(',', map { "'$_'" } @sinks);
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = @{[scalar @sinks]} FROM ticket_ext.stream_status
		 WHERE sink IN ($in) AND state = 'ok' AND slot_confirmed_lsn >= '$lsn'}),
		"$label: the sinks caught up")
	  or diag($node->safe_psql('postgres', 'SELECT * FROM ticket_ext.stream_status'));
}

# Kinesis as the README tells consumers to read it: per item, in (origin,
# event_id) order, each event once.
sub kinesis_events
{
	my ($stream) = @_;
	my (%seen, @ev);
	for my $r (@{ $kin->records($stream) })
	{
		my $d = $r->{data};
		next unless defined $d->{item_id};
		next if $seen{"$d->{origin} $d->{event_id}"}++;
		push @ev, [ $d->{item_id}, $d->{origin}, split(/-/, $d->{event_id}), $d ];
	}
	return [ map { $_->[4] }
		  sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] || $a->[2] <=> $b->[2] || $a->[3] <=> $b->[3] } @ev ];
}

sub ids_increase
{
	my ($entries) = @_;
	for my $i (1 .. $#$entries)
	{
		my ($a0, $b0) = split /-/, $entries->[ $i - 1 ]{id};
		my ($a1, $b1) = split /-/, $entries->[$i]{id};
		return 0 unless $a1 > $a0 || ($a1 == $a0 && $b1 > $b0);
	}
	return 1;
}

sub origin_of
{
	my ($node, $sink) = @_;
	return $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = '$sink'");
}

# --- 1. restored from a base backup ----------------------------------------
my $a = new_ticket_node('origin', allows_streaming => 1, conf => sink_conf('restore'));
$a->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 100000, 'history')");
$a->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'before-backup') FROM generate_series(1, 100)");
caught_up($a, 'origin before the backup');
my $a_origin = origin_of($a, 'redis');
$a->backup('b1');
$a->safe_psql('postgres', "SELECT ticket_reserve(1, 2, 'after-backup') FROM generate_series(1, 300)");
$a->safe_psql('postgres', "SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE hold_id % 3 = 0");
caught_up($a, 'origin after the backup');
my $a_entries = $redis->entries('restore');
$a->stop;

my $b = PostgreSQL::Test::Cluster->new('restored');
$b->init_from_backup($a, 'b1');
$b->start;
# (its new slot first: what commits before it is in its snapshot, not events)
$b->poll_query_until('postgres',
	"SELECT state = 'streaming' AND origin > $a_origin FROM ticket_ext.stream_state WHERE sink = 'redis'")
  or die 'the restored server does not stream';
$b->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'restored-' || g) FROM generate_series(1, 50) g");
$b->safe_psql('postgres', "SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE hold_id % 10 = 0");
caught_up($b, 'restored');
cmp_ok(origin_of($b, 'redis'), '>', $a_origin, 'the restored server streams from a new slot (a newer origin)');
my $entries = $redis->entries('restore');
ok(ids_increase($entries), 'Redis entry ids still increase: the new history continues above the old one');
my @new = @$entries[ scalar(@$a_entries) .. $#$entries ];
is($new[0]{type}, 'snapshot_item', 'what the restored server sent begins with its snapshot');
check_converged($b, $entries, 'restore, Redis');
check_converged($b, kinesis_events('restore'), 'restore, Kinesis');
is(scalar(grep { ($_->{holder} // '') =~ /^restored-/ && $_->{type} eq 'reserved' } @new), 50,
	'the 50 reservations of the restored server are in Redis as events');

# a crash restart is not a new history
my $b_origin = origin_of($b, 'redis');
$b->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'later-' || g) FROM generate_series(1, 20) g");
$b->stop('immediate');
$b->start;
$b->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'after-crash')");
caught_up($b, 'after a crash restart');
is(origin_of($b, 'redis'), $b_origin, 'after a crash restart: the same slot, no snapshot');
check_converged($b, $redis->entries('restore'), 'after a crash restart, Redis');
check_converged($b, kinesis_events('restore'), 'after a crash restart, Kinesis');

# --- 2. the original server comes back: Redis follows the newer history ----
$b->stop;
my $before = scalar(@{ $redis->entries('restore') });
$a->start;
ok($a->poll_query_until('postgres', q{
		SELECT state = 'error' AND last_error LIKE 'history: the sink holds % newer than this server''s slot%'
		  FROM ticket_ext.stream_status WHERE sink = 'redis'}),
	'the old server finds Redis fed by a newer slot: it refuses, and says so');
like($a->safe_psql('postgres', "SELECT last_error FROM ticket_ext.stream_status WHERE sink = 'redis'"),
	qr/stream_resnapshot\('redis'\)/, '... and what to do to make it the source anyway');
ok($a->poll_query_until('postgres',
		"SELECT state = 'history conflict' AND detail LIKE 'history:%' FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'stream_state says "history conflict"');
$a->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'zombie')");
sleep 2;
is(scalar(@{ $redis->entries('restore') }), $before, 'nothing of the old server reached Redis');
$a->stop;

# --- 3. a promoted asynchronous standby that replayed unstreamed changes ----
my $c = new_ticket_node('primary', allows_streaming => 1, conf => sink_conf('failover'));
$c->safe_psql('postgres', "SELECT ticket_ext.create_item(2, 100000, 'failover')");
$c->safe_psql('postgres', "SELECT ticket_reserve(2, 1, 'streamed-' || g) FROM generate_series(1, 50) g");
caught_up($c, 'primary');
$c->backup('b2');
my $d = PostgreSQL::Test::Cluster->new('standby');
$d->init_from_backup($c, 'b2', has_streaming => 1);
$d->start;
# the sinks go down; the primary goes on, the standby replays it all
$redis->kill9;
$kin->stop_kinesalite;
$c->safe_psql('postgres', "SELECT ticket_reserve(2, 1, 'unstreamed-' || g) FROM generate_series(1, 80) g");
$c->safe_psql('postgres', "SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE holder LIKE 'unstreamed-%' AND hold_id % 2 = 0");
my $c_lsn = $c->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$d->poll_query_until('postgres', "SELECT pg_last_wal_replay_lsn() >= '$c_lsn'") or die 'standby behind';
$c->stop('immediate');
$redis->start;
$kin->start;
$d->promote;
$d->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'not promoted';
$d->safe_psql('postgres', "SELECT ticket_reserve(2, 1, 'promoted-' || g) FROM generate_series(1, 20) g");
caught_up($d, 'promoted standby');
my $failover = $redis->entries('failover');
check_converged($d, $failover, 'failover, Redis');
check_converged($d, kinesis_events('failover'), 'failover, Kinesis');
is(scalar(grep { ($_->{holder} // '') =~ /^unstreamed-/ } grep { $_->{type} eq 'snapshot_hold' } @$failover), 80,
	'the 80 holds the old primary never streamed reached Redis with the snapshot');
ok(ids_increase($failover), 'Redis entry ids increase across the failover');
$d->stop;

# --- 4. a file-level copy of the data directory, slot included --------------
my $e = new_ticket_node('copied', conf => sink_conf('fork'));
$e->safe_psql('postgres', "SELECT ticket_ext.create_item(3, 100000, 'fork')");
$e->safe_psql('postgres', "SELECT ticket_reserve(3, 1, 'common-' || g) FROM generate_series(1, 30) g");
caught_up($e, 'before the copy');
my $fork_origin = origin_of($e, 'redis');
$e->stop;
my $copy = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::RecursiveCopy::copypath($e->data_dir, "$copy/data");
$e->start;
$e->safe_psql('postgres', "SELECT ticket_reserve(3, 1, 'lost-branch-' || g) FROM generate_series(1, 200) g");
caught_up($e, 'the branch that will be thrown away', 'redis');
$e->stop;
PostgreSQL::Test::Utils::system_or_bail('rm', '-rf', $e->data_dir);
PostgreSQL::Test::RecursiveCopy::copypath("$copy/data", $e->data_dir);
chmod 0700, $e->data_dir;
$e->start;
is(origin_of($e, 'redis'), $fork_origin, 'the copy streams from the same slot (its origin)');
$e->safe_psql('postgres', "SELECT ticket_reserve(3, 3, 'new-branch-' || g) FROM generate_series(1, 50) g");
ok($e->poll_query_until('postgres', "SELECT origin > $fork_origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'Redis\'s last event is not in this history: a new slot with a snapshot');
like(slurp_file($e->logfile), qr/the redis sink holds .* which this server's WAL history does not have/,
	'the log says why');
caught_up($e, 'after the fork', 'redis');
check_converged($e, $redis->entries('fork'), 'fork, Redis');
ok(ids_increase($redis->entries('fork')), 'Redis entry ids increase across the fork');
$e->stop;

# --- 5. a Redis that lost acknowledged writes (no append-only file) ----------
my $lossy = RedisTest->new(aof => 0);
my $f = new_ticket_node('lossy', conf => "ticket_ext.redis_url = '" . $lossy->url . "'\nticket_ext.redis_stream = 'lossy'\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n");
$f->safe_psql('postgres', "SELECT ticket_ext.create_item(4, 1000, 'lossy')");
$f->safe_psql('postgres', "SELECT ticket_reserve(4, 1, 'kept-' || g) FROM generate_series(1, 5) g");
caught_up($f, 'before the RDB save', 'redis');
$lossy->command('SAVE');
$f->safe_psql('postgres', "SELECT ticket_reserve(4, 1, 'forgotten-' || g) FROM generate_series(1, 5) g");
caught_up($f, 'after the save', 'redis');
sleep 2;					# the slot is confirmed past what Redis will forget
my $lossy_origin = origin_of($f, 'redis');
$lossy->kill9;
$lossy->start;				# back from the RDB: the forgotten reservations are gone
is(scalar(grep { ($_->{holder} // '') =~ /^forgotten/ } @{ $lossy->entries('lossy') }), 0,
	'Redis lost writes it had acknowledged');
my $wpid = $f->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ticket_ext stream redis'");
$f->safe_psql('postgres', "SELECT pg_terminate_backend($wpid)");
$f->safe_psql('postgres', "SELECT ticket_reserve(4, 1, 'after-' || g) FROM generate_series(1, 5) g");
ok($f->poll_query_until('postgres', "SELECT origin > $lossy_origin FROM ticket_ext.stream_state WHERE sink = 'redis'"),
	'the sink holding less than it acknowledged gets a new slot and a snapshot');
like(slurp_file($f->logfile), qr/the redis sink holds .*, less than it acknowledged/, 'the log says why');
caught_up($f, 'after the snapshot', 'redis');
check_converged($f, $lossy->entries('lossy'), 'Redis that lost writes');
$f->stop;
$lossy->stop;

$redis->stop;
done_testing();
