# Pools and per-customer limits under randomized interleavings.
#
# A festival: two day pools (Friday 101, Saturday 102) small enough to sell
# out within a second, day tickets drawing on one day (111, 112), a weekend
# pass drawing on both (113), the pools also sold directly, and a parking
# item (130) with no pool and no limit.  Holder limits: 4 on each day pool
# (over every item drawing on it), 2 on the pass.  48 pgbench clients mix
# commits, aborts, savepoint rollbacks (of reservations and of releases),
# confirms, releases, refunds of another session's holds, short holds that
# expire, two reservations of one holder in one transaction (also under
# REPEATABLE READ), for holders drawn from a set of 200, half of the calls
# from 16 of them (so limits are hit all the time and the same holder is
# in several sessions at once); TK008 is caught by a plpgsql wrapper (and
# counted), any other error ends a client and fails the test.  During the
# load resync() runs every 200 ms and must never find anything to correct
# (a counter that drifted from the tables, e.g. a pool not given back on
# abort, would be corrected), verify() must never say "not ok", and a
# watcher fails as soon as the committed rows oversell an item or a pool
# or put a holder over a limit.  After the load, and again after a kill -9
# of a busy backend and after an immediate stop in the middle of the same
# load: verify() ok for every item, each counter equal to what the rows
# say (summed here, not by the extension), nothing oversold, no holder
# over a limit, ticket_available() = the least room over the item and its
# pools, nothing left of rolled-back reservations, and every reservation a
# client saw commit still there.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;

my $node = new_ticket_node('pools_limits');
my %capacity = (101 => 300, 102 => 240, 111 => 100000, 112 => 100, 113 => 60,
	130 => 400, 9 => 100000000);
my %pools = (111 => '{101}', 112 => '{102}', 113 => '{101,102}');
my %limit = (101 => 4, 102 => 4, 113 => 2);

for my $item (sort keys %capacity)
{
	$node->safe_psql('postgres', "SELECT ticket_ext.create_item($item, $capacity{$item}, 'item $item')");
}
# each in a transaction of its own
$node->safe_psql('postgres', "SELECT ticket_ext.set_pools($_, '$pools{$_}')") for sort keys %pools;
$node->safe_psql('postgres', "SELECT ticket_ext.set_holder_limit($_, $limit{$_})") for sort keys %limit;
is($node->safe_psql('postgres', q{
	SELECT string_agg(item_id || ':' || pool_ids::text || ':' || coalesce(holder_limit, 0), ' ' ORDER BY item_id)
	  FROM ticket_ext.availability}),
	'9:{}:0 101:{}:4 102:{}:4 111:{101}:0 112:{102}:0 113:{101,102}:2 130:{}:0',
	'pools and limits set');

$node->safe_psql('postgres', q{
-- refusals the load expects are counted, not fatal
CREATE SEQUENCE tk008_seen;
CREATE SEQUENCE release_refused;
CREATE SEQUENCE confirm_refused;
-- item k of the mix (pools sold directly too), holder c of 200
CREATE FUNCTION res(k int, q int, c int, ms int DEFAULT 3000) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
	RETURN ticket_reserve((ARRAY[101, 102, 111, 111, 112, 113, 113, 130])[k], q, 'c' || c,
	                      make_interval(secs => ms / 1000.0));
EXCEPTION WHEN SQLSTATE 'TK008' THEN
	PERFORM nextval('tk008_seen');
	RETURN NULL;
END $$;
-- another session may have released or refunded the hold meanwhile
CREATE FUNCTION rel(h bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM ticket_release(h);
EXCEPTION WHEN SQLSTATE 'TK002' OR SQLSTATE 'TK003' THEN
	PERFORM nextval('release_refused');
END $$;
CREATE FUNCTION conf(h bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	RETURN ticket_confirm(h);
EXCEPTION WHEN SQLSTATE 'TK002' OR SQLSTATE 'TK003' THEN
	PERFORM nextval('confirm_refused');
	RETURN NULL;
END $$;
-- a refund of one of a holder's active holds, whichever session made it
CREATE FUNCTION refund(c int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE h bigint;
BEGIN
	SELECT hold_id INTO h FROM ticket_ext.holds
	 WHERE holder = 'c' || c AND ended_at IS NULL
	 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED;
	IF h IS NOT NULL THEN
		PERFORM rel(h);
	END IF;
	RETURN h;
END $$;

-- What the rows say, computed here from the tables alone: a hold counts
-- (status held or sold) on its item and on each of the item's pools.
-- (ended_at IS NULL too: the partial index keeps the watcher quick; that
-- the two agree is checked once quiet)
CREATE VIEW draws AS
SELECT d.item_id, h.holder, h.qty
  FROM ticket_ext.holds h
  JOIN ticket_ext.items m ON m.item_id = h.item_id
 CROSS JOIN LATERAL unnest(m.item_id || m.pool_ids) AS d(item_id)
 WHERE h.ended_at IS NULL AND h.status IN ('held', 'sold');
CREATE VIEW truth AS
WITH taken AS (SELECT item_id, sum(qty) AS taken FROM draws GROUP BY item_id)
SELECT i.item_id, i.capacity, i.holder_limit, i.pool_ids, coalesce(t.taken, 0)::bigint AS taken
  FROM ticket_ext.items i LEFT JOIN taken t USING (item_id);
-- room left: the least over the item and its pools
CREATE VIEW room AS
WITH t AS MATERIALIZED (SELECT * FROM truth)
SELECT t.item_id,
       (SELECT min(greatest(p.capacity - p.taken, 0)) FROM t p
         WHERE p.item_id = t.item_id OR p.item_id = ANY (t.pool_ids)) AS room
  FROM t;
CREATE VIEW over_limit AS
SELECT d.item_id, d.holder, sum(d.qty) AS has, i.holder_limit
  FROM draws d JOIN ticket_ext.items i ON i.item_id = d.item_id
 WHERE i.holder_limit IS NOT NULL
 GROUP BY d.item_id, d.holder, i.holder_limit
HAVING sum(d.qty) > i.holder_limit;

-- the watcher: fails at once on an oversold item or pool, or a holder over
-- a limit, in the committed rows; notes each time a pool is sold out
CREATE TABLE seen_full (item_id bigint, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION watch() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
	FOR r IN SELECT * FROM truth WHERE taken > capacity LOOP
		RAISE EXCEPTION 'oversold: item % has % taken of %', r.item_id, r.taken, r.capacity;
	END LOOP;
	FOR r IN SELECT * FROM over_limit LOOP
		RAISE EXCEPTION 'over the limit: holder % has % on item % (limit %)',
			r.holder, r.has, r.item_id, r.holder_limit;
	END LOOP;
	INSERT INTO seen_full (item_id) SELECT item_id FROM truth WHERE taken = capacity;
END $$;
-- what verify() and resync() said during the load
CREATE TABLE verify_seen (item_id bigint, ok boolean, v text);
CREATE TABLE resync_seen (item_id bigint, corrected boolean, r text);
});

# the load: one header draws item k, qty q, holder c (and a second k2, q2);
# half the calls come from 16 "hot" holders, each of them in a session or
# two at any moment (a race on a limit shows within a second then: checked
# with a lock-free limit emulated in plpgsql), the rest from all 200
my $pick = "\\set k random(1, 8)\n\\set k2 random(1, 8)\n\\set q random(1, 3)\n"
  . "\\set q2 random(1, 3)\n\\set hot random(0, 1)\n"
  . "\\set c :hot * random(1, 16) + (1 - :hot) * random(1, 200)\n";
# rolled-back reservations are made with hold_for 17 s: no row may have it
my @load = pgbench_scripts(
	reserve => [ 20, "${pick}SELECT res(:k, :q, :c);\n" ],
	confirm => [ 10, "${pick}SELECT ticket_confirm(h) FROM (SELECT res(:k, :q, :c) AS h) s WHERE h IS NOT NULL;\n" ],
	confirm_later => [ 8, "${pick}SELECT coalesce(res(:k, :q, :c), 0) AS h \\gset\n"
		  . "SELECT conf(:h) WHERE :h > 0;\n" ],
	release => [ 6, "${pick}SELECT coalesce(res(:k, :q, :c), 0) AS h \\gset\n"
		  . "SELECT rel(:h) WHERE :h > 0;\n" ],
	refund => [ 2, "${pick}SELECT refund(:c);\n" ],
	short => [ 12, "${pick}SELECT res(:k, :q, :c, 300);\n" ],
	abort => [ 8, "${pick}BEGIN;\nSELECT res(:k, :q, :c, 17000);\nSELECT res(:k2, :q2, :c, 17000);\nROLLBACK;\n" ],
	savepoint => [ 8, "${pick}BEGIN;\nSELECT res(:k, 1, :c);\nSAVEPOINT s;\nSELECT res(:k2, :q, :c, 17000);\n"
		  . "ROLLBACK TO SAVEPOINT s;\nSELECT res(:k2, :q2, :c);\nCOMMIT;\n" ],
	unrelease => [ 4, "${pick}BEGIN;\nSELECT coalesce(res(:k, :q, :c), 0) AS h \\gset\nSAVEPOINT s;\n"
		  . "SELECT rel(:h) WHERE :h > 0;\nROLLBACK TO SAVEPOINT s;\nCOMMIT;\n" ],
	# one holder twice in a transaction (the second call counts the first),
	# a pause between them, so that the holder's other sessions queue
	twice => [ 6, "${pick}BEGIN;\nSELECT res(:k, :q, :c);\n\\sleep 10 ms\nSELECT res(:k2, :q2, :c);\nCOMMIT;\n" ],
	# the snapshot is taken before the holder's lock is waited for: the
	# limit must count what committed meanwhile
	repeatable => [ 4, "${pick}BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT count(*) FROM ticket_ext.items;\n"
		  . "SELECT res(:k, :q, :c);\nSELECT res(:k2, :q2, :c);\nCOMMIT;\n" ],
	# no pool, no limit: no holder needed, no wrapper (no savepoint)
	unlimited => [ 4, "${pick}SELECT ticket_reserve(130, :q, NULL, '2 seconds');\n" ]);
my @resync = pgbench_scripts(resync => [ 1,
	"INSERT INTO resync_seen SELECT item_id, corrected, r::text FROM ticket_ext.resync() r;\n\\sleep 200 ms\n" ]);
my @verify = pgbench_scripts(verify => [ 1,
	"INSERT INTO verify_seen SELECT item_id, ok, v::text FROM ticket_ext.verify() v;\n\\sleep 100 ms\n" ]);
my @watch = pgbench_scripts(watch => [ 1, "SELECT watch();\n\\sleep 50 ms\n" ]);

my @conn = ('-h', $node->host, '-p', $node->port, 'postgres');

sub pgbench
{
	my ($secs, $clients, @scripts) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-j', ($clients > 1 ? 2 : 1),
		  '-T', $secs, @scripts, @conn ],
		'>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

sub processed
{
	my ($run) = @_;
	my ($n) = ${ $run->{out} } =~ /number of transactions actually processed: (\d+)/;
	return $n // 0;
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# Everything that must hold once quiet, from the tables.
sub check_all
{
	my ($label) = @_;
	ok(wait_for_server($node), "$label: server accepts queries");
	# quiet: every hold of the load has expired, sold or ended (the holds
	# of the acknowledging client last 10 minutes), so nothing changes
	# between the readings below
	ok($node->poll_query_until('postgres', q{
			SELECT NOT EXISTS (SELECT 1 FROM ticket_ext.holds
			                    WHERE status = 'held' AND expires_at < now() + interval '1 minute')}),
		"$label: the load's held holds have all expired");
	check_no_overdue($node, $label);
	ok($node->poll_query_until('postgres', 'SELECT bool_and(ok) FROM ticket_ext.verify()'),
		"$label: verify() ok once quiet") or diag(q1('SELECT * FROM ticket_ext.verify()'));

	my @bad = split /\n/, q1(q{
		SELECT v.item_id || ': verify ' || coalesce(v.ok::text, 'unknown')
		       || ', counter capacity ' || v.counter_capacity || ' of ' || t.capacity
		       || ', counter taken ' || v.counter_taken || ', verify''s table taken ' || v.table_taken
		       || ', rows say ' || t.taken
		  FROM ticket_ext.verify() v JOIN truth t USING (item_id)
		 WHERE v.ok IS NOT TRUE OR v.counter_capacity <> t.capacity
		    OR v.counter_taken <> t.taken OR v.table_taken <> t.taken OR v.in_flight <> 0
		 ORDER BY 1});
	is(scalar(@bad), 0, "$label: verify() ok for every item and pool, counters == the rows' own sums")
	  or diag(join("\n", @bad));
	is(q1('SELECT count(*) FROM ticket_ext.verify()'), scalar(keys %capacity),
		"$label: verify() covered every item");
	is(q1(q{SELECT string_agg(item_id || ': ' || taken || ' of ' || capacity, ', ')
	          FROM truth WHERE taken > capacity}), '',
		"$label: no item or pool oversold");
	is(q1(q{SELECT string_agg(holder || ' has ' || has || ' on ' || item_id, ', ') FROM over_limit}), '',
		"$label: no holder over a limit");
	is(q1(q{SELECT string_agg(item_id || ': ' || available || ', not ' || room, ', ')
	          FROM (SELECT r.*, ticket_available(r.item_id) AS available FROM room r) a
	         WHERE available <> room}), '',
		"$label: ticket_available() = the least room over the item and its pools");
	is(q1(q{SELECT count(*) FROM ticket_ext.holds
	         WHERE (status IN ('held', 'sold')) <> (ended_at IS NULL)
	            OR status NOT IN ('held', 'sold', 'released', 'expired')}), 0,
		"$label: every hold's status agrees with its end");
	is(q1(q{SELECT count(*) FROM ticket_ext.holds WHERE expires_at - created_at = interval '17 seconds'}),
		0, "$label: nothing left of rolled-back reservations");
}

# --- the load, with resync, verify and the watcher ------------------------
my $secs = 14;
my $load = pgbench($secs, 48, @load);
my $rs = pgbench($secs, 1, @resync);
my $vf = pgbench($secs, 1, @verify);
my $wt = pgbench($secs, 1, @watch);
$_->{h}->finish for ($load, $rs, $vf, $wt);

is($load->{h}->result(0), 0, '48-client load ran without an unexpected error')
  or diag(substr(${ $load->{err} }, 0, 3000));
cmp_ok(processed($load), '>', 20000, 'the load ran ' . processed($load) . ' transactions');
is($wt->{h}->result(0), 0, 'the watcher never saw an oversold item or pool, or a holder over a limit')
  or diag(${ $wt->{err} });
cmp_ok(processed($wt), '>=', 50, 'the watcher looked ' . processed($wt) . ' times');
is($rs->{h}->result(0), 0, 'resync ran during the load without errors') or diag(${ $rs->{err} });
my ($resyncs, $corrected) = split /\|/,
  q1('SELECT count(*), count(*) FILTER (WHERE corrected) FROM resync_seen WHERE item_id > 100');
cmp_ok($resyncs, '>=', 5 * 30, "resync ran $resyncs times on the items and pools");
is($corrected, 0, 'resync never had anything to correct during the load')
  or diag(q1('SELECT string_agg(r, E\'\n\') FROM resync_seen WHERE corrected'));
is($vf->{h}->result(0), 0, 'verify ran during the load without errors') or diag(${ $vf->{err} });
my ($vbad, $vall) = split /\|/, q1(q{SELECT count(*) FILTER (WHERE NOT ok), count(*) FROM verify_seen});
is($vbad, 0, "verify during the load: never 'not ok' ($vall readings)")
  or diag(q1(q{SELECT string_agg(v, E'\n') FROM verify_seen WHERE NOT ok}));
my ($vok, $vnull) = split /\|/, q1(q{
	SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE ok IS NULL)
	  FROM verify_seen WHERE item_id IN (101, 102)});
cmp_ok($vok, '>=', 10, "verify of the pools was conclusive during the load ($vok ok, $vnull unknown)");

# the load went where it was meant to
my $tk008 = q1('SELECT last_value FROM tk008_seen');
cmp_ok($tk008, '>', 1000, "holder limits were hit again and again ($tk008 times TK008)");
is(q1('SELECT string_agg(DISTINCT item_id::text, \',\' ORDER BY item_id::text) FROM seen_full WHERE item_id IN (101, 102)'),
	'101,102', 'both day pools were seen sold out during the load');
my $full = q1('SELECT count(*) FROM seen_full WHERE item_id IN (101, 102)');
cmp_ok($full, '>=', 10, "the pools were sold out much of the time ($full sightings)");
is(q1(q{SELECT count(*) FROM (SELECT item_id FROM ticket_ext.holds WHERE item_id IN (101, 102, 111, 112, 113)
         GROUP BY item_id HAVING count(DISTINCT status) = 4) s}), 5,
	'every pooled item and pool had holds held, sold, released and expired');
my $at_limit = q1(q{SELECT count(*) FROM (SELECT d.item_id, d.holder FROM draws d JOIN ticket_ext.items i USING (item_id)
         WHERE i.holder_limit IS NOT NULL GROUP BY 1, 2, i.holder_limit HAVING sum(qty) = i.holder_limit) s});
cmp_ok($at_limit, '>', 0, "holders are at their limit when the load ends ($at_limit)");

check_all('after the load');
is(sqlstate_of($node, "SELECT ticket_reserve(113, 1)"), 'TK009', 'a NULL holder on a limited pass: TK009');
is(sqlstate_of($node, "SELECT ticket_reserve(111, 1)"), 'TK009',
	'a NULL holder on a ticket whose pool is limited: TK009');

# --- kill -9 of a busy backend, then an immediate stop, mid-load -----------
# a file of this test's own: tmp_check is shared by the suite's tests (002
# appends its acknowledged hold ids to acked_holds, ids of another cluster)
my $ackfile = "$PostgreSQL::Test::Utils::tmp_check/acked_holds_023";
unlink $ackfile;
for my $crash ('kill -9 of a backend', 'immediate stop')
{
	$load = pgbench(30, 48, @load);
	my $acker = start_ack_client($node, $ackfile, 9, 20_000);
	sleep 3;
	if ($crash =~ /kill/)
	{
		my $victim = q1(q{
			SELECT pid FROM pg_stat_activity
			 WHERE backend_type = 'client backend' AND query ~ 'res\(|ticket_'
			   AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1});
		like($victim, qr/^\d+$/, "$crash: a busy backend to kill ($victim)");
		kill 'KILL', $victim;
		usleep(300_000);
	}
	else
	{
		$node->stop('immediate');
		$node->start;
	}
	kill 'KILL', $acker;
	waitpid $acker, 0;
	$load->{h}->kill_kill;
	$load->{h}->finish;
	ok(wait_for_server($node), "$crash: server back");
	my ($rc, $wout, $werr) = $node->psql('postgres', 'SELECT watch()');
	is($rc, 0, "$crash: the watcher's check holds after the restart") or diag($werr);
	check_all("after $crash");
}
like(slurp_file($node->logfile), qr/terminated by signal 9/, 'the postmaster saw the kill');
my ($acked, $missing) = acked_holds($node, $ackfile);
cmp_ok($acked, '>', 10, "$acked reservations were acknowledged to the client");
is($missing, 0, 'every acknowledged reservation is in the table after the crashes');

$node->stop;
done_testing();
