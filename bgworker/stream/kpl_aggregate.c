/*-------------------------------------------------------------------------
 *
 * kpl_aggregate.c
 *	  Kinesis Producer Library aggregated records: several events of one
 *	  item in one Kinesis record, the format the KPL writes and the KCL,
 *	  Lambda's kinesis-aggregation libraries and Firehose de-aggregate
 *	  (awslabs/amazon-kinesis-producer, aggregation-format.md):
 *
 *	    F3 89 9A C2 | AggregatedRecord (protobuf) | MD5 of the protobuf
 *
 *	  message AggregatedRecord { repeated string partition_key_table = 1;
 *	                             repeated string explicit_hash_key_table = 2;
 *	                             repeated Record records = 3; }
 *	  message Record { required uint64 partition_key_index = 1;
 *	                   optional uint64 explicit_hash_key_index = 2;
 *	                   required bytes data = 3; repeated Tag tags = 4; }
 *
 *	  Every sub-record of ours has the record's own partition key (index 0),
 *	  so the KCL never drops one for hashing outside its shard.  The few
 *	  protobuf wire rules needed (varints, length-delimited fields) are
 *	  written here; MD5 is PostgreSQL's own (common/md5.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/md5.h"
#include "kinesis.h"
#ifndef FRONTEND
#include "utils/resowner.h"
#endif

#define KPL_MAGIC			"\xF3\x89\x9A\xC2"
#define KPL_MAGIC_LEN		4

/* protobuf tags: field number << 3 | wire type (0 varint, 2 length-delimited) */
#define TAG_PARTITION_KEY_TABLE	((1 << 3) | 2)
#define TAG_RECORDS				((3 << 3) | 2)
#define TAG_PK_INDEX			((1 << 3) | 0)
#define TAG_DATA				((3 << 3) | 2)

static int
varint_len(uint64 v)
{
	int			n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

static void
append_varint(StringInfo buf, uint64 v)
{
	while (v >= 0x80)
	{
		appendStringInfoChar(buf, (char) ((v & 0x7F) | 0x80));
		v >>= 7;
	}
	appendStringInfoChar(buf, (char) v);
}

/* a length-delimited field: tag, length, bytes */
static void
append_bytes_field(StringInfo buf, int tag, const char *data, int len)
{
	appendStringInfoChar(buf, (char) tag);
	append_varint(buf, (uint64) len);
	appendBinaryStringInfo(buf, data, len);
}

/* The protobuf size of one sub-record holding len bytes of data. */
static int
sub_record_size(int len)
{
	/* Record: pk index (tag + varint 0) and data (tag, length, bytes) */
	int			record = 2 + 1 + varint_len((uint64) len) + len;

	/* its field in AggregatedRecord: tag, length, the Record */
	return 1 + varint_len((uint64) record) + record;
}

void
kpl_begin(KplAggregate *agg, const char *partition_key)
{
	int			keylen = strlen(partition_key);

	initStringInfo(&agg->pb);
	append_bytes_field(&agg->pb, TAG_PARTITION_KEY_TABLE, partition_key, keylen);
	agg->count = 0;
}

/* The aggregated record's size (magic and MD5 included) with len more bytes. */
int
kpl_size_with(const KplAggregate *agg, int len)
{
	return KPL_MAGIC_LEN + agg->pb.len + sub_record_size(len) + 16;
}

void
kpl_add(KplAggregate *agg, const char *data, int len)
{
	int			record = 2 + 1 + varint_len((uint64) len) + len;

	appendStringInfoChar(&agg->pb, (char) TAG_RECORDS);
	append_varint(&agg->pb, (uint64) record);
	appendStringInfoChar(&agg->pb, (char) TAG_PK_INDEX);
	appendStringInfoChar(&agg->pb, 0);
	append_bytes_field(&agg->pb, TAG_DATA, data, len);
	agg->count++;
}

/*
 * PostgreSQL's MD5.  Built with OpenSSL, the server tracks the hash context
 * in CurrentResourceOwner, which a worker has none of outside a
 * transaction: lend it one of its own for the call.
 */
bool
kinesis_md5(const void *data, size_t len, void *out, const char **errstr)
{
#ifndef FRONTEND
	static ResourceOwner owner = NULL;
	ResourceOwner saved = CurrentResourceOwner;
	bool		ok;

	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "ticket_ext KPL checksum");
	CurrentResourceOwner = owner;
	ok = pg_md5_binary(data, len, out, errstr);
	CurrentResourceOwner = saved;
	return ok;
#else
	return pg_md5_binary(data, len, out, errstr);
#endif
}

/*
 * The record's bytes (palloc'd, *len set): magic, protobuf, MD5.  Frees
 * the aggregate's buffer.  false (errstr) if MD5 failed.
 */
bool
kpl_finish(KplAggregate *agg, char **out, int *len, const char **errstr)
{
	char	   *buf = palloc(KPL_MAGIC_LEN + agg->pb.len + 16);

	memcpy(buf, KPL_MAGIC, KPL_MAGIC_LEN);
	memcpy(buf + KPL_MAGIC_LEN, agg->pb.data, agg->pb.len);
	if (!kinesis_md5(agg->pb.data, agg->pb.len, buf + KPL_MAGIC_LEN + agg->pb.len, errstr))
	{
		pfree(buf);
		pfree(agg->pb.data);
		return false;
	}
	*out = buf;
	*len = KPL_MAGIC_LEN + agg->pb.len + 16;
	pfree(agg->pb.data);
	return true;
}
