# A database that is not UTF-8 (LATIN1): events are JSON in UTF-8 all the
# same.  The output plugin writes non-ASCII text as \u escapes (so its
# output is valid in the database's encoding too), Redis gets UTF-8 bytes,
# and so does the snapshot a new slot sends.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TicketTest;
use RedisTest;

my $redis = RedisTest->new;
my $node = new_ticket_node('latin1', no_extension => 1,
	conf => "ticket_ext.database = 'latin'\nticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n");
$node->safe_psql('postgres',
	"CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$node->safe_psql('latin', 'CREATE EXTENSION ticket_ext');
$node->poll_query_until('latin',
	"SELECT state = 'streaming' FROM ticket_ext.stream_state WHERE sink = 'redis'") or die 'not streaming';

# the client speaks UTF-8; the server stores LATIN1
my $utf8 = "Zo\xc3\xab \xc3\x91and\xc3\xba";
$node->safe_psql('latin', "SET client_encoding = 'UTF8'; SELECT ticket_ext.create_item(1, 100, 'latin');
	SELECT ticket_reserve(1, 1, '$utf8')");
my $got;
for (1 .. 100)
{
	($got) = grep { $_->{type} eq 'reserved' } @{ $redis->entries('ticket_ext:events') };
	last if $got;
	usleep(100_000);
}
is($got->{holder}, $utf8, 'Redis holds the holder as UTF-8 bytes')
  or diag(explain($got));

# the plugin itself, through SQL: plain ASCII, \u escapes
# (newer 15.x minor releases list the plugins a slot may use)
my $allow = q{SELECT set_config('output_plugin_libraries', current_setting('output_plugin_libraries') || ',ticket_ext', false)
	FROM pg_settings WHERE name = 'output_plugin_libraries';};
$node->safe_psql('latin', "$allow SELECT pg_create_logical_replication_slot('peek', 'ticket_ext')");
$node->safe_psql('latin', "SET client_encoding = 'UTF8'; SELECT ticket_reserve(1, 1, '$utf8')");
my $json = $node->safe_psql('latin', "$allow SELECT data FROM pg_logical_slot_get_changes('peek', NULL, NULL)");
like($json, qr/"holder":"Zo\\u00EB \\u00D1and\\u00FA"/, 'the plugin writes \u escapes: ASCII output');
unlike($json, qr/[\x80-\xff]/, '... and no other byte above 127');
$node->safe_psql('latin', "SELECT pg_drop_replication_slot('peek')");

# a new slot's snapshot, read in UTF-8 whatever the database's encoding
$node->safe_psql('latin', "SELECT ticket_ext.stream_resnapshot('redis')");
my $snap;
for (1 .. 100)
{
	($snap) = grep { $_->{type} eq 'snapshot_hold' } @{ $redis->entries('ticket_ext:events') };
	last if $snap;
	usleep(100_000);
}
is($snap->{holder}, $utf8, 'the snapshot carries the holder as UTF-8 too');

$node->stop;
$redis->stop;
done_testing();
