/*
 * libFuzzer harness: Kinesis PutRecords / error responses
 * (bgworker/stream/kinesis_response.c, PostgreSQL's jsonapi from libpgcommon).
 * Checks: never more records than asked for, failures counted within them.
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
	return 0;
}
