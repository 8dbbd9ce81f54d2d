/*-------------------------------------------------------------------------
 *
 * sinks.c
 *	  The list of sinks.  Each has a worker process and a replication slot
 *	  of its own (stream_worker.c); the stream gate asks here whether every
 *	  configured sink's slot exists, without knowing any sink.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "stream.h"
#include "stream_slot.h"

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

/* Is any sink configured? */
bool
stream_sinks_configured(void)
{
	int			i;

	for (i = 0; i < (int) lengthof(sink_list); i++)
		if (sink_list[i]->enabled())
			return true;
	return false;
}

/* Does every configured sink's slot exist (persistent, in database db)? */
bool
stream_sinks_ready(Oid db)
{
	int			i;

	for (i = 0; i < (int) lengthof(sink_list); i++)
	{
		StreamSlotInfo slot;

		if (!sink_list[i]->enabled())
			continue;
		if (!stream_slot_read(sink_list[i]->slot_name(), &slot) ||
			slot.database != db || !slot.persistent)
			return false;
	}
	return true;
}
