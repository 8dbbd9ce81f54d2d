/*-------------------------------------------------------------------------
 *
 * stream_status.c
 *	  The streaming worker's state in shared memory, and the SQL function
 *	  behind the view ticket_ext.stream_status.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "replication/slot.h"
#include "storage/shmem.h"
#include "stream.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ticket_stream_status);
PG_FUNCTION_INFO_V1(ticket_stream_reset_stats);

StreamShared *stream_shared = NULL;

const double delay_bucket_ms[DELAY_BUCKETS] = {
	0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
	1000, 1500, 2000, 5000, 10000, 1e12
};

/* The delay (ms, a bucket's upper bound) below which a fraction q falls. */
static double
delay_percentile(const uint64 *hist, double q)
{
	uint64		total = 0;
	uint64		seen = 0;
	int			i;

	for (i = 0; i < DELAY_BUCKETS; i++)
		total += hist[i];
	if (total == 0)
		return 0;
	for (i = 0; i < DELAY_BUCKETS; i++)
	{
		seen += hist[i];
		if ((double) seen >= q * (double) total)
			return delay_bucket_ms[i];
	}
	return delay_bucket_ms[DELAY_BUCKETS - 1];
}

/* ticket_ext.stream_reset_stats(): zero the counters (benchmarks) */
Datum
ticket_stream_reset_stats(PG_FUNCTION_ARGS)
{
	int			i;

	if (stream_shared == NULL)
		PG_RETURN_VOID();
	SpinLockAcquire(&stream_shared->mutex);
	for (i = 0; i < MAX_SINKS; i++)
	{
		stream_shared->sinks[i].events_sent = 0;
		stream_shared->sinks[i].requests = 0;
		stream_shared->sinks[i].retries = 0;
		stream_shared->sinks[i].throttles = 0;
		memset(stream_shared->sinks[i].delay_hist, 0, sizeof(stream_shared->sinks[i].delay_hist));
	}
	SpinLockRelease(&stream_shared->mutex);
	PG_RETURN_VOID();
}

Size
stream_shmem_size(void)
{
	return MAXALIGN(sizeof(StreamShared));
}

/* under AddinShmemInitLock, from the shmem startup hook */
void
stream_shmem_startup(void)
{
	bool		found;

	stream_shared = ShmemInitStruct("ticket_ext stream", stream_shmem_size(), &found);
	if (!found)
	{
		memset(stream_shared, 0, stream_shmem_size());
		SpinLockInit(&stream_shared->mutex);
	}
}

static const char *
state_name(SinkState s)
{
	switch (s)
	{
		case SINK_STATE_DISABLED:
			return "disabled";
		case SINK_STATE_CONNECTING:
			return "connecting";
		case SINK_STATE_OK:
			return "ok";
		case SINK_STATE_RETRYING:
			return "retrying";
		case SINK_STATE_THROTTLED:
			return "throttled";
		case SINK_STATE_ERROR:
			return "error";
	}
	return "unknown";
}

/* The slot's confirmed position, straight from shared memory. */
static XLogRecPtr
slot_confirmed_lsn(void)
{
	ReplicationSlot *slot;
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(stream_slot_name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		lsn = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return lsn;
}

/*
 * ticket_ext.stream_status(): one row per sink.  No setting values (and
 * so no secrets) appear here.
 */
Datum
ticket_stream_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamShared copy;
	XLogRecPtr	slot_lsn = slot_confirmed_lsn();
	XLogRecPtr	now_lsn = RecoveryInProgress() ? InvalidXLogRecPtr : GetXLogInsertRecPtr();
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (stream_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ticket_ext must be loaded via shared_preload_libraries"),
				 errhint("Add ticket_ext to shared_preload_libraries in postgresql.conf and restart the server.")));
	InitMaterializedSRF(fcinfo, 0);
	SpinLockAcquire(&stream_shared->mutex);
	memcpy(&copy, stream_shared, sizeof(copy));
	SpinLockRelease(&stream_shared->mutex);

	for (i = 0; i < copy.nsinks; i++)
	{
		SinkStatus *s = &copy.sinks[i];
		Datum		values[16];
		bool		nulls[16] = {0};

		values[0] = CStringGetTextDatum(s->name);
		values[1] = CStringGetTextDatum(state_name(s->state));
		values[2] = LSNGetDatum(s->acked_lsn);
		nulls[2] = s->acked_lsn == InvalidXLogRecPtr;
		values[3] = Int64GetDatum((int64) s->events_sent);
		values[4] = Int64GetDatum((int64) s->retries);
		values[5] = Int64GetDatum((int64) s->throttles);
		values[6] = CStringGetTextDatum(s->last_error);
		nulls[6] = s->last_error[0] == '\0';
		values[7] = TimestampTzGetDatum(s->last_error_at);
		nulls[7] = s->last_error_at == 0;
		values[8] = LSNGetDatum(slot_lsn);
		nulls[8] = slot_lsn == InvalidXLogRecPtr;
		values[9] = Int64GetDatum((slot_lsn != InvalidXLogRecPtr && now_lsn > slot_lsn)
								  ? (int64) (now_lsn - slot_lsn) : 0);
		nulls[9] = slot_lsn == InvalidXLogRecPtr;
		values[10] = Float8GetDatum(s->oldest_unacked_commit == 0 ? 0.0 :
									(double) (now - s->oldest_unacked_commit) / USECS_PER_SEC);
		values[11] = Int32GetDatum(copy.queued);
		values[12] = Int32GetDatum(copy.worker_pid);
		nulls[12] = copy.worker_pid == 0;
		values[13] = Float8GetDatum(delay_percentile(s->delay_hist, 0.50));
		values[14] = Float8GetDatum(delay_percentile(s->delay_hist, 0.99));
		values[15] = Int64GetDatum((int64) s->requests);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}
