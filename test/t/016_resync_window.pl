# resync() repairing a drifted counter applies two changes (capacity, then
# the rest of avail, or the other way round).  Between them the counter
# must never show more tickets than the tables have: the part that lowers
# availability goes first.  gdb holds the resyncing backend right after
# the first change while another session buys.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('resync_window');
# a drift resync must repair: capacity raised behind the counter's back
# (10 -> 15) and 8 tickets held that it never counted: 7 are left
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(105, 10);
	SELECT ticket_available(105);
	INSERT INTO ticket_ext.holds (item_id, qty, expires_at) VALUES (105, 8, now() + interval '1 hour');
	UPDATE ticket_ext.items SET capacity = 15 WHERE item_id = 105;
});
is($node->safe_psql('postgres', 'SELECT ok FROM ticket_ext.verify(105)'), 'f', 'the counter has drifted');

my ($out, $err) = ('', '');
my $r = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres') . ' application_name=resyncer',
	  '-c', 'SELECT pg_backend_pid()', '-c', 'SELECT pg_sleep(3)',
	  '-c', 'SELECT corrected FROM ticket_ext.resync(105)' ],
	'>', \$out, '2>', \$err);
$r->pump until $out =~ /^(\d+)$/m;
my $pid = $1;
# stop right after resync's first change to the counter, whichever it is
my $gdb = gdb_hold($pid, 'break counter_add', 'break counter_add_capacity', 'continue',
	'delete', 'finish');

# the resync is between its two changes: buy everything on offer
my $shown = $node->safe_psql('postgres', 'SELECT ticket_available(105)');
cmp_ok($shown, '<=', 7, "between resync's two changes the counter offers at most the 7 left ($shown)");
my $got = $node->safe_psql('postgres',
	'SELECT count(ticket_reserve(105, 10)) + count(ticket_reserve(105, 5))');
my $said = gdb_release($gdb);
like($said, qr/Breakpoint \d+, counter_add(?s:.*)resync_item/, 'gdb held resync after its first counter change')
  or diag($said);
$r->finish;
is($out =~ /^t$/m ? 't' : $out, 't', 'resync corrected the item');

my $taken = $node->safe_psql('postgres',
	"SELECT sum(qty) FROM ticket_ext.holds WHERE item_id = 105 AND ended_at IS NULL");
cmp_ok($taken, '<=', 15, "nothing oversold: $taken of 15 taken ($got reservations in the window)");
is($node->safe_psql('postgres', 'SELECT ok FROM ticket_ext.verify(105)'), 't', 'verify ok afterwards');
$node->stop;
done_testing();
