
# Helpers for ticket_ext's Perl TAP tests (test/t/*.pl), on top of
# PostgreSQL::Test::Cluster: throwaway nodes with the extension loaded,
# pgbench scripts, invariant checks.
package TicketTest;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(new_ticket_node pgbench_scripts check_invariants
  sqlstate_of wait_for_server);

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
	return $taken;
}

# The SQLSTATE of the error a statement raises ('' if none).
sub sqlstate_of
{
	my ($node, $sql) = @_;
	my ($stdout, $stderr);
	$node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr);
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
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
