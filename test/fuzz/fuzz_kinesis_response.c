/*
 * libFuzzer harness: Kinesis PutRecords / error responses
 * and ListShards answers (bgworker/stream/kinesis_response.c, PostgreSQL's
 * jsonapi from libpgcommon).  Checks: never more records than asked for,
 * failures counted within them; shards within bounds, each with an id and
 * a hash key range that is one.
 */
#include "postgres_fe.h"

#include "kinesis.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	KinesisResponse kr;
	bool		failed[16];
	char		err[256];

	if (kinesis_parse_response((const char *) data, size, &kr, failed, 16, err, sizeof(err)))
	{
		if (kr.nrecords < 0 || kr.nrecords > 16 || kr.throttled_records > kr.nrecords)
			abort();
	}
	{
		static KinesisShardList list;
		int			i;

		if (kinesis_parse_shards((const char *) data, size, &list, err, sizeof(err)))
		{
			if (list.nshards < 0 || list.nshards > KINESIS_MAX_SHARDS)
				abort();
			for (i = 0; i < list.nshards; i++)
				if (list.shards[i].id[0] == '\0' || list.shards[i].start > list.shards[i].end ||
					list.shards[i].closed)
					abort();
		}
	}
	return 0;
}
