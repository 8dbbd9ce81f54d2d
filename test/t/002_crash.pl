# Crashes in the middle of a sales burst: kill -9 of a backend (the
# postmaster then restarts everything with fresh shared memory) and
# "pg_ctl stop -m immediate" + start.  After each: nothing oversold, the
# counters rebuilt from the tables equal them, and every reservation a
# client saw commit is still there.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;

my $node = new_ticket_node('crash');
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(1, 5000, 'crash burst');
	SELECT ticket_ext.create_item(2, 1000000, 'acknowledged');
});

my @load = pgbench_scripts(
	commit => [ 40, "\\set q random(1, 4)\nSELECT ticket_reserve(1, :q);\n" ],
	confirm => [ 20, "BEGIN;\nSELECT coalesce(ticket_reserve(1, 1), 0) AS h \\gset\n"
		  . "SELECT ticket_confirm(:h) WHERE :h > 0;\nCOMMIT;\n" ],
	abort => [ 20, "BEGIN;\nSELECT ticket_reserve(1, 2);\nROLLBACK;\n" ],
	release => [ 20, "SELECT coalesce(ticket_reserve(1, 2), 0) AS h \\gset\n"
		  . "SELECT ticket_release(:h) WHERE :h > 0;\n" ]);
my $ackfile = "$PostgreSQL::Test::Utils::tmp_check/acked_holds_002";
unlink $ackfile;

sub burst_then
{
	my ($crash) = @_;
	my ($out, $err) = ('', '');
	my $load = IPC::Run::start(
		[ 'pgbench', '-n', '-M', 'prepared', '-c', 32, '-j', 2, '-T', 60, @load,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	my $acker = start_ack_client($node, $ackfile, 2);
	sleep 2;
	$crash->();
	kill 'KILL', $acker;
	waitpid $acker, 0;
	$load->kill_kill;
	$load->finish;
}

my $acked_before = 0;
for my $round (1 .. 3)
{
	burst_then(sub {
		my $victim = $node->safe_psql('postgres', q{
			SELECT pid FROM pg_stat_activity
			 WHERE backend_type = 'client backend' AND query LIKE '%ticket_%'
			   AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1});
		ok($victim =~ /^\d+$/, "round $round: found a busy backend ($victim)");
		kill 'KILL', $victim;
	});
	ok(wait_for_server($node), "round $round: server back after kill -9 of a backend");
	check_invariants($node, 1, "kill -9 round $round, burst item");
	check_invariants($node, 2, "kill -9 round $round, acked item");
}
like(slurp_file($node->logfile), qr/terminated by signal 9/, 'the postmaster saw the kills');

for my $round (1 .. 2)
{
	burst_then(sub { $node->stop('immediate'); });
	$node->start;
	check_invariants($node, 1, "immediate stop round $round, burst item");
	check_invariants($node, 2, "immediate stop round $round, acked item");
}

# every acknowledged reservation survived all five crashes
my ($acked, $missing) = acked_holds($node, $ackfile);
cmp_ok($acked, '>', 20, "$acked reservations were acknowledged to the client");
is($missing, 0, 'every acknowledged reservation is in the table after the crashes');

# counters were rebuilt by the worker after the last restart
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM ticket_ext.verify() WHERE ok") or die;
pass('verify() ok for all items after the last restart');

$node->stop;
done_testing();
