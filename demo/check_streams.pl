#!/usr/bin/perl
# Compare the events in Redis and in Kinesis with the committed changes
# in the tables.  usage: check_streams.pl <redis-port> <kinesis-endpoint>
#   <kinesis-stream> <psql args...>
# Prints one line per check ("ok ..." / "FAIL ..."); exit 1 on a failure.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test/lib";
use JSON::PP;

my ($rport, $kendpoint, $kstream, @psql) = @ARGV;

# the few RedisTest bits we need, without PostgreSQL::Test
package MiniRedis {
	use IO::Socket::INET;
	sub new { my ($c, $port) = @_; return bless { port => $port }, $c; }
	sub read_reply
	{
		my ($s) = @_;
		my $line = <$s>;
		$line =~ s/\r\n$//;
		my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
		return $rest if $t eq '+' or $t eq ':';
		die "redis: $rest" if $t eq '-';
		if ($t eq '$') { return undef if $rest < 0; my $b; read($s, $b, $rest + 2); return substr($b, 0, $rest); }
		return [ map { read_reply($s) } 1 .. $rest ] if $t eq '*';
		die "redis: bad reply";
	}
	sub xrange
	{
		my ($self, $key) = @_;
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port}) or die $!;
		my @a = ('XRANGE', $key, '-', '+');
		print $s '*' . @a . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @a);
		return read_reply($s);
	}
}

my %committed;
open my $q, '-|', 'psql', @psql, '-XAtq', '-c', q{
	SELECT 'reserved ' || hold_id FROM ticket_ext.holds
	UNION ALL SELECT 'confirmed ' || hold_id FROM ticket_ext.holds WHERE confirmed_at IS NOT NULL
	UNION ALL SELECT status || ' ' || hold_id FROM ticket_ext.holds WHERE status IN ('released', 'expired')}
  or die;
while (<$q>) { chomp; $committed{$_} = 1 if $_ ne ''; }
close $q;

my (%redis, %redis_ids, %redis_type);
for my $e (@{ MiniRedis->new($rport)->xrange('ticket_ext:events') || [] })
{
	my %f = @{ $e->[1] };
	# a snapshot belongs to one sink's slot: its ids are that slot's own
	next if $f{type} =~ /^snapshot/;
	$redis_ids{ $f{event_id} }++;
	$redis_type{ $f{event_id} } = $f{type};
	$redis{"$f{type} $f{hold_id}"} = 1 if $f{hold_id} ne '';
}

my (%kinesis, %kinesis_ids, %kinesis_type);
for (split /\n/, `node $FindBin::Bin/../test/js/kinesis.js $kendpoint read $kstream 2>/dev/null`)
{
	next unless /^\{/;
	my $d = decode_json($_)->{data};
	next if $d->{type} =~ /^snapshot/;
	$kinesis_ids{ $d->{event_id} }++;
	$kinesis_type{ $d->{event_id} } = $d->{type};
	$kinesis{"$d->{type} $d->{hold_id}"} = 1 if defined $d->{hold_id};
}

my $fail = 0;
sub check
{
	my ($ok, $what) = @_;
	print(($ok ? "  ok   " : "  FAIL ") . "$what\n");
	$fail = 1 unless $ok;
}
my $same = sub {
	my ($a, $b) = @_;
	return 0 unless keys %$a == keys %$b;
	return !grep { !$b->{$_} } keys %$a;
};
my $nc = keys %committed;
my $dups_r = grep { $redis_ids{$_} > 1 } keys %redis_ids;
my $dups_k = grep { $kinesis_ids{$_} > 1 } keys %kinesis_ids;
check($same->(\%redis, \%committed), "Redis holds exactly the $nc committed changes of holds (" . scalar(keys %redis) . ")");
check($same->(\%kinesis, \%committed), "Kinesis holds exactly the $nc committed changes of holds (" . scalar(keys %kinesis) . ")");
check($same->(\%redis_ids, \%kinesis_ids), 'Redis and Kinesis carry the same ' . scalar(keys %redis_ids) . ' event ids (item events included; snapshots are per sink)');
unless ($same->(\%redis_ids, \%kinesis_ids))
{
	my @r = grep { !$kinesis_ids{$_} } sort keys %redis_ids;
	my @k = grep { !$redis_ids{$_} } sort keys %kinesis_ids;
	print "       only in Redis (" . @r . "): " . join(' ', map { "$_ $redis_type{$_}" } @r[0 .. ($#r < 4 ? $#r : 4)]) . "\n";
	print "       only in Kinesis (" . @k . "): " . join(' ', map { "$_ $kinesis_type{$_}" } @k[0 .. ($#k < 4 ? $#k : 4)]) . "\n";
}
check($dups_r == 0, 'no event twice in Redis');
print "  note Kinesis repeats (same event_id, for consumers to drop): $dups_k\n" if $dups_k;
exit $fail;
