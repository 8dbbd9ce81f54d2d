# Pools in the windows a review found: a DROP/CREATE EXTENSION between a
# reservation joining its item and joining the item's pool (gdb holds the
# backend there), and a restart with too little shared memory for an item
# and its pool.
use strict;
use warnings;
use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('pools_faults', conf => "ticket_ext.expiry_interval = 200ms\n");

# --- a reinstall between joining the item and joining its pool -------------
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(100, 10, 'ticket');
	SELECT ticket_ext.create_item(101, 10, 'old pool');
});
$node->safe_psql('postgres', q{SELECT ticket_ext.set_pools(100, '{101}')});
$node->safe_psql('postgres', 'SELECT ticket_available(100)');

my ($out, $err) = ('', '');
my $r = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-v', 'ON_ERROR_STOP=0',
	  '-c', 'SELECT pg_backend_pid()', '-c', 'SELECT pg_sleep(3)',
	  '-c', q{SELECT ticket_reserve(100, 1, 'a') IS NOT NULL AS got} ],
	'>', \$out, '2>', \$err);
$r->pump until $out =~ /^(\d+)$/m;
my $pid = $1;
# stop when, joined to the item, it reads the item's links, before it joins
# the pool: the third read (the first two are its glance at the item and
# the pool before joining, ticket_peek_draw)
my $gdb = gdb_hold($pid, 'break ticket_links_read', 'ignore 1 2', 'continue', 'bt 3', 'delete');
$node->safe_psql('postgres', q{
	BEGIN;
	DROP EXTENSION ticket_ext CASCADE;
	CREATE EXTENSION ticket_ext;
	SELECT ticket_ext.create_item(100, 10, 'ticket');
	SELECT ticket_ext.create_item(101, 10, 'old pool, again');
	SELECT ticket_ext.create_item(102, 1, 'new pool');
	SELECT ticket_ext.set_pools(100, '{102}');
	COMMIT;
});
is($node->safe_psql('postgres', 'SELECT ticket_available(101) || \' \' || ticket_available(102)'), '10 1',
	'the new installation\'s pools are loaded');
my $said = gdb_release($gdb);
like($said, qr/Breakpoint \d+, ticket_links_read(?s:.*)ticket_join_draw/, 'gdb held the reservation after it joined the item') or diag($said);
$r->finish;
unlike($out, qr/^t$/m, 'the reservation that joined the old installation took nothing of the new one');
like($err, qr/reinstalled while this call ran/, '... it was refused (40001)') or diag("out: $out\nerr: $err");
$node->safe_psql('postgres', q{SELECT ticket_reserve(100, 1, 'b')});
is($node->safe_psql('postgres', q{
	SELECT sum(qty) FROM ticket_ext.holds h
	 WHERE ended_at IS NULL AND (item_id = 102 OR item_id IN (SELECT item_id FROM ticket_ext.items WHERE 102 = ANY (pool_ids)))}),
	'1', 'the new pool (capacity 1) is not oversold');
is($node->safe_psql('postgres', 'SELECT bool_and(ok) FROM ticket_ext.verify()'), 't', 'verify ok for every item');

# --- shared memory for the item but not its pool ---------------------------
# ten items, the fifth drawing on pool 200; after a restart with room for
# nine the item must not be loaded without its pool: releases and expiry
# of its holds go on
$node->safe_psql('postgres', q{
	DROP EXTENSION ticket_ext CASCADE;
	CREATE EXTENSION ticket_ext;
	SELECT ticket_ext.create_item(i, 10) FROM generate_series(1, 10) i;
	SELECT ticket_ext.create_item(200, 10, 'pool');
});
$node->safe_psql('postgres', q{SELECT ticket_ext.set_pools(5, '{200}')});
my $kept = $node->safe_psql('postgres', q{SELECT ticket_reserve(5, 2, 'kept')});
$node->safe_psql('postgres', q{SELECT ticket_reserve(5, 1, 'short', hold_for => '8 s')});
$node->append_conf('postgresql.conf', "ticket_ext.max_items = 9\n");
$node->restart;
my ($rc, $o, $e) = $node->psql('postgres', "SELECT ticket_release($kept)");
is($rc, 0, 'a hold of the item drawing on a pool is released after the restart') or diag($e);
is($node->safe_psql('postgres', 'SELECT ticket_available(5)'), '9', 'the item and its pool count it back');
my $expired = 0;
for (1 .. 150)
{
	$expired = $node->safe_psql('postgres', q{SELECT count(*) FROM ticket_ext.holds WHERE holder = 'short' AND status = 'expired'});
	last if $expired;
	usleep(100_000);
}
is($expired, '1', 'the short hold expired');
is($node->safe_psql('postgres', 'SELECT ok FROM ticket_ext.verify(5)') . ' ' .
   $node->safe_psql('postgres', 'SELECT ok FROM ticket_ext.verify(200)'), 't t', 'item and pool verify ok');

$node->stop;
done_testing();
