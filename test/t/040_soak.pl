# Randomized interleavings, checked after every phase once quiet.
#
# Sellers (pgbench) mix short holds (some shorter than the transaction that
# takes them), sales, refunds, aborts, savepoint rollbacks, same-key
# retries from many clients at once, long transactions and calls smuggled
# into parallel mode; two admins storm pause/resume and capacity (raised
# for good, lowered only in transactions or savepoints that roll back, so
# "taken <= capacity" stays a strict oversell check); verify and resync run
# throughout.  Between phases the extension is dropped and created again
# while sessions sit idle in transaction with the old installation cached
# (and one of them joined to an item).  After each phase: no item oversold,
# counters == tables (verify all ok, nothing in flight), no held hold past
# its expiry, verify never said "not ok" during the phase.
#
# SOAK_SECONDS (default 60) is the total load time; `make soak` runs longer.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use TicketTest;

my $total = $ENV{SOAK_SECONDS} || 60;
my $phases = 4;
my $phase_secs = int($total / $phases) || 1;
my $seed = ($ENV{SOAK_SEED} // '') ne '' ? $ENV{SOAK_SEED} : int(rand(1_000_000));
note("soak: $phases phases of $phase_secs s, seed $seed");
srand($seed);

my $node = new_ticket_node('soak',
	conf => "max_connections = 100\nticket_ext.resync_timeout = 2s\n");
my @items = (1 .. 6);
my %base = (1 => 40, 2 => 200, 3 => 5, 4 => 1000, 5 => 60, 6 => 15);

# Wrappers the load calls: expected refusals (paused, reloading, retry,
# released/expired holds) are counted, not fatal; anything else fails the
# pgbench client and so the phase.  The exception blocks are savepoints:
# more rollbacks to exercise.
my $setup = q{
CREATE SCHEMA IF NOT EXISTS soak;
CREATE TABLE IF NOT EXISTS soak.refused (sqlstate text, n bigint DEFAULT 0, PRIMARY KEY (sqlstate));
CREATE OR REPLACE FUNCTION soak.note(state text) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO soak.refused VALUES (state, 1) ON CONFLICT (sqlstate) DO UPDATE SET n = soak.refused.n + 1 $$;
CREATE OR REPLACE FUNCTION soak.reserve(item bigint, qty int, hold interval, k text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN ticket_reserve(item, qty, 'soak', hold, k);
EXCEPTION WHEN SQLSTATE 'TK001' OR lock_not_available   -- paused
              OR serialization_failure THEN
  PERFORM soak.note(SQLSTATE);
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION soak.confirm(h bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF h IS NULL THEN RETURN NULL; END IF;
  RETURN ticket_confirm(h);
EXCEPTION WHEN SQLSTATE 'TK002' OR SQLSTATE 'TK003' OR serialization_failure THEN
  PERFORM soak.note(SQLSTATE);
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION soak.release(h bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF h IS NOT NULL THEN PERFORM ticket_release(h); END IF;
EXCEPTION WHEN SQLSTATE 'TK002' OR SQLSTATE 'TK003' OR serialization_failure
              OR lock_not_available THEN
  PERFORM soak.note(SQLSTATE);
END $$;
CREATE OR REPLACE FUNCTION soak.try_buy(bigint) RETURNS bigint LANGUAGE sql PARALLEL SAFE
  AS 'SELECT ticket_reserve($1)';
-- in parallel mode the call must be refused with 25000, never run
CREATE OR REPLACE FUNCTION soak.parallel(item bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM soak.try_buy(item);
  PERFORM soak.note('parallel ran');
EXCEPTION WHEN invalid_transaction_state THEN
  PERFORM soak.note('25000');
END $$;
CREATE OR REPLACE FUNCTION soak.admin(item bigint, action int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE cap bigint;
BEGIN
  CASE action
    WHEN 0 THEN PERFORM ticket_ext.pause(item);
    WHEN 1 THEN PERFORM ticket_ext.resume(item);
    WHEN 2 THEN
      SELECT capacity INTO cap FROM ticket_ext.items WHERE item_id = item;
      PERFORM ticket_ext.set_capacity(item, cap + 1);
    WHEN 3 THEN
      -- lower, then roll it back (a savepoint)
      BEGIN
        SELECT capacity INTO cap FROM ticket_ext.items WHERE item_id = item;
        PERFORM ticket_ext.set_capacity(item, greatest(cap - 7, 0));
        PERFORM ticket_ext.pause(item);
        RAISE EXCEPTION 'undo' USING ERRCODE = 'P0001';
      EXCEPTION WHEN raise_exception THEN NULL;
      END;
    ELSE
      PERFORM ticket_ext.resume(item);
      PERFORM ticket_ext.pause(item);
      PERFORM ticket_ext.resume(item);
  END CASE;
EXCEPTION WHEN lock_not_available THEN
  PERFORM soak.note(SQLSTATE);
END $$;
};
$node->safe_psql('postgres', $setup);

sub create_items
{
	$node->safe_psql('postgres',
		join('', map { "SELECT ticket_ext.create_item($_, $base{$_});\n" } @items));
}
create_items();

my $i_expr = '\set item random(1, 6)' . "\n";
my @sellers = pgbench_scripts(
	hold => [ 4, $i_expr . "\\set ms random(1, 3000)\n"
		  . "SELECT soak.reserve(:item, 1 + :client_id % 2, (:ms || ' ms')::interval, NULL);\n" ],
	sale => [ 4, $i_expr . "SELECT soak.confirm(soak.reserve(:item, 1, NULL, NULL));\n" ],
	refund => [ 2, $i_expr . "SELECT soak.release(soak.reserve(:item, 2, NULL, NULL));\n" ],
	keyed => [ 3, $i_expr . "\\set k random(1, 30)\n"
		  . "SELECT soak.confirm(soak.reserve(:item, 2, '2 seconds', 'order-' || :k));\n" ],
	long => [ 1, $i_expr . "\\set ms random(100, 2500)\nBEGIN;\n"
		  . "SELECT soak.reserve(:item, 1, '1 second', NULL);\nSELECT pg_sleep(:ms / 1000.0);\n"
		  . "SELECT soak.reserve(:item, 1, '1 microsecond', NULL);\nCOMMIT;\n" ],
	abort => [ 1, $i_expr . "BEGIN;\nSELECT soak.reserve(:item, 3, NULL, NULL);\nROLLBACK;\n" ],
	savepoint => [ 1, $i_expr . "BEGIN;\nSELECT soak.reserve(:item, 1, NULL, NULL);\nSAVEPOINT a;\n"
		  . "SELECT soak.reserve(:item, 2, NULL, NULL);\nSELECT soak.release(soak.reserve(:item, 1, NULL, NULL));\n"
		  . "ROLLBACK TO SAVEPOINT a;\nCOMMIT;\n" ],
	parallel => [ 1, $i_expr . "SET force_parallel_mode = on;\nSET parallel_setup_cost = 0;\n"
		  . "SELECT soak.parallel(:item);\nRESET force_parallel_mode;\nRESET parallel_setup_cost;\n" ]);
my @admins = pgbench_scripts(
	admin => [ 1, $i_expr . "\\set a random(0, 4)\n\\set rb random(0, 3)\n"
		  . "BEGIN;\nSELECT soak.admin(:item, :a);\n\\if :rb = 0\nROLLBACK;\n\\else\nCOMMIT;\n\\endif\n" ]);
my @watch = pgbench_scripts(
	watch => [ 1, $i_expr . "INSERT INTO soak.verify_log SELECT ok FROM ticket_ext.verify();\n"
		  . "SELECT * FROM ticket_ext.resync(:item);\n" ]);
$node->safe_psql('postgres', 'CREATE TABLE soak.verify_log (ok boolean)');

sub run_pgbench
{
	my ($clients, $secs, @scripts) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $secs, @scripts,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

sub finish_pgbench
{
	my ($run, $label) = @_;
	$run->{h}->finish;
	my ($failed) = ${ $run->{out} } =~ /number of failed transactions: (\d+)/;
	my ($done) = ${ $run->{out} } =~ /number of transactions actually processed: (\d+)/;
	ok($run->{h}->result == 0 && ($failed // 1) == 0,
		"$label: no unexpected error (" . ($done // 0) . ' transactions)')
	  or diag(${ $run->{err} } =~ s/\n.*//sr, "\n", substr(${ $run->{err} }, 0, 2000));
	return $done // 0;
}

sub check_quiet
{
	my ($label) = @_;
	# quiet: the short holds have expired (no expiry commits while we
	# compare), nothing open on any item
	$node->poll_query_until('postgres', q{
		SELECT NOT EXISTS (SELECT 1 FROM ticket_ext.holds
		                    WHERE status = 'held' AND expires_at < now() + interval '2 seconds')})
	  or diag("$label: holds still due for expiry");
	$node->poll_query_until('postgres',
		'SELECT bool_and(in_flight = 0) FROM ticket_ext.verify()')
	  or diag("$label: transactions still in flight");
	my $rows = $node->safe_psql('postgres',
		'SELECT item_id, capacity, table_taken, counter_taken, in_flight, ok FROM ticket_ext.verify() ORDER BY 1');
	my ($over, $bad) = (0, 0);
	for my $r (split /\n/, $rows)
	{
		my ($item, $cap, $taken, $ctaken, $inflight, $ok) = split /\|/, $r;
		$over++ if $taken > $cap;
		$bad++ unless $ok eq 't' && $inflight == 0;
	}
	is($over, 0, "$label: no item oversold");
	is($bad, 0, "$label: counters == tables, nothing in flight") or diag($rows);
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM ticket_ext.verify() v
		 WHERE ticket_available(v.item_id) <> greatest(v.capacity - v.table_taken, 0)}),
		'0', "$label: available = capacity - taken everywhere");
	check_no_overdue($node, $label);
	is($node->safe_psql('postgres', 'SELECT count(*) FROM soak.verify_log WHERE NOT ok'),
		'0', "$label: verify never said 'not ok' during the phase");
	is($node->safe_psql('postgres', q{SELECT coalesce(sum(n), 0) FROM soak.refused WHERE sqlstate = 'parallel ran'}),
		'0', "$label: no call ran in parallel mode");
}

my $total_tx = 0;
for my $phase (1 .. $phases)
{
	my $label = "phase $phase";
	my $sell = run_pgbench(8, $phase_secs, @sellers);
	my $adm = run_pgbench(2, $phase_secs, @admins);
	my $wat = run_pgbench(1, $phase_secs, @watch);
	$total_tx += finish_pgbench($sell, "$label sellers");
	finish_pgbench($adm, "$label admins");
	finish_pgbench($wat, "$label verify/resync");
	# resume everything, so the next phase sells
	$node->safe_psql('postgres', 'SELECT ticket_ext.resume(item_id) FROM ticket_ext.items');
	check_quiet($label);
	note($node->safe_psql('postgres', q{SELECT string_agg(sqlstate || ' ' || n, ', ') FROM soak.refused}));

	next if $phase == $phases;

	# reinstall while sessions are idle in transaction: one with the old
	# installation cached, one joined to a sold-out item of it
	$node->safe_psql('postgres', 'SELECT count(ticket_reserve(3, 1)) FROM generate_series(1, 2000)');
	my $stale = $node->background_psql('postgres');
	$stale->query_safe('BEGIN');
	$stale->query_safe('SELECT ticket_available(1)');
	my $joined = $node->background_psql('postgres');
	$joined->query_safe('BEGIN');
	$joined->query_safe('SELECT ticket_reserve(3, 5)');
	$node->safe_psql('postgres', "SET lock_timeout = '20s'; DROP EXTENSION ticket_ext CASCADE; CREATE EXTENSION ticket_ext");
	create_items();
	# the stale session reads the new installation, not the old one
	is($stale->query_safe('SELECT ticket_available(1)'), $base{1},
		"$label reinstall: a session with the old installation cached sees the new counters");
	$stale->query_safe('COMMIT');
	$stale->quit;
	# the joined one holds up the reload of item 3 (not any other item)
	is(sqlstate_of($node, 'SELECT ticket_available(3)'), '55P03',
		"$label reinstall: item 3 waits for the dropped installation's open transaction");
	is(sqlstate_of($node, "SET statement_timeout = '200ms'; SELECT ticket_available(3)"), '57014',
		"$label reinstall: a reload cancelled while it waits ...");
	is(sqlstate_of($node, 'SELECT ticket_available(3)'), '55P03',
		"$label reinstall: ... leaves the slot to be reloaded (and drained) again");
	is($node->safe_psql('postgres', 'SELECT ticket_available(1)'), $base{1},
		"$label reinstall: other items load");
	$joined->query('COMMIT');
	$joined->quit;
	is($node->safe_psql('postgres', 'SELECT ticket_available(3)'), $base{3},
		"$label reinstall: item 3 loads once it ended");
	$node->safe_psql('postgres', 'TRUNCATE soak.verify_log');
}
note("soak: $total_tx seller transactions");
cmp_ok($total_tx, '>', 10 * $total, 'the soak did sell');

$node->stop;
done_testing();
