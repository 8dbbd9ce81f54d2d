
# A real redis-server for tests, on a free loopback port, with a tiny RESP
# client (no CPAN modules needed).  AOF with fsync on every write: a
# SIGKILLed server keeps every write it acknowledged, as in production.
package RedisTest;

use strict;
use warnings;
use IO::Socket::INET;
use File::Temp qw(tempdir);
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;

sub free_port
{
	my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0)
	  or die "no free port: $!";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# servers started by this process, killed when it exits (even on failure)
my @started;
END
{
	local $?;    # waitpid here must not change the test's exit status
	$_->kill9 for grep { $_->{owner} == $$ } @started;
}

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		owner => $$,
		port => $opts{port} // free_port(),
		dir => tempdir('redis_XXXX', DIR => $PostgreSQL::Test::Utils::tmp_check, CLEANUP => 1),
		password => $opts{password},
		aof => $opts{aof} // 1,	# appendonly yes, appendfsync always; 0: RDB snapshots (SAVE) only
	}, $class;
	$self->start;
	push @started, $self;
	return $self;
}

sub start
{
	my ($self) = @_;
	my @args = ('redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
		'--dir', $self->{dir}, '--save', '', '--appendonly', $self->{aof} ? 'yes' : 'no',
		'--appendfsync', 'always', '--daemonize', 'yes',
		'--pidfile', "$self->{dir}/redis.pid", '--logfile', "$self->{dir}/redis.log");
	push @args, '--requirepass', $self->{password} if $self->{password};
	system(@args) == 0 or die "redis-server did not start";
	for (1 .. 100)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port});
		return 1 if $s;
		usleep(50_000);
	}
	die "redis-server not reachable on port $self->{port}";
}

sub pid
{
	my ($self) = @_;
	open my $fh, '<', "$self->{dir}/redis.pid" or return undef;
	my $pid = <$fh>;
	chomp $pid;
	return $pid;
}

# SIGKILL (a crash); start() brings it back with its AOF
sub kill9
{
	my ($self) = @_;
	delete $self->{sock};
	my $pid = $self->pid or return;
	kill 'KILL', $pid;
	usleep(50_000) while kill 0, $pid;
	unlink "$self->{dir}/redis.pid";
}

sub stop
{
	my ($self) = @_;
	$self->kill9;
}

sub url
{
	my ($self, $password) = @_;
	$password //= $self->{password};
	return "redis://" . (defined $password && $password ne '' ? ":$password\@" : '') . "127.0.0.1:$self->{port}";
}

sub _read_reply
{
	my ($sock) = @_;
	my $line = <$sock>;
	die "redis: connection closed" unless defined $line;
	$line =~ s/\r\n$//;
	my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
	return $rest if $t eq '+';
	return { error => $rest } if $t eq '-';
	return $rest + 0 if $t eq ':';
	if ($t eq '$')
	{
		return undef if $rest < 0;
		my $buf = '';
		read($sock, $buf, $rest + 2) == $rest + 2 or die "redis: short read";
		return substr($buf, 0, $rest);
	}
	if ($t eq '*')
	{
		return undef if $rest < 0;
		return [ map { _read_reply($sock) } 1 .. $rest ];
	}
	die "redis: bad reply '$line'";
}

sub _send
{
	my ($sock, @args) = @_;
	my $req = '*' . scalar(@args) . "\r\n";
	$req .= '$' . length($_) . "\r\n$_\r\n" for @args;
	print $sock $req;
	return _read_reply($sock);
}

# command('XRANGE', 'key', '-', '+') -> decoded reply (one kept connection)
sub command
{
	my ($self, @args) = @_;
	for my $attempt (1 .. 2)
	{
		if (!$self->{sock})
		{
			my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port})
			  or die "redis: cannot connect: $!";
			binmode $sock;
			$sock->autoflush(1);
			_send($sock, 'AUTH', $self->{password}) if $self->{password};
			$self->{sock} = $sock;
		}
		my $reply = eval { _send($self->{sock}, @args) };
		return $reply unless $@;
		delete $self->{sock};    # reconnect once (e.g. after a restart)
		die $@ if $attempt == 2;
	}
}

# All entries of a stream as [ { id => ..., field => value, ... }, ... ]
# All entries of a stream, or those after entry id $after.
sub entries
{
	my ($self, $key, $after) = @_;
	my $r = $self->command('XRANGE', $key, defined $after ? "($after" : '-', '+');
	return [] unless ref $r eq 'ARRAY';
	my @out;
	for my $e (@$r)
	{
		my ($id, $kv) = @$e;
		my %h = (id => $id, @$kv);
		push @out, \%h;
	}
	return \@out;
}

1;
