# Without shared_preload_libraries the extension installs, and every
# function fails with a clear error saying how to fix it; the server runs on.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('nopreload', no_preload => 1);
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '', 'not preloaded');

my ($out, $err);
$node->psql('postgres', 'SELECT ticket_reserve(1)', stdout => \$out, stderr => \$err);
like($err, qr/ticket_ext must be loaded via shared_preload_libraries/, 'reserve: clear error');
like($err, qr/HINT:\s+Add ticket_ext to shared_preload_libraries in postgresql.conf and restart/,
	'... with the fix as a hint');
for my $sql ('SELECT ticket_reserve(1)', 'SELECT ticket_available(1)',
	'SELECT ticket_ext.create_item(1, 10)', 'SELECT * FROM ticket_ext.verify()',
	'SELECT ticket_confirm(1)', 'SELECT ticket_release(1)')
{
	is(sqlstate_of($node, $sql), '55000', "$sql: SQLSTATE 55000");
}
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server keeps running');

# fix it as the hint says
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ticket_ext'");
$node->restart;
$node->safe_psql('postgres', 'SELECT ticket_ext.create_item(1, 10)');
ok($node->safe_psql('postgres', 'SELECT ticket_reserve(1)') =~ /^\d+$/, 'works once preloaded');

$node->stop;
done_testing();
