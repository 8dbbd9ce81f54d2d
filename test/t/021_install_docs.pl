# README's install section, as written: the settings file, the SQL and the
# pg_recvlogical commands are read from README.md (the blocks after
# "<!-- install:conf -->", "<!-- install:sql -->" and
# "<!-- install:recvlogical -->") and run on a throwaway cluster.  Only
# what cannot be the same here is replaced: the Redis port, the server's
# host and port, `runuser -u postgres --` (the tests already run as the
# server's OS user) and the restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;

my $readme = slurp_file("$ENV{TICKET_ROOT}/README.md");
sub block
{
	my ($name) = @_;
	$readme =~ /<!-- install:\Q$name\E -->\n```sh\n(.*?)```/s or die "README has no install:$name block";
	return $1;
}
sub heredoc
{
	my ($text, $tag) = @_;
	$text =~ /<<'\Q$tag\E'\n(.*?)^\Q$tag\E$/ms or die "no $tag here-document";
	return $1;
}

my $redis = RedisTest->new;
my $node = PostgreSQL::Test::Cluster->new('install');
$node->init;
# Cluster.pm turns replication off on a node made without allows_streaming:
# back to PostgreSQL's (and Debian's) defaults
$node->append_conf('postgresql.conf', "log_statement = none\nwal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n");
$node->start;
my ($host, $port) = ($node->host, $node->port);

# 4. the database before the restart
$node->safe_psql('postgres', 'CREATE DATABASE shop');

# 5. the settings file, then the restart
my $conf = heredoc(block('conf'), 'CONF');
like($conf, qr/^shared_preload_libraries = 'ticket_ext'$/m, 'the settings preload the library');
$conf =~ s{redis://127\.0\.0\.1:6379}{$redis->url}e or die 'no Redis URL in the settings';
$node->append_conf('postgresql.conf', $conf);
$node->restart;
is($node->safe_psql('shop', 'SHOW ticket_ext.database'), 'shop', 'the settings are in effect after the restart');

# 6. the SQL
my $sql = heredoc(block('sql'), 'SQL');
my ($ok, $out, $err);
$ok = IPC::Run::run([ 'psql', '-X', '-h', $host, '-p', $port, '-d', 'shop', '-v', 'ON_ERROR_STOP=1' ],
	'<', \$sql, '>', \$out, '2>', \$err);
ok($ok, 'the SQL runs as written') or diag($err);
unlike($err, qr/WARNING|ERROR/, '... without a warning');

# the sale the text promises, as the app role (the password is not
# checked here: the test cluster trusts local connections)
is($node->safe_psql('shop', 'SELECT ticket_reserve(1, 2) IS NOT NULL', extra_params => [ '-U', 'shop_app' ]),
	't', 'shop_app sells two tickets');
my $events = [];
for (1 .. 100)
{
	$events = $redis->entries('ticket_ext:events');
	last if grep { $_->{type} eq 'reserved' } @$events;
	usleep(100_000);
}
ok((grep { $_->{type} eq 'reserved' && $_->{qty} == 2 } @$events), 'its event is in Redis under ticket_ext:events');

# pg_recvlogical as a replication role
my @lines = grep { /\S/ && !/^#/ } split /\n/, block('recvlogical');
sub as_here
{
	my ($cmd) = @_;
	$cmd =~ s/^runuser -u postgres -- //;
	$cmd =~ s/\$\(runuser -u postgres -- psql /\$(psql -h $host -p $port /;
	$cmd =~ s/^psql /psql -h $host -p $port /;
	$cmd =~ s/-h 127\.0\.0\.1/-h $host -p $port/g;
	return $cmd;
}
my ($role, $export, $create, $start, $drop) = map { as_here($_) } @lines;
like($create, qr/--create-slot -P ticket_ext/, 'the commands: role, password, create, start, drop');
for my $cmd ($role, "$export; $create")
{
	$ok = IPC::Run::run([ 'bash', '-ec', $cmd ], '>', \$out, '2>', \$err);
	ok($ok, "runs: $cmd") or diag($err);
}
$node->safe_psql('shop', q{SELECT ticket_confirm(ticket_reserve(1, 1, 'recvlogical'))}, extra_params => [ '-U', 'shop_app' ]);
$ok = IPC::Run::run([ 'bash', '-ec', "$export; $start" ], '>', \$out, '2>', \$err);
ok($ok, 'pg_recvlogical --start runs as written') or diag($err);
like($out, qr/"type":"reserved".*"holder":"recvlogical"/, '... and prints the reservation');
like($out, qr/"type":"confirmed"/, '... and its confirmation');
$ok = IPC::Run::run([ 'bash', '-ec', "$export; $drop" ], '>', \$out, '2>', \$err);
ok($ok, 'the slot is dropped') or diag($err);
is($node->safe_psql('shop', q{SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'shop_events'}), '0',
	'... and gone');

$node->stop;
$redis->stop;
done_testing();
