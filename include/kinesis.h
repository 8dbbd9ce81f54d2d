/*
 * kinesis.h
 *	  The Kinesis sink's response parser (bgworker/stream/kinesis_response.c),
 *	  credentials (aws_credentials.c) and KPL aggregation (kpl_aggregate.c).
 */
#ifndef TICKET_KINESIS_H
#define TICKET_KINESIS_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"


typedef struct KinesisResponse
{
	int			failed_count;	/* FailedRecordCount, -1 if absent */
	int			nrecords;		/* entries in Records */
	bool	   *record_failed;	/* per request record: has ErrorCode */
	int			throttled_records;	/* ErrorCode ProvisionedThroughputExceeded */
	char		record_error[96];	/* first record ErrorCode */
	char		error_type[128];	/* __type of an error response */
	char		message[256];	/* its message, or the first ErrorMessage */
} KinesisResponse;

/* The open shards of a stream, as ListShards says (kinesis_parse_shards). */
#ifndef HAVE_INT128
#error "ticket_ext's Kinesis sink needs a 128-bit integer type (hash key ranges)"
#endif
#define KINESIS_MAX_SHARDS 1024

typedef struct KinesisShardInfo
{
	char		id[64];
	uint128		start;			/* hash key range, inclusive */
	uint128		end;
	bool		has_start;
	bool		has_end;
	bool		closed;			/* has an EndingSequenceNumber: resharded */
} KinesisShardInfo;

typedef struct KinesisShardList
{
	int			nshards;
	KinesisShardInfo shards[KINESIS_MAX_SHARDS];
	char		next_token[1024];	/* "": the last page */
} KinesisShardList;

extern bool kinesis_parse_shards(const char *body, size_t len, KinesisShardList *out,
								 char *err, size_t errlen);

/* kinesis_shards.c: each record's shard, and each shard kept under its limits */
extern void kinesis_shards_set(const KinesisShardList *list);
extern void kinesis_shards_forget(void);
extern bool kinesis_shards_pacing(void);
extern long kinesis_shards_blocked_ms(TimestampTz now);
extern int	kinesis_shards_count(void);
extern int	kinesis_shard_of(const char *partition_key);
extern int	kinesis_shard_room(int shard, int min_bytes, int fill_bytes, int fill_records,
							   TimestampTz now, long *wait_ms);
extern void kinesis_shard_take(int shard, int bytes);
extern void kinesis_shard_throttled(int shard, TimestampTz now);
extern void kinesis_shard_stored(int shard);

/* aws_credentials.c */
typedef struct AwsCredentials
{
	char		key[256];
	char		secret[256];
	char		token[4096];
} AwsCredentials;

extern bool aws_credentials_get(AwsCredentials *c, char *err, int errlen);

extern bool kinesis_parse_response(const char *body, size_t len, KinesisResponse *out,
								   bool *record_failed, int max_records,
								   char *err, size_t errlen);

/* kpl_aggregate.c: one KPL aggregated record, built sub-record by sub-record */
typedef struct KplAggregate
{
	StringInfoData pb;			/* the AggregatedRecord message so far */
	int			count;			/* sub-records in it */
} KplAggregate;

extern void kpl_begin(KplAggregate *agg, const char *partition_key);
extern int	kpl_size_with(const KplAggregate *agg, int len);
extern void kpl_add(KplAggregate *agg, const char *data, int len);
extern bool kpl_finish(KplAggregate *agg, char **out, int *len, const char **errstr);
extern bool kinesis_md5(const void *data, size_t len, void *out, const char **errstr);

#endif
