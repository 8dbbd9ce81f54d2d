/*-------------------------------------------------------------------------
 *
 * stream_settings.c
 *	  Settings of the event streaming worker.  All reload (SIGHUP) but the
 *	  database; secrets (redis_url, stream_conninfo) are superuser-only
 *	  and shown to nobody else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "stream.h"
#include "utils/guc.h"

char	   *stream_slot_name = NULL;
char	   *kinesis_slot_name = NULL;
char	   *stream_conninfo = NULL;
char	   *redis_url = NULL;
char	   *redis_password_file = NULL;
char	   *redis_stream = NULL;
bool		redis_stream_per_item = false;
int			redis_maxlen = 0;
int			stream_batch_size = 500;
int			stream_queue_max = 100000;
int			stream_connect_timeout_ms = 5000;
int			stream_io_timeout_ms = 5000;
int			stream_backoff_min_ms = 100;
int			stream_backoff_max_ms = 10000;
int			stream_wal_warning_mb = 1024;
char	   *kinesis_stream = NULL;
char	   *kinesis_region = NULL;
char	   *kinesis_endpoint = NULL;
char	   *aws_access_key_id = NULL;
char	   *aws_secret_access_key = NULL;
char	   *aws_credentials_file = NULL;
int			kinesis_max_record_bytes = 1024 * 1024;
int			kinesis_records_per_item = 1;
bool		kinesis_aggregate = false;
int			kinesis_max_request_bytes = 5 * 1024 * 1024;
int			kinesis_shard_records_per_second = 950;
int			kinesis_shard_bytes_per_second = 1000000;
int			kinesis_shards_refresh_ms = 60000;

void
stream_define_settings(void)
{
	DefineCustomStringVariable("ticket_ext.redis_url",
							   "Redis to stream events to: redis://[[user]:password@]host[:port][/db]; empty = off.",
							   NULL, &redis_url, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.redis_password_file",
							   "File holding the Redis password (overrides a password in redis_url).",
							   "PostgreSQL logs the new value of a setting changed by a reload: keep secrets in this file, not in redis_url.",
							   &redis_password_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.redis_stream",
							   "Redis stream key (the prefix, with redis_stream_per_item).",
							   NULL, &redis_stream, "ticket_ext:events",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("ticket_ext.redis_stream_per_item",
							 "One stream per item, named <redis_stream>:<item_id>.",
							 NULL, &redis_stream_per_item, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.redis_maxlen",
							"Approximate MAXLEN trimming of each stream; 0 = off.",
							NULL, &redis_maxlen, 0, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.stream_slot",
							   "Replication slot the Redis sink's worker creates and reads.",
							   NULL, &stream_slot_name, "ticket_ext_stream",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.kinesis_slot",
							   "Replication slot the Kinesis sink's worker creates and reads.",
							   NULL, &kinesis_slot_name, "ticket_ext_kinesis",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.stream_conninfo",
							   "libpq settings for the worker's replication connection to this server; empty = local socket as the bootstrap superuser.",
							   NULL, &stream_conninfo, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_batch_size",
							"Most events per sink request.",
							NULL, &stream_batch_size, 500, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_queue_max",
							"Most decoded events held in memory before the worker stops reading.",
							NULL, &stream_queue_max, 100000, 1000, 10000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_connect_timeout",
							"Timeout for connecting to a sink.",
							NULL, &stream_connect_timeout_ms, 5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_io_timeout",
							"Timeout for one request to a sink.",
							NULL, &stream_io_timeout_ms, 5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_backoff_min",
							"First retry delay after a sink failure (doubles up to stream_backoff_max).",
							NULL, &stream_backoff_min_ms, 100, 1, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_backoff_max",
							"Longest retry delay; also the retry delay for bad settings.",
							NULL, &stream_backoff_max_ms, 10000, 1, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.kinesis_stream",
							   "Kinesis data stream to send events to; empty = off.",
							   NULL, &kinesis_stream, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.kinesis_region",
							   "AWS region of the Kinesis stream (also used for signing).",
							   NULL, &kinesis_region, "us-east-1",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.kinesis_endpoint",
							   "Kinesis endpoint URL; empty = https://kinesis.<region>.amazonaws.com/.",
							   NULL, &kinesis_endpoint, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.aws_access_key_id",
							   "AWS access key id; empty = the server's AWS_ACCESS_KEY_ID.",
							   NULL, &aws_access_key_id, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.aws_secret_access_key",
							   "AWS secret access key; empty = the server's AWS_SECRET_ACCESS_KEY.",
							   NULL, &aws_secret_access_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("ticket_ext.aws_credentials_file",
							   "AWS shared credentials file ([default]), read at every Kinesis (re)connect; used when the key settings are empty.",
							   NULL, &aws_credentials_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.kinesis_max_record_bytes",
							"Largest Kinesis record (data + partition key).",
							NULL, &kinesis_max_record_bytes, 1024 * 1024, 1024, 10 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.kinesis_records_per_item",
							"Most records of one item in one PutRecords call.",
							"1 (the default) keeps every item's order even under partial failures; "
							"more raises a hot item's throughput, but a failed record can then be "
							"stored after a later event of its item.",
							&kinesis_records_per_item, 1, 1, 500,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("ticket_ext.kinesis_aggregate",
							 "Send an item's consecutive events as one KPL aggregated record.",
							 "The format the Kinesis Producer Library writes; the KCL, Lambda's "
							 "kinesis-aggregation libraries and Firehose read it. An aggregated record "
							 "lands or fails whole, so an item's order holds at any rate.",
							 &kinesis_aggregate, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.kinesis_shard_records_per_second",
							"Records sent to one Kinesis shard per second at most (0: no pacing).",
							"AWS takes 1,000 per shard; the default leaves room for clock differences.",
							&kinesis_shard_records_per_second, 950, 0, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.kinesis_shard_bytes_per_second",
							"Bytes (data and partition key) sent to one Kinesis shard per second at most (0: no pacing).",
							"AWS takes 1 MiB per shard; the default leaves room for clock differences.",
							&kinesis_shard_bytes_per_second, 1000000, 0, 100 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.kinesis_shards_refresh",
							"How often the Kinesis sink lists the stream's shards again (resharding).",
							"A list that cannot be had is asked for again every 10 s at most.",
							&kinesis_shards_refresh_ms, 60000, 1000, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.kinesis_max_request_bytes",
							"Largest PutRecords request body.",
							NULL, &kinesis_max_request_bytes, 5 * 1024 * 1024, 64 * 1024, 10 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.stream_wal_warning",
							"Warn when the slot retains more WAL than this.",
							NULL, &stream_wal_warning_mb, 1024, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MB, NULL, NULL, NULL);
}
