
# Helpers for ticket_ext's Perl TAP tests (test/t/*.pl), on top of
# PostgreSQL::Test::Cluster: throwaway nodes with the extension loaded,
# pgbench scripts, invariant checks.
package TicketTest;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(new_ticket_node pgbench_scripts check_invariants
  sqlstate_of wait_for_server expected_hold_events check_stream
  stream_worker_pid start_load start_ack_client acked_holds
  test_hooks_path check_no_overdue gdb_hold gdb_release check_converged
  sink_state sink_state_apply);

my $root = $ENV{TICKET_ROOT} or die "TICKET_ROOT not set";

# A started node with ticket_ext preloaded and installed in "postgres".
sub new_ticket_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opts{allows_streaming} // 0);
	open my $fh, '<', "$root/test/conf/ticket_ext.conf" or die $!;
	my $conf = join '', <$fh>;
	close $fh;
	$conf =~ s/^shared_preload_libraries.*$//m if $opts{no_preload};
	$node->append_conf('postgresql.conf', $conf);
	$node->append_conf('postgresql.conf', "ticket_ext.database = 'postgres'\n");
	# Cluster.pm logs every statement and disables crash restarts: undo both
	$node->append_conf('postgresql.conf',
		"max_connections = 200\nlog_statement = none\nrestart_after_crash = on\n");
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION ticket_ext')
	  unless $opts{no_extension};
	return $node;
}

# Write pgbench scripts (name => text) to a temp dir; returns the
# "-f file@weight" arguments.
sub pgbench_scripts
{
	my (%scripts) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my @args;
	for my $name (sort keys %scripts)
	{
		my ($weight, $text) = @{ $scripts{$name} };
		my $file = "$dir/$name.sql";
		open my $fh, '>', $file or die $!;
		print $fh $text;
		close $fh;
		push @args, '-f', "$file\@$weight";
	}
	return @args;
}

# No oversell and counters == tables for one item, as TAP assertions.
# Returns the number of tickets taken.
sub check_invariants
{
	my ($node, $item, $label) = @_;
	my $row = $node->safe_psql('postgres', qq{
		SELECT capacity, table_taken, counter_taken, in_flight, ok,
		       ticket_available($item)
		  FROM ticket_ext.verify($item)});
	my ($cap, $taken, $ctaken, $inflight, $ok, $avail) = split /\|/, $row;
	cmp_ok($taken, '<=', $cap, "$label: taken ($taken) <= capacity ($cap)");
	is($ok, 't', "$label: verify() ok (counter $ctaken, table $taken, in flight $inflight)");
	is($avail, ($cap - $taken > 0 ? $cap - $taken : 0),
		"$label: available = capacity - taken");
	check_no_overdue($node, $label, $item);
	return $taken;
}

# No held hold (of $item, or of any item) stays past its expiry: the
# expiry worker (ticket_ext.expiry_interval = 200ms in the tests) must
# have expired every hold that ran out more than a second ago.
sub check_no_overdue
{
	my ($node, $label, $item) = @_;
	my $where = "status = 'held' AND expires_at < now() - interval '1 second'"
	  . (defined $item ? " AND item_id = $item" : '');
	$node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT 1 FROM ticket_ext.holds WHERE $where)");
	is($node->safe_psql('postgres', "SELECT count(*) FROM ticket_ext.holds WHERE $where"),
		'0', "$label: no held hold past its expiry");
}

# Every committed state change of the holds, from the tables:
# { "<type> <hold_id>" => 1, ... }
sub expected_hold_events
{
	my ($node) = @_;
	my %want;
	for my $line (split /\n/, $node->safe_psql('postgres', q{
		SELECT 'reserved ' || hold_id FROM ticket_ext.holds
		UNION ALL SELECT 'confirmed ' || hold_id FROM ticket_ext.holds WHERE confirmed_at IS NOT NULL
		UNION ALL SELECT status || ' ' || hold_id FROM ticket_ext.holds
		 WHERE status IN ('released', 'expired')}))
	{
		$want{$line} = 1;
	}
	return \%want;
}

# Wait (up to $timeout s) until the Redis stream holds exactly the hold
# events the tables say were committed; then assert: none missing, none
# extra, no duplicate id, ids increasing, each hold's events in life-cycle
# order.  Returns the number of hold events.
sub check_stream
{
	my ($node, $redis, $key, $label, $timeout) = @_;
	$timeout //= 120;
	# everything committed so far is delivered once the slot confirms past it
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	$node->poll_query_until('postgres', qq{
		SELECT slot_confirmed_lsn >= '$lsn' FROM ticket_ext.stream_status WHERE sink = 'redis'})
	  or diag("$label: the slot did not confirm up to $lsn in time");
	my $want = expected_hold_events($node);
	my $entries = $redis->entries($key);
	my (%got, @dups);
	for my $e (@$entries)
	{
		next unless $e->{hold_id} ne '' && $e->{type} !~ /^snapshot/;
		my $k = "$e->{type} $e->{hold_id}";
		push @dups, $k if $got{$k}++;
	}
	my @missing = grep { !$got{$_} } sort keys %$want;
	my @extra = grep { !$want->{$_} } sort keys %got;
	is(scalar(@missing), 0, "$label: no committed change missing from Redis")
	  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
	is(scalar(@extra), 0, "$label: nothing in Redis that was not committed")
	  or diag("extra: @extra[0 .. ($#extra < 9 ? $#extra : 9)]");
	is(scalar(@dups), 0, "$label: no event twice") or diag("dups: @dups[0 .. 9]");

	my $ordered = 1;
	my (%stage, $last);
	my %rank = (reserved => 1, confirmed => 2, released => 3, expired => 3);
	for my $e (@$entries)
	{
		my ($a1, $b1) = split /-/, $e->{id};
		if (defined $last)
		{
			my ($a0, $b0) = split /-/, $last;
			$ordered = 0 unless $a1 > $a0 || ($a1 == $a0 && $b1 > $b0);
		}
		$last = $e->{id};
		$ordered = 0 unless $e->{id} eq $e->{event_id};
		next unless $e->{hold_id} ne '' && $e->{type} !~ /^snapshot/;
		$ordered = 0 if ($stage{ $e->{hold_id} } // 0) >= $rank{ $e->{type} };
		$stage{ $e->{hold_id} } = $rank{ $e->{type} };
	}
	ok($ordered, "$label: ids increase, id = event_id, each hold's events in order");
	return scalar(keys %got);
}

# What a consumer that applies a sink's events in order ends up believing:
# { "item:hold" => status } for the holds it knows (held, sold, released,
# expired).  A snapshot_item forgets every hold of its item, and its
# snapshot_holds (held or sold) follow: that is what it means; the
# snapshot_end says that items it listed none of are gone (a reinstall).  Keyed by
# item and hold: after a restore or failover a hold id can come back in
# another item (the new history's sequence), while the old history's hold
# of that id is forgotten by its own item's snapshot.
# $events: in the order the sink gives them (per item, for Kinesis).
sub sink_state
{
	my ($events) = @_;
	my %status;
	sink_state_apply(\%status, $events);
	return \%status;
}

# The same, applied to a state kept between calls (events since then).
sub sink_state_apply
{
	my ($status, $events) = @_;
	my %from = (reserved => 'held', confirmed => 'sold', released => 'released', expired => 'expired');
	my %listed;
	for my $e (@$events)
	{
		my $t = $e->{type};
		if ($t eq 'snapshot_item')
		{
			delete @$status{ grep { /^\Q$e->{item_id}\E:/ } keys %$status };
			$listed{ $e->{item_id} } = 1;
		}
		elsif ($t eq 'snapshot_end')
		{
			delete @$status{ grep { !$listed{ (split /:/)[0] } } keys %$status };
			%listed = ();
		}
		elsif ($t eq 'snapshot_hold')
		{
			$status->{"$e->{item_id}:$e->{hold_id}"} = $e->{status};
		}
		elsif ($from{$t})
		{
			$status->{"$e->{item_id}:$e->{hold_id}"} = $from{$t};
		}
	}
}

# Has the sink converged on the tables?  Every held or sold hold is in it
# with that status; a released or expired one is so, or unknown to it (a
# snapshot lists active holds only); nothing else is active in it (a hold
# the tables do not have, or have ended, from another history).
sub check_converged
{
	my ($node, $events, $label) = @_;
	my $sink = ref $events eq 'HASH' ? $events : sink_state($events);
	my %table = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres', "SELECT item_id || ':' || hold_id, status FROM ticket_ext.holds");
	my (@wrong, @ghosts);
	for my $h (sort keys %table)
	{
		my $want = $table{$h};
		my $got = $sink->{$h} // 'unknown';
		push @wrong, "$h: $got, not $want"
		  unless $got eq $want || ($want =~ /released|expired/ && $got eq 'unknown');
	}
	for my $h (sort keys %$sink)
	{
		push @ghosts, "$h: $sink->{$h}"
		  if $sink->{$h} =~ /held|sold/ && !exists $table{$h};
	}
	is(scalar(@wrong), 0, "$label: every hold's state is in the sink (" . scalar(keys %table) . ' holds)')
	  or diag("wrong: @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]");
	is(scalar(@ghosts), 0, "$label: no hold active in the sink that the tables do not have")
	  or diag("ghosts: @ghosts[0 .. ($#ghosts < 9 ? $#ghosts : 9)]");
	return scalar(@wrong) + scalar(@ghosts);
}

# pid of a sink's streaming worker, Redis's by default (waits for it)
sub stream_worker_pid
{
	my ($node, $sink) = @_;
	$sink //= 'redis';
	my $pid = '';
	for (1 .. 100)
	{
		$pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'ticket_ext stream $sink'");
		return $pid if $pid =~ /^\d+$/;
		select(undef, undef, undef, 0.1);
	}
	return undef;
}

# A pgbench load in the background, rate-limited to keep tests quick:
# start_load($node, $seconds, $clients, $tps, @scripts)
sub start_load
{
	my ($node, $secs, $clients, $tps, @scripts) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $secs, '-R', $tps, @scripts,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	return $h;
}

# A client that reserves one ticket of $item at a time, in a process of
# its own, and appends to $file the hold id of every reservation whose
# COMMIT it saw succeed (optionally pausing $pause_us between them).
# Returns its pid; kill it with SIGKILL.
sub start_ack_client
{
	my ($node, $file, $item, $pause_us) = @_;
	my $pid = fork();
	return $pid if $pid;
	open my $fh, '>>', $file or die $!;
	$fh->autoflush(1);
	while (1)
	{
		my $id = `psql -XAtq -h @{[$node->host]} -p @{[$node->port]} -d postgres -c "SELECT ticket_reserve($item, 1, 'ack')" 2>/dev/null`;
		chomp $id;
		print $fh "$id\n" if $? == 0 && $id =~ /^\d+$/;
		usleep($pause_us) if $pause_us;
	}
}

# The reservations an ack client saw commit: (how many, how many of them
# are missing from the table).
sub acked_holds
{
	my ($node, $file) = @_;
	return (0, 0) unless -e $file;
	my @acked = grep { /^\d+$/ } split /\n/, slurp_file($file);
	my $present = $node->safe_psql('postgres',
		'SELECT count(*) FROM ticket_ext.holds WHERE hold_id = ANY (\'{' . join(',', @acked, 0) . '}\')');
	return (scalar(@acked), scalar(@acked) - $present);
}

# The SQLSTATE of the error a statement raises ('' if none), in database
# $db (default postgres).
sub sqlstate_of
{
	my ($node, $sql, $db) = @_;
	my ($stdout, $stderr);
	$node->psql($db // 'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr);
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

# The test-only hooks module (test/modules; run_all.sh builds it in place).
sub test_hooks_path
{
	my $so = "$root/test/modules/ticket_test_hooks.so";
	die "$so is missing: build it with make -C test/modules" unless -e $so;
	return $so;
}

# gdb on a backend, for windows a test cannot reach otherwise (microseconds
# between two statements of ours).  gdb_hold($pid, @commands) runs the gdb
# commands on the attached backend (e.g. a breakpoint, continue, finish)
# and returns once they are done, with the backend stopped there;
# gdb_release($h) lets it go on.  gdb runs them as a batch script, which
# then waits for a file of the test's: no terminal, no prompt to parse.
sub gdb_hold
{
	my ($pid, @commands) = @_;
	my $dir = tempdir(CLEANUP => 1);
	open my $fh, '>', "$dir/script" or die $!;
	print $fh "set pagination off\nset confirm off\nset debuginfod enabled off\n";
	print $fh "$_\n" for @commands;
	print $fh "shell touch $dir/held\n";
	print $fh "shell while [ ! -e $dir/go ]; do sleep 0.05; done\n";
	print $fh "detach\nquit\n";
	close $fh;
	my $out = '';
	my $h = IPC::Run::start([ 'gdb', '-q', '-nx', '-batch', '-x', "$dir/script", '-p', $pid ],
		init => sub { POSIX::setsid() },	# no terminal to stop it (SIGTTOU)
		'<', \undef, '>&', \$out);
	for (1 .. 1200)
	{
		return { run => $h, dir => $dir, out => \$out } if -e "$dir/held";
		die "gdb ended before holding the backend: $out" unless $h->pumpable;
		$h->pump_nb;
		usleep(100_000);
	}
	$h->kill_kill;
	die "gdb did not hold the backend in 120 s: $out";
}

sub gdb_release
{
	my ($h) = @_;
	open my $fh, '>', "$h->{dir}/go" or die $!;
	close $fh;
	$h->{run}->finish;
	return ${ $h->{out} };
}

# After a crash restart: wait until the server accepts queries again.
sub wait_for_server
{
	my ($node) = @_;
	for (1 .. 600)
	{
		my $ret = $node->psql('postgres', 'SELECT 1', on_error_stop => 0);
		return 1 if $ret == 0;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

1;
