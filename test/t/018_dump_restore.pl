# pg_dump and restore into a fresh cluster, in one transaction
# (psql --single-transaction -v ON_ERROR_STOP=1) and plain: the items,
# holds and hold id sequence come back, the counters are rebuilt from
# them (verify ok, sold-out and paused items stay so), sales go on, and the
# restored database streams (its sink gets a snapshot of what was
# restored, then the new sales).  CREATE EXTENSION no longer makes the
# publication, so a dump that has one (ticket_ext.publish()) restores too.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use TicketTest;
use RedisTest;

my $src = new_ticket_node('dump_src');
$src->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(1, 10, 'roomy');
	SELECT ticket_ext.create_item(2, 3, 'sold out');
	SELECT ticket_ext.create_item(3, 5, 'paused');
	SELECT ticket_confirm(ticket_reserve(1, 2, 'paid'));
	SELECT ticket_reserve(1, 3, 'waiting', idempotency_key => 'order-1');
	SELECT ticket_release(ticket_reserve(1, 1, 'changed mind'));
	SELECT ticket_confirm(ticket_reserve(2, 3, 'all of it'));
	SELECT ticket_reserve(3, 1, 'before pause');
	SELECT ticket_ext.pause(3);
	SELECT ticket_ext.publish();
});
# one hold that expires before the dump
$src->safe_psql('postgres', q{SELECT ticket_reserve(1, 1, 'too slow', hold_for => '100 ms')});
$src->poll_query_until('postgres', q{SELECT status = 'expired' FROM ticket_ext.holds WHERE holder = 'too slow'})
  or die 'no expiry';

my $holds_sql = q{SELECT string_agg(concat_ws(' ', hold_id, item_id, qty, status, holder, idempotency_key),
	', ' ORDER BY hold_id) FROM ticket_ext.holds};
my $items_sql = q{SELECT string_agg(concat_ws(' ', item_id, capacity, paused, available), ', ' ORDER BY item_id)
	FROM ticket_ext.availability};
my $holds = $src->safe_psql('postgres', $holds_sql);
my $items = $src->safe_psql('postgres', $items_sql);
is($items, '1 10 f 5, 2 3 f 0, 3 5 t 4', 'the source: one roomy, one sold-out, one paused item');

my $dump = $src->basedir . '/shop.sql';
$src->command_ok([ 'pg_dump', '-d', $src->connstr('postgres'), '-f', $dump ], 'pg_dump');
like(slurp_file($dump), qr/CREATE PUBLICATION ticket_ext_events/, 'the dump has the publication');

my $redis = RedisTest->new;
my $dst = new_ticket_node('dump_dst', no_extension => 1,
	conf => "ticket_ext.redis_url = '" . $redis->url . "'\nticket_ext.redis_stream = 'restored'\n");
$dst->safe_psql('postgres', 'CREATE DATABASE plain');

sub restore
{
	my ($db, @opts) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'psql', '-X', '-q', '-d', $dst->connstr($db), @opts, '-f', $dump ],
		'>', \$out, '2>', \$err);
	return ($ok, $err);
}
my ($ok, $err) = restore('postgres', '--single-transaction', '-v', 'ON_ERROR_STOP=1');
ok($ok && $err !~ /ERROR/, 'restored in one transaction (psql --single-transaction -v ON_ERROR_STOP=1)') or diag($err);
($ok, $err) = restore('plain', '-v', 'ON_ERROR_STOP=1');
ok($ok && $err !~ /ERROR/, 'restored statement by statement') or diag($err);

for my $db (qw(postgres plain))
{
	is($dst->safe_psql($db, $holds_sql), $holds, "$db: every hold, as it was");
	is($dst->safe_psql($db, $items_sql), $items, "$db: counters rebuilt from the tables (availability, paused)");
	is($dst->safe_psql($db, 'SELECT bool_and(ok) FROM ticket_ext.verify()'), 't', "$db: verify ok");
	is($dst->safe_psql($db, 'SELECT ticket_reserve(2, 1) IS NULL'), 't', "$db: the sold-out item stays sold out");
	is(sqlstate_of($dst, 'SELECT ticket_reserve(3, 1)', $db), 'TK001', "$db: the paused item stays paused");
	is($dst->safe_psql($db, q{SELECT ticket_reserve(1, 3, 'waiting', idempotency_key => 'order-1')
		= (SELECT hold_id FROM ticket_ext.holds WHERE idempotency_key = 'order-1')}), 't',
		"$db: an idempotency key from before the dump returns its hold");
	my $new = $dst->safe_psql($db, q{SELECT ticket_reserve(1, 5, 'after restore')});
	ok($new > $dst->safe_psql($db, q{SELECT max(hold_id) FROM ticket_ext.holds WHERE holder <> 'after restore'}),
		"$db: sales go on, with new hold ids after the restored ones");
	is($dst->safe_psql($db, 'SELECT ticket_reserve(1, 1) IS NULL'), 't', "$db: and stop at capacity");
	is($dst->safe_psql($db, q{SELECT count(*) FROM pg_publication WHERE pubname = 'ticket_ext_events'}), '1',
		"$db: the publication came back from the dump");
}

# the served database streams what was restored, then what came after
ok($dst->poll_query_until('postgres', q{
	SELECT state = 'ok' AND slot_confirmed_lsn >= pg_current_wal_lsn() FROM ticket_ext.stream_status
	 WHERE sink = 'redis'}), 'the restored database streams to Redis');
check_converged($dst, $redis->entries('restored'), 'Redis after the restore');

$dst->stop;
$src->stop;
$redis->stop;
done_testing();

