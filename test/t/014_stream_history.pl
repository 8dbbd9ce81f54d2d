# A server restored from a base backup streams into a Redis that already
# holds events of the original server written after the backup.  Those
# entries are ahead of the restored server's own WAL history: Redis
# refusing its new events as "not above the top" must not pass for
# "already delivered".  The sink stops with a clear error instead (nothing
# skipped, the slot keeps the events), and a new stream key gets them all.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;

my $redis = RedisTest->new;
my $conf = "ticket_ext.redis_url = '" . $redis->url . "'\n"
  . "ticket_ext.stream_backoff_max = 500ms\n";
my $a = new_ticket_node('origin', allows_streaming => 1, conf => $conf);
$a->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 100000, 'history')");
$a->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'before-backup') FROM generate_series(1, 100)");
check_stream($a, $redis, 'ticket_ext:events', 'origin before the backup');

$a->backup('b1');
$a->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'after-backup') FROM generate_series(1, 300)");
check_stream($a, $redis, 'ticket_ext:events', 'origin after the backup');
$a->stop;

# the backup comes up as a new server (its worker makes a new slot)
my $b = PostgreSQL::Test::Cluster->new('restored');
$b->init_from_backup($a, 'b1');
$b->start;
$b->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'ticket_ext_stream'")
  or die 'no slot on the restored server';
$b->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'restored-' || g) FROM generate_series(1, 50) g");

ok($b->poll_query_until('postgres',
		"SELECT state = 'error' AND last_error LIKE '%history changed%' FROM ticket_ext.stream_status WHERE sink = 'redis'"),
	'the restored server does not take Redis\'s newer entries for its own: the sink stops with "history changed"');
my $err = $b->safe_psql('postgres', "SELECT last_error FROM ticket_ext.stream_status WHERE sink = 'redis'");
like($err, qr/nothing is skipped.*redis_stream/, "the error says what to do ($err)");
my $lsn = $b->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
is($b->safe_psql('postgres',
		"SELECT slot_confirmed_lsn IS NULL OR slot_confirmed_lsn < '$lsn' FROM ticket_ext.stream_status WHERE sink = 'redis'"),
	't', 'the slot is not confirmed past the undelivered events');

# the documented way on: a new stream key, which gets every event
$b->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.redis_stream = 'ticket_ext:events:restored'");
$b->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $got = 0;
for (1 .. 300)
{
	$got = grep { ($_->{holder} // '') =~ /^restored-/ } @{ $redis->entries('ticket_ext:events:restored') };
	last if $got >= 50;
	usleep(100_000);
}
is($got, 50, 'all 50 reservations of the restored server reach the new stream key');
ok($b->poll_query_until('postgres',
		"SELECT state = 'ok' FROM ticket_ext.stream_status WHERE sink = 'redis'"), 'the sink is ok again');

# and a later crash-restart replay into that key is not taken for a new history
$b->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'later-' || g) FROM generate_series(1, 20) g");
$b->stop('immediate');
$b->start;
$b->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'after-crash')");
for (1 .. 300)
{
	$got = grep { ($_->{holder} // '') eq 'after-crash' } @{ $redis->entries('ticket_ext:events:restored') };
	last if $got;
	usleep(100_000);
}
is($got, 1, 'after a crash restart the replay is absorbed as before and new events flow');
is($b->safe_psql('postgres', "SELECT state FROM ticket_ext.stream_status WHERE sink = 'redis'"), 'ok',
	'no false "history changed" after a crash');

$b->stop;
$redis->stop;
done_testing();
