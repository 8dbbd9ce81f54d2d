# On a hot standby: reading availability works, every write path fails
# with a clear error (25006); after promotion the new primary sells, its
# counters rebuilt from the replicated tables.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $primary = new_ticket_node('primary', allows_streaming => 1);
$primary->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(1, 10, 'replicated');
	SELECT ticket_reserve(1, 3, 'before failover');
});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', "SELECT ticket_reserve(1, 2, 'streamed')");
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is($standby->safe_psql('postgres', 'SELECT ticket_available(1)'), '5',
	'ticket_available works on the standby (counters loaded from replicated tables)');

my ($out, $err);
$standby->psql('postgres', 'SELECT ticket_reserve(1)', stdout => \$out, stderr => \$err);
like($err, qr/cannot reserve tickets during recovery/, 'reserve on a standby: clear error');
like($err, qr/HINT:\s+Connect to the primary server/, '... with a hint');
is(sqlstate_of($standby, 'SELECT ticket_reserve(1)'), '25006', 'reserve: SQLSTATE 25006');
is(sqlstate_of($standby, 'SELECT ticket_confirm(1)'), '25006', 'confirm: SQLSTATE 25006');
is(sqlstate_of($standby, 'SELECT ticket_release(1)'), '25006', 'release: SQLSTATE 25006');
is(sqlstate_of($standby, 'SELECT ticket_ext.set_capacity(1, 20)'), '25006', 'set_capacity: 25006');
is(sqlstate_of($standby, 'SELECT ticket_ext.pause(1)'), '25006', 'pause: 25006');
is(sqlstate_of($standby, 'SELECT * FROM ticket_ext.verify(1)'), '25006',
	'verify: the standby keeps no counters to verify (25006)');
is($standby->safe_psql('postgres', 'SELECT 1'), '1', 'the standby keeps running');

# the standby caches nothing: sales on the primary after a standby read
# must count after failover (capacity 10: 3 + 2 taken, now 5 more)
$primary->safe_psql('postgres', "SELECT ticket_reserve(1, 5, 'just before failover')");
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT ticket_available(1)'), '0',
	'the standby reads the latest replicated state, not a cached one');

# failover
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
is($standby->safe_psql('postgres', 'SELECT ticket_reserve(1) IS NULL'), 't',
	'the promoted standby sells nothing more: 3 + 2 + 5 = capacity 10');
$standby->safe_psql('postgres', "SELECT ticket_ext.set_capacity(1, 12)");
ok($standby->safe_psql('postgres', "SELECT ticket_reserve(1, 2, 'after failover')") =~ /^\d+$/,
	'it sells again once capacity is raised');
is($standby->safe_psql('postgres', 'SELECT ticket_reserve(1) IS NULL'), 't',
	'... and never more than the new capacity');
check_invariants($standby, 1, 'after promotion');

$standby->stop;
$primary->stop;
done_testing();
