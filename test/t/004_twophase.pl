# PREPARE TRANSACTION: refused (clearly) when the transaction changed
# counters; allowed for confirm, whose COMMIT/ROLLBACK PREPARED works
# after a clean restart and after a crash restart.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('twophase');
$node->safe_psql('postgres', 'SELECT ticket_ext.create_item(1, 10)');

# refused paths
for my $case (
	[ 'reserve', 'SELECT ticket_reserve(1, 2)' ],
	[ 'release', "SELECT ticket_release(ticket_reserve(1, 1))" ],
	[ 'set_capacity', 'SELECT ticket_ext.set_capacity(1, 5)' ],
	[ 'pause', 'SELECT ticket_ext.pause(1)' ])
{
	my ($name, $sql) = @$case;
	my ($out, $err);
	my $ret = $node->psql('postgres', "BEGIN; $sql; PREPARE TRANSACTION 'p_$name';",
		stdout => \$out, stderr => \$err);
	like($err, qr/cannot PREPARE a transaction that changed ticket_ext counters/,
		"PREPARE after $name is refused with a clear error");
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_prepared_xacts"), '0',
		"... and nothing stays prepared after $name");
	check_invariants($node, 1, "after refused PREPARE ($name)");
}

# allowed: confirm changes no counter
my ($h1, $h2) = split /\n/, $node->safe_psql('postgres',
	"SELECT ticket_reserve(1, 2, 'p1'); SELECT ticket_reserve(1, 3, 'p2');");
$node->safe_psql('postgres', "BEGIN; SELECT ticket_confirm($h1); PREPARE TRANSACTION 'confirm1';");
$node->safe_psql('postgres', "BEGIN; SELECT ticket_confirm($h2); PREPARE TRANSACTION 'confirm2';");
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '2', 'two confirms prepared');

$node->restart;
$node->safe_psql('postgres', "COMMIT PREPARED 'confirm1'");
is($node->safe_psql('postgres', "SELECT status FROM ticket_ext.holds WHERE hold_id = $h1"), 'sold',
	'COMMIT PREPARED after a restart sells the hold');
check_invariants($node, 1, 'after COMMIT PREPARED');

$node->stop('immediate');
$node->start;
$node->safe_psql('postgres', "ROLLBACK PREPARED 'confirm2'");
is($node->safe_psql('postgres', "SELECT status FROM ticket_ext.holds WHERE hold_id = $h2"), 'held',
	'ROLLBACK PREPARED after a crash restart leaves the hold held');
check_invariants($node, 1, 'after ROLLBACK PREPARED');

# a prepared confirm keeps the row locked: release waits for it
$node->safe_psql('postgres', "BEGIN; SELECT ticket_confirm($h2); PREPARE TRANSACTION 'confirm3';");
my ($out, $err);
$node->psql('postgres', "SET lock_timeout = '200ms'; SELECT ticket_release($h2)",
	stdout => \$out, stderr => \$err);
like($err, qr/lock timeout/, 'release of a hold with a prepared confirm waits for it');
$node->safe_psql('postgres', "COMMIT PREPARED 'confirm3'");
$node->safe_psql('postgres', "SELECT ticket_release($h2)");
check_invariants($node, 1, 'after refunding the prepared sale');

$node->stop;
done_testing();
