/*-------------------------------------------------------------------------
 *
 * sinks.c
 *	  The list of sinks.  Each has a worker process and a replication slot
 *	  of its own (stream_worker.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "stream.h"

static const SinkOps *const sink_list[] = {&redis_sink_ops, &kinesis_sink_ops};

StaticAssertDecl(lengthof(sink_list) <= MAX_SINKS, "MAX_SINKS too small");

int
stream_sink_count(void)
{
	return (int) lengthof(sink_list);
}

const SinkOps *
stream_sink(int i)
{
	Assert(i >= 0 && i < (int) lengthof(sink_list));
	return sink_list[i];
}

