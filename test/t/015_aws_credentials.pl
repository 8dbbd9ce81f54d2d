# Temporary AWS credentials from ticket_ext.aws_credentials_file: an
# expired session token stops the Kinesis sink with a clear error (not a
# retry storm that can never succeed), Redis goes on, and once the file is
# rewritten with fresh credentials the sink reads it at its next reconnect
# (no reload) and delivers everything.  The secret is never shown.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;
use KinesisTest;

my $redis = RedisTest->new;
my $kin = KinesisTest->new(slow_proxy => 1);    # forwards everything (1 ms later), refuses expired tokens
use JSON::PP;
sub expired_calls { decode_json(`curl -s http://127.0.0.1:$kin->{slow_port}/stats`)->{expired} }
$kin->create_stream('tickets', 2);
my $cred = "$PostgreSQL::Test::Utils::tmp_check/aws_credentials";
sub write_credentials
{
	my ($token) = @_;
	open my $fh, '>', "$cred.tmp" or die $!;
	print $fh "[other]\naws_access_key_id = WRONG\n\n[default]\naws_access_key_id = AKIDTEMP\n"
	  . "aws_secret_access_key = temp-secret-123\naws_session_token = $token\n";
	close $fh;
	chmod 0600, "$cred.tmp";
	rename "$cred.tmp", $cred or die $!;
}
write_credentials('expired');
my $node = new_ticket_node('credentials', conf => "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.kinesis_stream = 'tickets'\n"
	  . "ticket_ext.kinesis_endpoint = '" . $kin->slow_endpoint . "'\n"
	  . "ticket_ext.aws_credentials_file = '$cred'\n"
	  . "ticket_ext.stream_backoff_min = 20ms\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n");
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(1, 100000, 'credentials')");
$node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'c' || g) FROM generate_series(1, 30) g");
ok($node->poll_query_until('postgres',
		"SELECT state = 'error' AND last_error LIKE '%ExpiredToken%' FROM ticket_ext.stream_status WHERE sink = 'kinesis'"),
	'an expired session token: Kinesis in state error, saying so');
check_stream($node, $redis, 'ticket_ext:events', 'Redis while Kinesis credentials are expired');
my $expired_calls = expired_calls();
sleep 2;
my $later = expired_calls();
ok($later - $expired_calls <= 6, 'retried slowly, not in a storm (' . ($later - $expired_calls) . ' calls in 2 s)');

write_credentials('fresh');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok($node->poll_query_until('postgres',
		"SELECT state = 'ok' AND slot_confirmed_lsn >= '$lsn' FROM ticket_ext.stream_status WHERE sink = 'kinesis'"),
	'fresh credentials in the file: the sink recovers without a reload and catches up');
my %ids = map { $_->{data}{event_id} => 1 } @{ $kin->records('tickets') };
my $holds = $node->safe_psql('postgres', "SELECT count(*) FROM ticket_ext.holds");
my $reserved = grep { /^\d+-\d+$/ } keys %ids;
cmp_ok(scalar(keys %ids), '>=', $holds, "Kinesis has the events ($reserved ids for $holds holds)");
my $all = slurp_file($node->logfile) . $node->safe_psql('postgres', 'SELECT string_agg(coalesce(last_error, \'\'), \' \') FROM ticket_ext.stream_status');
unlike($all, qr/temp-secret-123/, 'the secret never appears in the log or the status');
my ($so, $se);
$node->psql('postgres', 'CREATE ROLE peeker LOGIN');
$node->psql('postgres', 'SHOW ticket_ext.aws_credentials_file', stdout => \$so, stderr => \$se,
	extra_params => [ '-U', 'peeker' ]);
like($se, qr/permission denied|must be superuser/, 'a non-superuser cannot SHOW the credentials file setting');

$node->stop;
$redis->stop;
$kin->stop;
done_testing();
