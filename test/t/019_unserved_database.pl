# One database is served: ticket_ext.database.
#  - while it does not exist, the workers say so once (one FATAL per
#    worker from PostgreSQL itself, then one LOG) instead of a FATAL a
#    second, and connect once it is created;
#  - another database with the extension sells, but its status says it is
#    not served and the first sale of a session warns (holds there do not
#    expire by themselves, no events are streamed).
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use TicketTest;

# (autovacuum off: a worker connected to no database must not depend on a
# relcache file some other process wrote)
my $node = new_ticket_node('unserved', conf => "ticket_ext.database = 'shop'\n"
	  . "ticket_ext.redis_url = 'redis://127.0.0.1:1'\nautovacuum = off\n");
sleep 8;
my $log = slurp_file($node->logfile);
my $fatals = () = $log =~ /FATAL:  database "shop" does not exist/g;
my $waits = () = $log =~ /database "shop" \(ticket_ext.database\) does not exist; the workers wait for it/g;
ok($fatals >= 1 && $fatals <= 3, "missing database: PostgreSQL's FATAL once per worker ($fatals), not every second");
is($waits, 1, '... and one LOG that the workers wait for it');
my $at = length $log;
sleep 6;
my $later = substr(slurp_file($node->logfile), $at);
unlike($later, qr/does not exist/, '... then silence while it is still missing');

# the database appears: the workers connect
$node->safe_psql('postgres', 'CREATE DATABASE shop');
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
	WHERE backend_type = 'ticket_ext expiry' AND datname = 'shop'}),
	'once the database exists, the expiry worker connects to it');
like(slurp_file($node->logfile), qr/database "shop" accepts connections now; the workers connect to it/, '... and says so');
$node->safe_psql('shop', q{CREATE EXTENSION ticket_ext; SELECT ticket_ext.create_item(1, 10)});
my ($out, $err) = ('', '');
$node->psql('shop', "SELECT ticket_reserve(1, 1, 'short', hold_for => '100 ms')", stdout => \$out, stderr => \$err);
unlike($err, qr/WARNING/, 'no warning in the served database');
ok($node->poll_query_until('shop', q{SELECT status = 'expired' FROM ticket_ext.holds WHERE holder = 'short'}),
	'holds expire there by themselves');
isnt($node->safe_psql('shop', q{SELECT state FROM ticket_ext.stream_status WHERE sink = 'redis'}), 'not served',
	'its stream_status is its own');

# a served database that refuses connections: the same quiet wait
$node->safe_psql('postgres', 'ALTER DATABASE shop ALLOW_CONNECTIONS false');
$at = length slurp_file($node->logfile);
$node->safe_psql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ticket_ext expiry'});
sleep 12;
$later = substr(slurp_file($node->logfile), $at);
my $refused = () = $later =~ /FATAL:  database "shop" is not currently accepting connections/g;
ok($refused == 1, "a database that refuses connections: one FATAL ($refused), not one every few seconds");
like($later, qr/database "shop" \(ticket_ext.database\) does not accept connections; the workers wait for it/, '... and one LOG');
$node->safe_psql('postgres', 'ALTER DATABASE shop ALLOW_CONNECTIONS true');
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
	WHERE backend_type = 'ticket_ext expiry' AND datname = 'shop'}),
	'connections allowed again: the expiry worker is back');

# the unserved database "postgres" (the extension is installed there),
# while the workers serve "shop"
($out, $err) = ('', '');
$node->psql('postgres', "SELECT ticket_ext.create_item(1, 10); SELECT ticket_reserve(1, 1, 'here');",
	stdout => \$out, stderr => \$err);
like($err, qr/WARNING:  ticket_ext's background workers serve database "shop", not this one/,
	'a sale in an unserved database warns');
my $warnings = () = $err =~ /WARNING/g;
is($warnings, 1, '... once per session');
is($node->safe_psql('postgres', 'SELECT ticket_available(1)'), '9', '... and sells');
like($node->safe_psql('postgres', q{SELECT state || ': ' || last_error FROM ticket_ext.stream_status WHERE sink = 'redis'}),
	qr/^not served: ticket_ext.database is "shop": this database's events are not streamed/,
	'stream_status says the database is not served');
is($node->safe_psql('postgres', q{SELECT num_nonnulls(acked_lsn, events_sent, retries, throttles, last_error_at,
	slot_confirmed_lsn, lag_bytes, lag_seconds, queued, worker_pid, delay_p50_ms, delay_p99_ms, requests, last_ok_at)
	FROM ticket_ext.stream_status WHERE sink = 'redis'}), '0',
	'... and shows none of the served database\'s figures');
like($node->safe_psql('postgres', q{SELECT state || ': ' || detail FROM ticket_ext.stream_state WHERE sink = 'redis'}),
	qr/^not served: /, 'so does stream_state');

$node->stop;
done_testing();
