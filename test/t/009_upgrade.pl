# Extension versions: 1.0 with data in it, then ALTER EXTENSION UPDATE,
# equals a fresh install (every member object, as pg_dump --binary-upgrade
# writes them out), keeps its data and counters, and the new shared
# library works with a database still at 1.0.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('upgrade', no_extension => 1);
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

$node->safe_psql('postgres', q{CREATE EXTENSION ticket_ext VERSION '1.0'});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'ticket_ext'}),
	'1.0', 'installed at 1.0');

# the new library with a database still at 1.0
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(1, 10, 'old');
	SELECT ticket_confirm(ticket_reserve(1, 3, 'sold'));
	SELECT ticket_reserve(1, 2, 'held', idempotency_key => 'k1');
});
is($node->safe_psql('postgres', 'SELECT ticket_available(1)'), '5', 'sales work at 1.0');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ticket_ext.stream_status WHERE events_sent >= 0'), '2',
	'1.0\'s stream_status (16 columns) works with the new library');
is(sqlstate_of($node, 'SELECT ticket_reserve(1, 1, idempotency_key => \'k1\')'), 'TK006',
	'... which answers with 1.1\'s SQLSTATEs (docs/errors.md)');
check_invariants($node, 1, 'at 1.0');

$node->safe_psql('postgres', 'ALTER EXTENSION ticket_ext UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'ticket_ext'}),
	'1.1', 'updated to 1.1');
is($node->safe_psql('postgres',
	q{SELECT string_agg(status || ' ' || qty, ', ' ORDER BY hold_id) FROM ticket_ext.holds}),
	'sold 3, held 2', 'the holds are intact');
is($node->safe_psql('postgres', 'SELECT ticket_available(1)'), '5', 'the counters are intact');
is($node->safe_psql('postgres', q{SELECT ticket_reserve(1, 2, 'held', idempotency_key => 'k1')
	= (SELECT hold_id FROM ticket_ext.holds WHERE idempotency_key = 'k1')}),
	't', 'an idempotency key from before the update returns its hold');
check_invariants($node, 1, 'after the update');

$node->safe_psql('fresh', 'CREATE EXTENSION ticket_ext');

# every member object of the extension, with its definition and privileges
sub members
{
	my ($db) = @_;
	my $dump = `pg_dump --schema-only --binary-upgrade --no-comments -h @{[$node->host]} -p @{[$node->port]} $db`;
	die "pg_dump failed" if $?;
	# OIDs, xids, LSNs and sequence positions differ, nothing else may
	my @lines = grep { !/binary_upgrade_set_|relfrozenxid|WHERE oid = |pg_catalog\.setval|^--|^\s*$|^\\(un)?restrict/ }
	  split /\n/, $dump;
	return join "\n", map { s/'\{[0-9,]+\}'/'{OIDS}'/gr } @lines;
}
# The publication is not a member (PostgreSQL 15 cannot make it one): a
# fresh 1.1 install makes none (ticket_ext.publish() does), an updated 1.0
# keeps the one its subscribers may use.  Compared on their own.
sub publication_lines
{
	my ($dump) = @_;
	return join "\n", grep { /^(CREATE|ALTER) PUBLICATION ticket_ext_events/ } split /\n/, $dump;
}
my ($up, $fresh) = (members('postgres'), members('fresh'));
my ($up_pub, $fresh_pub) = (publication_lines($up), publication_lines($fresh));
like($up_pub, qr/CREATE PUBLICATION ticket_ext_events/, 'the updated 1.0 installation keeps its publication');
is($fresh_pub, '', 'a fresh 1.1 install makes no publication');
# the install script itself makes none: no heuristic to miss a savepoint,
# and a publication of that name someone else made is left alone
$node->safe_psql('postgres', 'CREATE DATABASE savepointed');
$node->safe_psql('savepointed', q{
	CREATE TABLE their_table (x int);
	CREATE PUBLICATION ticket_ext_events FOR TABLE their_table;
	BEGIN; SAVEPOINT a; CREATE EXTENSION ticket_ext; COMMIT;
});
is($node->safe_psql('savepointed', q{SELECT string_agg(tablename, ',') FROM pg_publication_tables
	WHERE pubname = 'ticket_ext_events'}), 'their_table',
	'CREATE EXTENSION (in a savepoint) leaves a publication of that name as it was');
$node->safe_psql('fresh', 'SELECT ticket_ext.publish()');
is(publication_lines(members('fresh')), $up_pub, '... and ticket_ext.publish() makes the same one');
$_ = join "\n", grep { !/^(CREATE|ALTER) PUBLICATION ticket_ext_events/ } split /\n/, $_ for $up, $fresh;
like($up, qr/CREATE FUNCTION ticket_ext\.grant_app/, 'the dump lists the extension\'s members');
ok($up eq $fresh, '1.0 + ALTER EXTENSION UPDATE has exactly the objects of a fresh 1.1 install') or do
{
	my $dir = $node->basedir;
	PostgreSQL::Test::Utils::append_to_file("$dir/updated.sql", $up);
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	diag(`diff $dir/updated.sql $dir/fresh.sql`);
};

# roles granted under 1.0 keep their rights through the update, and get
# 1.1's new app functions (ticket_status, the holder-checking forms) and
# the remade stream_status view
$node->safe_psql('postgres', 'CREATE DATABASE granted');
$node->safe_psql('granted', q{
	CREATE EXTENSION ticket_ext VERSION '1.0';
	CREATE ROLE old_app LOGIN; CREATE ROLE old_admin LOGIN;
	SELECT ticket_ext.grant_app('old_app');
	SELECT ticket_ext.grant_admin('old_admin');
	CREATE ROLE kiosk LOGIN;            -- may reserve, nothing else
	GRANT USAGE ON SCHEMA ticket_ext TO kiosk;
	GRANT EXECUTE ON FUNCTION ticket_reserve(bigint, integer, text, interval, text) TO kiosk;
	CREATE ROLE monitor LOGIN;          -- reads stream_status, may pass that on
	GRANT USAGE ON SCHEMA ticket_ext TO monitor;
	GRANT SELECT ON ticket_ext.stream_status TO monitor WITH GRANT OPTION;
	GRANT EXECUTE ON FUNCTION ticket_ext.stream_status() TO monitor;
	SELECT ticket_ext.create_item(1, 10);
	ALTER EXTENSION ticket_ext UPDATE;
});
is($node->safe_psql('granted', q{SELECT has_function_privilege('kiosk', 'ticket_status(bigint)', 'EXECUTE'),
	has_function_privilege('kiosk', 'ticket_release(bigint, text)', 'EXECUTE')}), 'f|f',
	'a role that could only reserve gets none of the new app functions');
is($node->safe_psql('granted', q{SELECT has_table_privilege('monitor', 'ticket_ext.stream_status', 'SELECT WITH GRANT OPTION'),
	has_function_privilege('monitor', 'ticket_ext.stream_status()', 'EXECUTE')}), 't|t',
	'stream_status, made again, keeps its readers and their grant option');
is($node->safe_psql('granted', q{SET ROLE old_admin;
	SELECT count(*) FROM ticket_ext.stream_state WHERE sink IS NOT NULL;}), '2',
	'an admin role of 1.0 reads 1.1\'s stream_state');
is($node->safe_psql('granted', q{SET ROLE old_app;
	SELECT status FROM ticket_status(ticket_reserve(1, 1, 'a'));}), 'held',
	'an app role of 1.0 can use ticket_status after the update');
is($node->safe_psql('granted', q{SET ROLE old_app;
	SELECT ticket_confirm(ticket_reserve(1, 1, 'b'), 'b');}), 't',
	'... and confirm with the holder check');
is($node->safe_psql('granted', q{SET ROLE old_admin;
	SELECT count(*) >= 0 FROM ticket_ext.stream_status WHERE last_ok_at IS NULL OR last_ok_at IS NOT NULL;}), 't',
	'an admin role of 1.0 still reads stream_status, which has last_ok_at');
is(sqlstate_of($node, q{SET ROLE old_app; SELECT * FROM ticket_ext.stream_status}, 'granted'), '42501',
	'... and an app role still does not');

# and behaves like one: 1.1's grant_app refuses a caller without GRANT OPTION
$node->safe_psql('postgres', q{
	CREATE ROLE admin1 LOGIN; CREATE ROLE app1 LOGIN;
	SELECT ticket_ext.grant_admin('admin1');
});
is(sqlstate_of($node, q{SET ROLE admin1; SELECT ticket_ext.grant_app('app1')}), '42501',
	'the updated grant_app refuses a non-superuser admin');

$node->stop;
done_testing();
