# verify() and resync() while a sale goes on: verify never reports a
# consistent item as "not ok" (ok is true, or NULL when it could not get a
# consistent reading), resync never corrects a consistent item, never
# fails because transactions are open, and never makes sales wait.
use strict;
use warnings;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('verify_load');
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(10, 100000000, 'busy');
	SELECT ticket_ext.create_item(6, 100, 'idle transaction');
});

# 8 clients selling item 10: reserve (short holds that expire during the
# run), reserve + confirm, reserve + release, aborted reserve, savepoints
my @scripts = pgbench_scripts(
	hold => [ 3, "SELECT ticket_reserve(10, 1 + :client_id % 3, 'load', '1 second');\n" ],
	sale => [ 3, "SELECT ticket_confirm(ticket_reserve(10, 2, 'load'));\n" ],
	refund => [ 2, "SELECT ticket_release(ticket_reserve(10, 1, 'load'));\n" ],
	abort => [ 1, "BEGIN;\nSELECT ticket_reserve(10, 3);\nROLLBACK;\n" ],
	savepoint => [ 1, "BEGIN;\nSAVEPOINT a;\nSELECT ticket_reserve(10, 2);\nROLLBACK TO SAVEPOINT a;\n"
		  . "SELECT ticket_reserve(10, 1, 'load');\nCOMMIT;\n" ]);
my $load = start_load($node, 12, 8, 100000, @scripts);

# verify 300 times during the load
my ($vok, $vbad, $vnull) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok),
	       count(*) FILTER (WHERE ok IS NULL)
	  FROM (SELECT (SELECT ok FROM ticket_ext.verify(10 + 0 * g)) AS ok, pg_sleep(0.01)
	          FROM generate_series(1, 300) g) v});
is($vbad, 0, "verify under load: never 'not ok' ($vok ok, $vnull unknown of 300)");
cmp_ok($vok, '>=', 290, 'verify under load: nearly every reading is conclusive');

# resync 50 times during the load: it succeeds and finds nothing to correct
my ($rdone, $rcorrected) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*), count(*) FILTER (WHERE r.corrected)
	  FROM generate_series(1, 50) g, LATERAL (SELECT * FROM ticket_ext.resync(10 + 0 * g)) r});
is($rdone, 50, 'resync under load: every call succeeded');
is($rcorrected, 0, 'resync under load: no correction of a consistent item');
$load->finish;

# an idle-in-transaction session holds a reservation of item 6
my $idle = $node->background_psql('postgres');
$idle->query_safe('BEGIN');
$idle->query_safe("SELECT ticket_reserve(6, 2, 'idle')");

# one client sells item 6 while resync(6) runs again and again
my $dir = tempdir(CLEANUP => 1);
my @r6 = pgbench_scripts(r6 => [ 1, "SELECT ticket_release(ticket_reserve(6, 1));\n" ]);
my ($out, $err) = ('', '');
my $seller = IPC::Run::start(
	[ 'pgbench', '-n', '-c', 1, '-T', 4, '-l', '--log-prefix', "$dir/r6", @r6,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
my ($rs_ok, $rs_fail) = (0, 0);
my $t0 = time;
while (time - $t0 < 3)
{
	my ($ret, $o, $e) = $node->psql('postgres', 'SELECT corrected FROM ticket_ext.resync(6)');
	if ($ret == 0 && $o eq 'f') { $rs_ok++ } else { $rs_fail++; diag("resync(6): $e") }
}
$seller->finish;
is($rs_fail, 0, "resync with a transaction idle on the item succeeds ($rs_ok calls)");
my @lat;
for my $f (glob "$dir/r6*")
{
	open my $fh, '<', $f or die $!;
	push @lat, map { (split / /)[2] / 1000.0 } <$fh>;
	close $fh;
}
@lat = sort { $a <=> $b } @lat;
my $max = $lat[-1] // 0;
my $p99 = $lat[ int(0.99 * $#lat) ] // 0;
note(sprintf('item 6 sales during resync: %d, p99 %.2f ms, max %.2f ms', scalar(@lat), $p99, $max));
cmp_ok(scalar(@lat), '>', 100, 'sales went on during the resyncs');
cmp_ok($max, '<', 250, sprintf('no sale waited for a resync (max %.1f ms)', $max));
is($node->safe_psql('postgres', 'SELECT in_flight, ok FROM ticket_ext.verify(6)'), '1|t',
	'verify is exact with a transaction idle on the item');

$idle->query_safe('COMMIT');
$idle->quit;

# 8 resyncs of a drifted item released at once (a barrier lock): the
# drift is corrected exactly once
for my $trial (1 .. 5)
{
	my $item = 100 + $trial;
	$node->safe_psql('postgres', qq{
		SELECT ticket_ext.create_item($item, 10);
		SELECT count(ticket_reserve($item, 1)) FROM generate_series(1, 5);
		UPDATE ticket_ext.holds SET status = 'released', ended_at = now()
		 WHERE hold_id IN (SELECT hold_id FROM ticket_ext.holds WHERE item_id = $item LIMIT 2);});
	my $barrier = $node->background_psql('postgres');
	$barrier->query_safe('SELECT pg_advisory_lock(4242)');
	my @h;
	for (1 .. 8)
	{
		my ($out, $err) = ('', '');
		push @h, [ IPC::Run::start(
			[ 'psql', '-XAtq', '-d', $node->connstr('postgres'),
			  '-c', 'SELECT pg_advisory_lock_shared(4242)',
			  '-c', "SELECT corrected FROM ticket_ext.resync($item)" ],
			'>', \$out, '2>', \$err), \$out ];
	}
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 8 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted})
	  or diag('resyncs did not all wait at the barrier');
	$barrier->query_safe('SELECT pg_advisory_unlock(4242)');
	$barrier->quit;
	my $corrections = 0;
	for my $x (@h)
	{
		$x->[0]->finish;
		$corrections++ if ${ $x->[1] } =~ /^t$/m;
	}
	is($corrections, 1, "trial $trial: 8 concurrent resyncs corrected the drift once");
	is($node->safe_psql('postgres', "SELECT counter_taken || ' ' || table_taken || ' ' || ok FROM ticket_ext.verify($item)"),
		'3 3 true', "trial $trial: and the counter equals the tables");
}
check_invariants($node, 6, 'item 6');
check_invariants($node, 10, 'item 10');
$node->stop;
done_testing();
