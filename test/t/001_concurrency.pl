# 64 clients hammer one item of capacity 20,000 with a mix of commits,
# aborts, savepoint rollbacks, confirms and releases while resync() runs
# and a watcher checks the tables: nothing is ever oversold, and at the end
# the counters equal the tables.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('concurrency');
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 20000, 'hammered')");

my @load = pgbench_scripts(
	commit => [ 35, "\\set q random(1, 4)\nSELECT ticket_reserve(1, :q, 'c');\n" ],
	confirm => [ 15, "BEGIN;\nSELECT coalesce(ticket_reserve(1, 1, 'p'), 0) AS h \\gset\n"
		  . "SELECT ticket_confirm(:h) WHERE :h > 0;\nCOMMIT;\n" ],
	abort => [ 15, "BEGIN;\nSELECT ticket_reserve(1, 2, 'a');\nROLLBACK;\n" ],
	savepoint => [ 15, "BEGIN;\nSELECT ticket_reserve(1, 1, 's');\nSAVEPOINT sp;\n"
		  . "SELECT ticket_reserve(1, 3, 's');\nROLLBACK TO SAVEPOINT sp;\nCOMMIT;\n" ],
	release => [ 20, "SELECT coalesce(ticket_reserve(1, 2, 'r'), 0) AS h \\gset\n"
		  . "SELECT ticket_release(:h) WHERE :h > 0;\n" ]);
# resync every 200 ms during the load
my @resync = pgbench_scripts(
	resync => [ 1, "SELECT count(*) FROM ticket_ext.resync(1);\n\\sleep 200 ms\n" ]);
# a watcher fails (division by zero) if the committed rows ever exceed capacity
my @watch = pgbench_scripts(
	watch => [ 1, "SELECT 1 / (CASE WHEN sum(qty) > 20000 THEN 0 ELSE 1 END) "
		  . "FROM ticket_ext.holds WHERE item_id = 1 AND status IN ('held', 'sold');\n"
		  . "\\sleep 50 ms\n" ]);

my @conn = ('-h', $node->host, '-p', $node->port, 'postgres');
my $secs = 15;
my ($out, $err, $rout, $rerr, $wout, $werr) = ('', '', '', '', '', '');
my $h = IPC::Run::start([ 'pgbench', '-n', '-M', 'prepared', '-c', 64, '-j', 2, '-T', $secs, @load, @conn ],
	'>', \$out, '2>', \$err);
my $r = IPC::Run::start([ 'pgbench', '-n', '-c', 1, '-T', $secs, @resync, @conn ],
	'>', \$rout, '2>', \$rerr);
my $w = IPC::Run::start([ 'pgbench', '-n', '-c', 1, '-T', $secs, @watch, @conn ],
	'>', \$wout, '2>', \$werr);
$h->finish;
$r->finish;
$w->finish;

is($h->result(0), 0, '64-client load ran without errors') or diag($err);
like($out, qr/number of clients: 64/, 'pgbench ran 64 clients');
my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($tx // 0, '>', 20000, "the load ran many transactions ($tx)");
is($r->result(0), 0, 'resync ran repeatedly during the load without errors') or diag($rerr);
my ($resyncs) = $rout =~ /number of transactions actually processed: (\d+)/;
cmp_ok($resyncs // 0, '>=', 10, "resync ran $resyncs times");
is($w->result(0), 0, 'the watcher never saw more taken than capacity') or diag($werr);

my $taken = check_invariants($node, 1, 'after the load');
cmp_ok($taken, '>', 19000, "the item sold out under load ($taken taken)");
my $statuses = $node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM ticket_ext.holds WHERE item_id = 1");
is($statuses, 'held,released,sold', 'holds were held, sold and released');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM ticket_ext.holds WHERE holder IN ('a')"),
	'0', 'aborted reservations left no rows');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM ticket_ext.holds WHERE holder = 's' AND qty = 3"),
	'0', 'savepoint rollbacks left no rows');

$node->stop;
done_testing();
