# Pause state under the window between a transaction's end becoming visible
# and ticket_ext's callback: a second admin's change in that window must
# win, in every direction (commit, abort, savepoint rollback), so the
# counter's paused flag always ends equal to the last committed items row.
# The test-only module test/modules/ticket_test_hooks.so, LOADed in the
# first admin's session, sleeps in that window.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

my $node = new_ticket_node('pause_races');
my $hooks = test_hooks_path();
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(207, 100, 'pause races')");

# Start admin A: @steps run in one session, the last one held for 3 s in
# the window named by $delay_guc; returns once that last step has become
# visible to others ($visible_sql true) and A is still held.
sub start_held_admin
{
	my ($delay_guc, $visible_sql, @steps) = @_;
	my ($out, $err) = ('', '');
	my @c = map { ('-c', $_) } ("LOAD '$hooks'", "SET $delay_guc = 3000", @steps);
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres') . ' application_name=admin_a', @c ],
		'>', \$out, '2>', \$err);
	my $last = $steps[-1];
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE application_name = 'admin_a' AND state = 'active' AND query = '$last'})
	  or die "admin A never reached $last";
	$node->poll_query_until('postgres', $visible_sql)
	  or die "admin A's $last never became visible";
	return ($h, \$err);
}

# While admin A is still held in the window: verify must not report the
# consistent item as "not ok" (A's pause state was overtaken by B's); with
# $resync, resync must find nothing to correct then either.  (The first
# scenarios resync only afterwards: a resync that rebuilt the counter from
# the tables would repair what they check.)
sub check_window
{
	my ($label, $resync) = @_;
	is($node->safe_psql('postgres', 'SELECT ok FROM ticket_ext.verify(207)'), 't',
		"$label: verify ok while the first admin's callback is pending");
	is($node->safe_psql('postgres', 'SELECT corrected FROM ticket_ext.resync(207)'), 'f',
		"$label: resync corrects nothing then") if $resync;
}

# The item's pause state everywhere: table, counter (through reserve), verify.
sub check_paused
{
	my ($want, $label) = @_;
	is($node->safe_psql('postgres', 'SELECT paused FROM ticket_ext.items WHERE item_id = 207'),
		$want ? 't' : 'f', "$label: items.paused");
	my $state = sqlstate_of($node, 'SELECT ticket_release(ticket_reserve(207))');
	is($state, $want ? 'TK001' : '', "$label: reserve " . ($want ? 'refused (paused)' : 'sells'));
	is($node->safe_psql('postgres', 'SELECT ok FROM ticket_ext.verify(207)'), 't',
		"$label: verify ok");
	is($node->safe_psql('postgres', 'SELECT corrected FROM ticket_ext.resync(207)'), 'f',
		"$label: resync finds nothing to correct");
}

sub set_paused
{
	my ($p) = @_;
	$node->safe_psql('postgres', $p ? 'SELECT ticket_ext.pause(207)' : 'SELECT ticket_ext.resume(207)');
}

my $row_unlocked = q{
	SELECT count(*) = 1 FROM (SELECT 1 FROM ticket_ext.items WHERE item_id = 207
	                          FOR UPDATE NOWAIT) x};

# 1. A resumes and commits; B pauses while A's commit callback is pending.
set_paused(1);
my ($h, $err) = start_held_admin('ticket_test.commit_delay_ms',
	'SELECT NOT paused FROM ticket_ext.items WHERE item_id = 207',
	'BEGIN', 'SELECT ticket_ext.resume(207)', 'COMMIT');
set_paused(1);
check_window('late resume commit vs. pause');
$h->finish;
is($$err, '', 'A: resume committed');
check_paused(1, 'late resume commit vs. pause');

# 2. A pauses and rolls back; B pauses in the window (A's undo must not
#    unpause what B paused).
set_paused(0);
($h, $err) = start_held_admin('ticket_test.abort_delay_ms', $row_unlocked,
	'BEGIN', 'SELECT ticket_ext.pause(207)', 'ROLLBACK');
set_paused(1);
check_window('late pause rollback vs. pause');
$h->finish;
check_paused(1, 'late pause rollback vs. pause');

# 3. The same through ROLLBACK TO SAVEPOINT.
set_paused(0);
($h, $err) = start_held_admin('ticket_test.subabort_delay_ms', $row_unlocked,
	'BEGIN', 'SAVEPOINT s', 'SELECT ticket_ext.pause(207)', 'ROLLBACK TO SAVEPOINT s');
set_paused(1);
check_window('late savepoint rollback vs. pause');
$h->finish;
check_paused(1, 'late savepoint rollback vs. pause');

# 4. A pauses an already paused item and rolls back; B resumes in the
#    window: A's late undo must not pause again what B resumed.
set_paused(1);
($h, $err) = start_held_admin('ticket_test.abort_delay_ms', $row_unlocked,
	'BEGIN', 'SELECT ticket_ext.pause(207)', 'ROLLBACK');
set_paused(0);
check_window('late rollback of a repeated pause vs. resume');
$h->finish;
check_paused(0, 'late rollback of a repeated pause vs. resume');

# 5. A resumes and commits; B resumes too and pauses again in one
#    transaction in the window: the last committed row (paused) wins.
set_paused(1);
($h, $err) = start_held_admin('ticket_test.commit_delay_ms',
	'SELECT NOT paused FROM ticket_ext.items WHERE item_id = 207',
	'BEGIN', 'SELECT ticket_ext.resume(207)', 'COMMIT');
$node->safe_psql('postgres', 'BEGIN; SELECT ticket_ext.resume(207); SELECT ticket_ext.pause(207); COMMIT');
check_window('late resume commit vs. resume+pause');
$h->finish;
check_paused(1, 'late resume commit vs. resume+pause');

# 6. A resumes a running item and commits; B pauses in the window (the
#    case that once made resync unpause an item whose row says paused).
set_paused(0);
($h, $err) = start_held_admin('ticket_test.commit_delay_ms', $row_unlocked,
	'BEGIN', 'SELECT ticket_ext.resume(207)', 'COMMIT');
set_paused(1);
check_window('late no-op resume vs. pause', 1);
$h->finish;
check_paused(1, 'late no-op resume vs. pause');

# ... and the mirror: A pauses a paused item, B resumes in the window
($h, $err) = start_held_admin('ticket_test.commit_delay_ms', $row_unlocked,
	'BEGIN', 'SELECT ticket_ext.pause(207)', 'COMMIT');
set_paused(0);
check_window('late no-op pause vs. resume', 1);
$h->finish;
check_paused(0, 'late no-op pause vs. resume');

# 7. Capacity changes commute: a late raise and a lower in the window add up.
($h, $err) = start_held_admin('ticket_test.commit_delay_ms',
	'SELECT capacity = 150 FROM ticket_ext.items WHERE item_id = 207',
	'BEGIN', 'SELECT ticket_ext.set_capacity(207, 150)', 'COMMIT');
$node->safe_psql('postgres', 'SELECT ticket_ext.set_capacity(207, 120)');
$h->finish;
is($node->safe_psql('postgres', 'SELECT counter_capacity, ok FROM ticket_ext.verify(207)'),
	'120|t', 'late capacity raise vs. lower: counter capacity equals the last committed row');

$node->stop;
done_testing();
