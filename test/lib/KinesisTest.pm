
# A real kinesalite (npm) for tests, on a free loopback port, persisted to
# a directory so a stopped one comes back with its records; optionally the
# fault-injecting proxy, a slow proxy, or the proxy enforcing AWS's
# per-shard limits (test/js/shard_limit_proxy.js) in front of it.  Records are read back with the
# AWS SDK (test/js/kinesis.js).
package KinesisTest;

use strict;
use warnings;
use IO::Socket::INET;
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;

my $js = "$ENV{TICKET_ROOT}/test/js";
my @started;
END
{
	local $?;    # waitpid here must not change the test's exit status
	$_->stop for grep { $_->{owner} == $$ } @started;
}

sub free_port
{
	my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
	my $port = $s->sockport;
	close $s;
	return $port;
}

sub _spawn
{
	my ($log, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>>', $log;
		open STDERR, '>>', $log;
		exec @cmd or exit 1;
	}
	return $pid;
}

sub _wait_port
{
	my ($port) = @_;
	for (1 .. 200)
	{
		return 1 if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port);
		usleep(50_000);
	}
	die "nothing listening on port $port";
}

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		owner => $$,
		port => free_port(),
		dir => tempdir('kinesis_XXXX', DIR => $PostgreSQL::Test::Utils::tmp_check, CLEANUP => 1),
	}, $class;
	$self->start;
	if ($opts{proxy})
	{
		$self->{proxy_port} = free_port();
		$self->{proxy_pid} = _spawn("$self->{dir}/proxy.log", 'node', "$js/fault_proxy.js",
			$self->{proxy_port}, $self->{port});
		_wait_port($self->{proxy_port});
	}
	if ($opts{limits})
	{
		# [records/s, bytes/s] per shard, AWS's limits by default
		my ($recs, $bytes) = ref $opts{limits} ? @{ $opts{limits} } : (1000, 1024 * 1024);
		$self->{limit_port} = free_port();
		$self->{limit_pid} = _spawn("$self->{dir}/limit_proxy.log", 'node', "$js/shard_limit_proxy.js",
			$self->{limit_port}, $self->{port}, $recs, $bytes);
		_wait_port($self->{limit_port});
	}
	if ($opts{slow_proxy})
	{
		$self->{slow_port} = free_port();
		$self->{slow_pid} = _spawn("$self->{dir}/slow_proxy.log", 'node', "$js/fault_proxy.js",
			$self->{slow_port}, $self->{port}, "slow:$opts{slow_proxy}");
		_wait_port($self->{slow_port});
	}
	push @started, $self;
	return $self;
}

sub start
{
	my ($self) = @_;
	$self->{pid} = _spawn("$self->{dir}/kinesalite.log", 'node', "$js/kinesalite_server.js",
		$self->{port}, "$self->{dir}/data");
	_wait_port($self->{port});
}

sub stop_kinesalite
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'KILL', $self->{pid};
	waitpid $self->{pid}, 0;
	delete $self->{pid};
}

sub stop
{
	my ($self) = @_;
	$self->stop_kinesalite;
	for my $p (qw(proxy_pid slow_pid limit_pid))
	{
		next unless $self->{$p};
		kill 'KILL', $self->{$p};
		waitpid $self->{$p}, 0;
		delete $self->{$p};
	}
}

sub endpoint { my ($self) = @_; return "http://127.0.0.1:$self->{port}/"; }
sub proxy_endpoint { my ($self) = @_; return "http://127.0.0.1:$self->{proxy_port}/"; }
sub slow_endpoint { my ($self) = @_; return "http://127.0.0.1:$self->{slow_port}/"; }
# the proxy enforcing per-shard limits (limits => ...), and what it counted
sub limit_endpoint { my ($self) = @_; return "http://127.0.0.1:$self->{limit_port}/"; }
# the next n ListShards calls through the limit proxy fail (HTTP 500); and
# how many came through it
sub limit_fail_listshards
{
	my ($self, $n) = @_;
	system('curl', '-s', '-o', '/dev/null', '-d', $n, "http://127.0.0.1:$self->{limit_port}/fail-listshards") == 0
	  or die 'limit proxy not answering';
}

sub limit_listshards_calls
{
	my ($self) = @_;
	return decode_json(`curl -s http://127.0.0.1:$self->{limit_port}/listshards`)->{calls};
}

sub limit_stats
{
	my ($self) = @_;
	return decode_json(`curl -s http://127.0.0.1:$self->{limit_port}/stats`);
}

sub create_stream
{
	my ($self, $name, $shards) = @_;
	system('node', "$js/kinesis.js", $self->endpoint, 'create', $name, $shards // 2) == 0
	  or die "could not create stream $name";
}

# All records of a stream: [ { shard, seq, key, data => {event fields} }, ... ]
# With \%after (shard => sequence number), only the records after those.
sub records
{
	my ($self, $name, $after) = @_;
	my $from = $after ? "'" . encode_json($after) . "'" : '';
	my $out = `node $js/kinesis.js @{[$self->endpoint]} read $name $from 2>&1`;
	die "kinesis.js read $name failed: $out" if $?;	# e.g. a bad KPL checksum
	return [ map { decode_json($_) } grep { /^\{/ } split /\n/, $out ];
}

sub proxy_stats
{
	my ($self) = @_;
	my $out = `curl -s http://127.0.0.1:$self->{proxy_port}/stats`;
	return decode_json($out);
}

1;
