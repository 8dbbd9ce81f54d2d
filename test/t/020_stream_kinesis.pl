# The Kinesis sink against a real kinesalite (npm), next to Redis: the same
# events in both, per-item order on the shards, nothing lost when
# kinesalite stops mid-burst or when a proxy injects throttling and
# partial failures, KPL aggregated records read back by aws-kinesis-agg,
# and bad settings that stop Kinesis but not Redis.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use TicketTest;
use RedisTest;
use KinesisTest;

my $redis = RedisTest->new;
my $kin = KinesisTest->new(proxy => 1, limits => [ 200, 64 * 1024 ]);
$kin->create_stream('tickets', 3);
my $node = new_ticket_node('kinesis', conf => "ticket_ext.redis_url = '" . $redis->url . "'\n"
	  . "ticket_ext.kinesis_stream = 'tickets'\n"
	  . "ticket_ext.kinesis_endpoint = '" . $kin->endpoint . "'\n"
	  . "ticket_ext.aws_access_key_id = 'AKIDTEST'\n"
	  . "ticket_ext.aws_secret_access_key = 'kinesis-secret-xyz'\n"
	  . "ticket_ext.stream_backoff_min = 20ms\n"
	  . "ticket_ext.stream_backoff_max = 500ms\n"
	  . "ticket_ext.stream_queue_max = 1000\n");
ok(stream_worker_pid($node), 'worker up with both sinks');

sub wait_sinks_caught_up
{
	my ($label) = @_;
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok($node->poll_query_until('postgres', qq{
		SELECT bool_and(slot_confirmed_lsn >= '$lsn' AND state = 'ok')
		  FROM ticket_ext.stream_status WHERE sink IN ('redis', 'kinesis')}),
		"$label: both sinks caught up")
	  or diag($node->safe_psql('postgres', 'SELECT * FROM ticket_ext.stream_status'));
}

# Every committed change in Kinesis, per-item order kept on the shards;
# repeats (allowed after failures) carry an id seen before.  Returns the
# set of event ids.
sub check_kinesis
{
	my ($label) = @_;
	wait_sinks_caught_up($label);
	my $records = $kin->records('tickets');
	my $want = expected_hold_events($node);
	my (%ids, %got, %last, $repeats, $out_of_order, $bad_key);
	($repeats, $out_of_order, $bad_key) = (0, 0, 0);
	for my $r (@$records)    # shard by shard, in sequence order
	{
		my $e = $r->{data};
		$bad_key++ if $r->{key} ne ($e->{item_id} // 'snapshot');
		next if $e->{type} =~ /^snapshot/;	# each sink's slot has its own
		my ($a, $b) = split /-/, $e->{event_id};
		my $k = "$r->{shard} $e->{item_id}";
		if ($ids{ $e->{event_id} }++)
		{
			$repeats++;
			note("repeat $e->{event_id} ($e->{type} hold $e->{hold_id}) on $r->{shard} seq $r->{seq}")
			  if $repeats <= 5;
			next;
		}
		if (defined $last{$k})
		{
			my ($la, $lb) = @{ $last{$k} };
			$out_of_order++ unless $a > $la || ($a == $la && $b > $lb);
		}
		$last{$k} = [ $a, $b ];
		$got{"$e->{type} $e->{hold_id}"} = 1 if defined $e->{hold_id};
	}
	my @missing = grep { !$got{$_} } keys %$want;
	my @extra = grep { !$want->{$_} } keys %got;
	is(scalar(@missing), 0, "$label: no committed change missing from Kinesis")
	  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
	is(scalar(@extra), 0, "$label: nothing in Kinesis that was not committed");
	is($out_of_order, 0, "$label: every item's events in order on its shard");
	is($bad_key, 0, "$label: partition key = item_id");
	note("$label: " . scalar(@$records) . " records, $repeats repeats (recognisable by event_id)");
	return (\%ids, $repeats);
}

sub redis_ids
{
	return { map { $_->{event_id} => 1 } grep { $_->{type} !~ /^snapshot/ }
		  @{ $redis->entries('ticket_ext:events') } };
}

# --- the same events in Redis and Kinesis ---------------------------------
$node->safe_psql('postgres', q{
	SELECT ticket_ext.create_item(i, 100000, 'item ' || i) FROM generate_series(1, 4) i;
});
$node->safe_psql('postgres', q{
	SELECT ticket_reserve(1 + g % 4, 1, 'k' || g) FROM generate_series(1, 60) g;
	SELECT ticket_confirm(hold_id) FROM ticket_ext.holds WHERE hold_id % 3 = 0;
	SELECT ticket_release(hold_id) FROM ticket_ext.holds WHERE hold_id % 7 = 0;
	BEGIN; SELECT ticket_reserve(1, 1, 'aborted'); ROLLBACK;
});
my ($ids, $repeats) = check_kinesis('basic');
is($repeats, 0, 'basic: no repeats when nothing fails');
is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], 'Redis and Kinesis carry the same set of events');
my ($one) = grep { $_->{type} eq 'reserved' } map { $_->{data} } @{ $kin->records('tickets') };
is_deeply([ sort keys %$one ],
	[ sort grep { exists $one->{$_} } qw(event_id v type item_id hold_id qty holder commit_time lsn xid last tx_events origin) ],
	'a Kinesis record is one JSON object with the event fields');
is($one->{origin}, $node->safe_psql('postgres', "SELECT origin FROM ticket_ext.stream_state WHERE sink = 'kinesis'"),
	'... and the origin of the Kinesis slot');

# --- hostile holder text: exact in Redis, valid JSON in Kinesis ------------
{
	# quotes, backslashes, every kind of control character PostgreSQL text
	# allows (no NUL), U+2028, an emoji, markup
	my $sql_holder = q{E'q"uo\'te \\\\ back\\\\slash \t tab \n nl \r cr '
	  || chr(1) || chr(8) || chr(12) || chr(27) || chr(31) || chr(127)
	  || ' ' || chr(8232) || ' ' || chr(128512) || ' </script>'};
	my $want = $node->safe_psql('postgres', "SELECT encode(convert_to($sql_holder, 'UTF8'), 'hex')");
	my $hold = $node->safe_psql('postgres', "SELECT ticket_reserve(3, 1, $sql_holder)");
	wait_sinks_caught_up('hostile holder');
	my ($r) = grep { $_->{hold_id} eq $hold } @{ $redis->entries('ticket_ext:events') };
	is(unpack('H*', $r->{holder} // ''), $want, 'hostile holder arrives byte for byte in Redis');
	my ($k) = grep { ($_->{data}{hold_id} // '') eq $hold } @{ $kin->records('tickets') };
	ok($k, 'the Kinesis record with the hostile holder is valid JSON (parsed by the AWS SDK reader)');
	my $kh = $k ? $k->{data}{holder} : '';
	utf8::encode($kh);
	is(unpack('H*', $kh), $want, '... and its holder decodes to the same bytes');
}

# --- a hot item, several of its records per call (kinesis_records_per_item)
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_records_per_item = 100");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
my ($sent0, $req0) = split /\|/, $node->safe_psql('postgres',
	"SELECT events_sent, requests FROM ticket_ext.stream_status WHERE sink = 'kinesis'");
$node->safe_psql('postgres', q{
	SELECT ticket_reserve(2, 1, 'hot ' || g) FROM generate_series(1, 400) g;
});
($ids, $repeats) = check_kinesis('hot item, 100 records of it per call');
my ($sent1, $req1) = split /\|/, $node->safe_psql('postgres',
	"SELECT events_sent, requests FROM ticket_ext.stream_status WHERE sink = 'kinesis'");
cmp_ok($sent1 - $sent0, '>=', 400, 'hot item: the 400 events sent');
# (at most 100 a call, and the shard's pace: its bucket holds 38 records)
cmp_ok($req1 - $req0, '<=', 25, "hot item: in a few calls (" . ($req1 - $req0) . "), not one per event");
$node->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.kinesis_records_per_item");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

my @mix = pgbench_scripts(
	reserve => [ 60, "\\set i random(1, 4)\nSELECT ticket_reserve(:i, 1, 'b');\n" ],
	confirm => [ 25, "\\set i random(1, 4)\nSELECT ticket_confirm(ticket_reserve(:i, 1, 'c'));\n" ],
	release => [ 15, "\\set i random(1, 4)\nSELECT ticket_release(ticket_reserve(:i, 1, 'r'));\n" ]);

# --- kinesalite stops in the middle of a burst, Redis goes on -------------
my $before = scalar keys %{ redis_ids() };
my $load = start_load($node, 6, 4, 400, @mix);
sleep 1;
$kin->stop_kinesalite;
sleep 3;
my $during = scalar keys %{ redis_ids() };
cmp_ok($during, '>', $before + 200, "while Kinesis is down Redis keeps receiving ($before -> $during)");
$kin->start;
$load->finish;
($ids, $repeats) = check_kinesis('after kinesalite stopped and restarted');
is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], '... and it has the same events as Redis');
like(slurp_file($node->logfile), qr/event queue full \(1000 events\): replication stream closed/,
	'the outage outgrew the queue: the Kinesis worker closed its stream (its slot kept the rest)');
unlike(slurp_file($node->logfile), qr/detached|replaying from the slot/,
	'... and caught up from its own slot, with no replay for Redis');

# --- throttling and partial failures (fault proxy) ------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->proxy_endpoint . "'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
$node->safe_psql('postgres', "SELECT ticket_ext.stream_reset_stats()");
$load = start_load($node, 4, 4, 300, @mix);
$load->finish;
($ids, $repeats) = check_kinesis('with injected throttling and partial failures');
my $stats = $kin->proxy_stats;
cmp_ok($stats->{partial}, '>', 0, "the proxy failed part of $stats->{partial} calls ($stats->{failedRecords} records)");
cmp_ok($stats->{throttled}, '>', 0, "... throttled $stats->{throttled} calls and failed $stats->{failed500} with HTTP 500");
cmp_ok($stats->{incomplete}, '>', 0, "... and answered $stats->{incomplete} calls with an incomplete HTTP 200 (retried, nothing lost)");
my $st = $node->safe_psql('postgres', "SELECT throttles > 0, retries > 0 FROM ticket_ext.stream_status WHERE sink = 'kinesis'");
is($st, 't|t', 'stream_status counted throttles and retries');
is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], 'still the same events as Redis');
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->endpoint . "'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

# --- KPL aggregation: an item's events in one aggregated record ------------
# read back by awslabs' de-aggregator (aws-kinesis-agg, checksums on); per
# item order kept, also through the fault proxy (an aggregated record lands
# or fails whole)
$node->safe_psql('postgres', 'ALTER SYSTEM SET ticket_ext.kinesis_aggregate = on');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
$node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'agg-' || g) FROM generate_series(1, 400) g");
$node->safe_psql('postgres', "SELECT ticket_reserve(1 + g % 4, 1, 'agg2-' || g) FROM generate_series(1, 100) g");
($ids, $repeats) = check_kinesis('aggregated');
my %agg_records;
for my $r (grep { defined $_->{agg} } @{ $kin->records('tickets') })
{
	$agg_records{"$r->{shard} $r->{seq}"} = $r->{agg};
}
my $most = (sort { $b <=> $a } values %agg_records)[0] // 0;
cmp_ok(scalar(keys %agg_records), '>', 0,
	'with kinesis_aggregate the events go out as KPL aggregated records, read back with checksums');
cmp_ok($most, '>=', 100, "... up to $most events of one item in one record");
is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], '... the same events as Redis');
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->proxy_endpoint . "'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
$load = start_load($node, 4, 4, 300, @mix);
$load->finish;
($ids, $repeats) = check_kinesis('aggregated, with injected throttling and partial failures');
is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], '... the same events as Redis');
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->endpoint . "'");
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ticket_ext.kinesis_aggregate');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

# --- per-shard limits, as AWS enforces them (the limit proxy) --------------
# (200 records/s and 64 KiB/s per shard here, for a short test, with the
# record size limit scaled down alike; AWS's are 1,000, 1 MiB/s and 1 MiB).
# Unpaced, a hot item's burst is throttled record by record (nothing lost
# or reordered); paced (the sink's own limits a little under the proxy's),
# it is not, and the other shards' items do not wait for the hot one;
# aggregated, the same burst needs far fewer records.
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_max_record_bytes = '60kB'");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_shard_bytes_per_second = '60kB'");
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(i, 100000, 'shard ' || i) FROM generate_series(10, 19) i");
$node->safe_psql('postgres', "SELECT ticket_ext.create_item(i, 100000, 'burst ' || i) FROM generate_series(20, 79) i");

# records the limit proxy stored and throttled since $before (its stats then)
sub limit_delta
{
	my ($before) = @_;
	my $after = $kin->limit_stats;
	my ($sent, $throttled) = (0, 0);
	for my $k (keys %$after)
	{
		$sent += $after->{$k}{records} - ($before->{$k}{records} // 0);
		$throttled += $after->{$k}{throttled} - ($before->{$k}{throttled} // 0);
	}
	return ($sent, $throttled);
}

# the shard of an item's records (once it has one in Kinesis)
sub item_shards
{
	my %shard;
	$shard{ $_->{data}{item_id} } = $_->{shard} for grep { defined $_->{data}{item_id} } @{ $kin->records('tickets') };
	return \%shard;
}

for my $case ([ 'unpaced', 0, 'off' ], [ 'paced', 190, 'off' ], [ 'paced, aggregated', 190, 'on' ])
{
	my ($label, $pace, $aggregate) = @$case;
	$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->limit_endpoint . "'");
	$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_aggregate = $aggregate");
	$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_shard_records_per_second = $pace");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	sleep 1;
	my $burst = "SELECT ticket_reserve(2, 1, 'limited-$label-' || g) FROM generate_series(1, 600) g";
	if ($label eq 'unpaced')
	{
		# Unpaced, the hot shard must get records faster than its limit on
		# any machine: one record per item per call, so the burst goes to 20
		# items of one shard (20 records a call), not to one item (the call
		# rate of a slow machine alone can stay under the limit).
		$node->safe_psql('postgres', "SELECT ticket_reserve(i, 1, 'probe') FROM generate_series(20, 79) i");
		my %by_shard;
		for (1 .. 300)
		{
			my $where = item_shards();
			if (60 == grep { defined $where->{$_} } 20 .. 79)
			{
				push @{ $by_shard{ $where->{$_} } }, $_ for 20 .. 79;
				last;
			}
			usleep(100_000);
		}
		my ($group) = sort { @$b <=> @$a } values %by_shard;
		ok($group && @$group >= 20, 'unpaced: 20 burst items on one shard') or diag explain \%by_shard;
		my @items = @{$group}[ 0 .. 19 ];
		$burst = "SELECT ticket_reserve(i, 1, 'limited-$label-' || g) FROM "
		  . "(SELECT g, i FROM generate_series(1, 30) g, unnest('{" . join(',', @items) . "}'::int8[]) i ORDER BY g, i) s";
	}
	my $before = $kin->limit_stats;
	my $t0 = time;
	$node->safe_psql('postgres', $burst);
	$node->safe_psql('postgres', "SELECT ticket_reserve(10 + g % 10, 1, 'cool-$label-' || g) FROM generate_series(1, 60) g");
	# the other shards' items: in Kinesis while the hot item's shard still works
	my ($others_done, $hot_shard);
	for (1 .. 300)
	{
		my $where = item_shards();
		$hot_shard //= $where->{2};
		my @cool = grep { defined $where->{$_} && defined $hot_shard && $where->{$_} ne $hot_shard } 10 .. 19;
		my %cool = map { ($_ => 1) } @cool;
		my %in = map { ($_->{data}{event_id} => 1) }
		  grep { ($_->{data}{holder} // '') =~ /^cool-\Q$label\E-/ && $cool{ $_->{data}{item_id} } } @{ $kin->records('tickets') };
		my $want = $node->safe_psql('postgres',
			"SELECT count(*) FROM ticket_ext.holds WHERE holder LIKE 'cool-$label-%' AND item_id IN (" . join(',', @cool, 0) . ")");
		if (@cool && scalar(keys %in) >= $want)
		{
			$others_done = time - $t0;
			last;
		}
		usleep(100_000);
	}
	($ids, $repeats) = check_kinesis("shard limits, $label");
	my $all_done = time - $t0;
	my ($sent, $throttled) = limit_delta($before);
	note(sprintf("shard limits, %s: %d records stored, %d throttled; other shards' items in %.1f s, all in %.1f s",
		$label, $sent, $throttled, $others_done // -1, $all_done));
	if ($label eq 'unpaced')
	{
		cmp_ok($throttled, '>', 0, "unpaced: the hot item's shard throttled $throttled records, none lost");
		# not paced: throttling backs the whole sink off (no resending at once)
		cmp_ok($throttled, '<', 10 * $sent, "unpaced: throttled records are retried with backoff ($throttled for $sent stored)");
	}
	else
	{
		cmp_ok($throttled, '<', 0.05 * $sent, "$label: $throttled records throttled of $sent stored (under 5%)");
	}
	if ($label eq 'paced')
	{
		ok(defined $others_done && $others_done < $all_done - 1,
			sprintf("paced: the other shards' items were in Kinesis after %.1f s, while the hot item's shard took %.1f s",
				$others_done // -1, $all_done));
	}
	if ($aggregate eq 'on')
	{
		cmp_ok($sent, '<', 100, "aggregation on: the 660 events went out in $sent records");
	}
	is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], '... the same events as Redis');
}
# a refresh of the shard list that fails keeps the last list: still paced
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->limit_endpoint . "'");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_aggregate = off");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_records_per_item = 100");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_shard_records_per_second = 190");
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_shards_refresh = '1s'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
$kin->limit_fail_listshards(100000);
my $lists0 = $kin->limit_listshards_calls;
my $before_refresh = $kin->limit_stats;
$node->safe_psql('postgres', "SELECT ticket_reserve(2, 1, 'refresh-failing-' || g) FROM generate_series(1, 600) g");
($ids, $repeats) = check_kinesis('shard list refresh failing');
{
	my ($sent, $throttled) = limit_delta($before_refresh);
	cmp_ok($kin->limit_listshards_calls - $lists0, '>=', 2, 'the shard list was asked for again (and failed) during the burst');
	cmp_ok($throttled, '<', 0.05 * $sent, "a failed refresh keeps the last list: still paced ($throttled throttled of $sent)");
	like(slurp_file($node->logfile), qr/cannot list the stream's shards, pacing with the last list: ListShards: HTTP 500 InternalFailure/,
		'the log says so, with AWS\'s error type');
}
$kin->limit_fail_listshards(0);
$node->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.kinesis_shards_refresh");
$node->safe_psql('postgres', "ALTER SYSTEM RESET ticket_ext.kinesis_records_per_item");

# a limit of 1 record/s still sends (a bucket holds at least one record)
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_shard_records_per_second = 1");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
$node->safe_psql('postgres', "SELECT ticket_reserve(2, 1, 'one-a-second')");
($ids, $repeats) = check_kinesis('paced at 1 record/s');
my %shards_seen = map { ("tickets/$_->{shard}" => 1) } @{ $kin->records('tickets') };
ok(!grep({ !$shards_seen{$_} } keys %{ $kin->limit_stats }),
	'the limit proxy maps partition keys to the shards kinesalite stores them in');
$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '" . $kin->endpoint . "'");
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ticket_ext.kinesis_aggregate');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ticket_ext.kinesis_max_record_bytes');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ticket_ext.kinesis_shard_records_per_second');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ticket_ext.kinesis_shard_bytes_per_second');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

# --- bad settings: Kinesis reports them, Redis is unaffected -------------
for my $case (
	[ 'kinesis_region', 'nowhere', qr/not a region name/, 'error' ],
	[ 'kinesis_endpoint', 'http://127.0.0.1:1/', qr/(PutRecords|DescribeStreamSummary) to .*connect/i, 'retrying' ],
	[ 'kinesis_stream', 'no_such_stream', qr/ResourceNotFoundException/, 'error' ])
{
	my ($setting, $value, $pattern, $state) = @$case;
	my $good = $node->safe_psql('postgres', "SHOW ticket_ext.$setting");
	$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.$setting = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	sleep 1;
	my $n0 = scalar keys %{ redis_ids() };
	$node->safe_psql('postgres', "SELECT ticket_reserve(1, 1, 'bad $setting') FROM generate_series(1, 20)");
	ok($node->poll_query_until('postgres', qq{
		SELECT state = '$state' FROM ticket_ext.stream_status WHERE sink = 'kinesis'}),
		"$setting = '$value': Kinesis sink in state $state");
	like($node->safe_psql('postgres', "SELECT last_error FROM ticket_ext.stream_status WHERE sink = 'kinesis'"),
		$pattern, "... with a clear last_error");
	ok($node->poll_query_until('postgres', qq{
		SELECT state = 'ok' FROM ticket_ext.stream_status WHERE sink = 'redis'}),
		'... while Redis stays ok');
	my $n1;
	for (1 .. 50)
	{
		$n1 = scalar keys %{ redis_ids() };
		last if $n1 >= $n0 + 20;
		usleep(100_000);
	}
	cmp_ok($n1, '>=', $n0 + 20, '... and keeps receiving events');
	$node->safe_psql('postgres', "ALTER SYSTEM SET ticket_ext.$setting = '$good'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
($ids, $repeats) = check_kinesis('after the bad settings were fixed');
is_deeply([ sort keys %$ids ], [ sort keys %{ redis_ids() } ], 'Kinesis caught up with Redis');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server kept running throughout');

# --- the secret key stays secret -----------------------------------------
$node->psql('postgres', 'CREATE ROLE peeker LOGIN');
my ($so, $se);
$node->psql('postgres', 'SHOW ticket_ext.aws_secret_access_key', stdout => \$so, stderr => \$se,
	extra_params => [ '-U', 'peeker' ]);
like($se, qr/permission denied|must be superuser/, 'a non-superuser cannot SHOW the AWS secret');
unlike(slurp_file($node->logfile), qr/kinesis-secret-xyz/, 'the AWS secret is never logged');

$node->stop;
done_testing();
