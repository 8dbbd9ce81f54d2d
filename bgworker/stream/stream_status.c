/*-------------------------------------------------------------------------
 *
 * stream_status.c
 *	  The streaming worker's state in shared memory, and the SQL function
 *	  behind the view ticket_ext.stream_status.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "stream.h"
#include "stream_slot.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

/* One sink and the worker that feeds it (its own process and slot). */
typedef struct SinkStatus
{
	char		name[16];
	/* the worker */
	pid_t		worker_pid;		/* shown only: wake-ups go by latch */
	int			worker_procno;	/* -1: no worker attached */
	char		slot[NAMEDATALEN];
	bool		configured;		/* the worker's settings turn the sink on */
	Oid			dboid;			/* the database it serves */
	Oid			ready_for;		/* the installation (items relid) its slot
								 * was made for: writes need not wait */
	uint64		origin;			/* its slot's origin (stream_history.h) */
	bool		resnapshot;		/* an admin asked for a new slot + snapshot */
	StreamState stream_state;
	char		detail[256];
	XLogRecPtr	received_lsn;
	XLogRecPtr	confirmed_lsn;
	TimestampTz last_confirm_at;
	int			queued;
	/* the sink */
	SinkState	state;
	XLogRecPtr	acked_lsn;		/* commit LSN of the last event acked */
	uint64		events_sent;
	uint64		requests;		/* sends that acknowledged something */
	uint64		retries;
	uint64		throttles;
	char		last_error[512];
	TimestampTz last_error_at;
	TimestampTz last_ok_at;		/* the sink's last acknowledgement */
	TimestampTz oldest_unacked_commit;	/* 0 when nothing is pending */
	uint64		delay_hist[DELAY_BUCKETS];	/* commit -> ack delays */
} SinkStatus;

typedef struct StreamShared
{
	slock_t		mutex;
	int			nsinks;
	SinkStatus	sinks[MAX_SINKS];
} StreamShared;

static StreamShared *stream_shared = NULL;

PG_FUNCTION_INFO_V1(ticket_stream_status);
PG_FUNCTION_INFO_V1(ticket_stream_reset_stats);
PG_FUNCTION_INFO_V1(ticket_stream_state);
PG_FUNCTION_INFO_V1(ticket_stream_resnapshot);

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
		PG_RETURN_VOID();	/* not preloaded: nothing to reset */
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
		for (int i = 0; i < MAX_SINKS; i++)
			stream_shared->sinks[i].worker_procno = -1;
	}
}

bool
stream_status_available(void)
{
	return stream_shared != NULL;
}

/* before_shmem_exit: the worker is gone; nobody may wake its old PGPROC */
static void
detach_worker(int code, Datum arg)
{
	SinkStatus *st = &stream_shared->sinks[DatumGetInt32(arg)];

	SpinLockAcquire(&stream_shared->mutex);
	st->worker_pid = 0;
	st->worker_procno = -1;
	st->configured = false;
	st->stream_state = STREAM_STATE_STOPPED;
	st->detail[0] = '\0';
	st->queued = 0;
	SpinLockRelease(&stream_shared->mutex);
}

/* The slot a sink's worker streams from (settings may change it). */
void
stream_status_set_slot(int sink, const char *slot)
{
	SpinLockAcquire(&stream_shared->mutex);
	strlcpy(stream_shared->sinks[sink].slot, slot, sizeof(stream_shared->sinks[sink].slot));
	SpinLockRelease(&stream_shared->mutex);
}

/* A sink's worker says who it is (and is forgotten when it exits). */
void
stream_status_attach_worker(int sink, const char *slot)
{
	SinkStatus *st = &stream_shared->sinks[sink];

	SpinLockAcquire(&stream_shared->mutex);
	st->worker_pid = MyProcPid;
	st->worker_procno = MyProc->pgprocno;
	strlcpy(st->slot, slot, sizeof(st->slot));
	SpinLockRelease(&stream_shared->mutex);
	before_shmem_exit(detach_worker, Int32GetDatum(sink));
}

/*
 * What the worker's settings say of its sink, and the database it serves:
 * the stream gate asks here (stream_status_slots_ready), so backends never
 * read sink settings themselves.
 */
void
stream_status_set_configured(int sink, bool configured, Oid dboid)
{
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->sinks[sink].configured = configured;
	stream_shared->sinks[sink].dboid = dboid;
	SpinLockRelease(&stream_shared->mutex);
}

/* A sink's worker has a slot for this installation (items relid). */
void
stream_status_set_ready(int sink, Oid installation)
{
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->sinks[sink].ready_for = installation;
	SpinLockRelease(&stream_shared->mutex);
}

/*
 * Does every sink configured for database db have its slot (or had one
 * for installation relid: a slot made again later comes with a snapshot,
 * so writes need not wait for it)?  *configured: is any sink configured
 * for it.  (A worker that has not started yet counts as not configured.)
 */
bool
stream_status_slots_ready(Oid db, Oid relid, bool *configured)
{
	char		slots[MAX_SINKS][NAMEDATALEN];
	int			n = 0;
	int			i;

	*configured = false;
	if (stream_shared == NULL)
		return true;
	SpinLockAcquire(&stream_shared->mutex);
	for (i = 0; i < MAX_SINKS; i++)
	{
		SinkStatus *st = &stream_shared->sinks[i];

		if (st->configured && st->dboid == db && st->worker_procno >= 0)
		{
			*configured = true;
			if (!OidIsValid(relid) || st->ready_for != relid)
				strlcpy(slots[n++], st->slot, NAMEDATALEN);
		}
	}
	SpinLockRelease(&stream_shared->mutex);
	for (i = 0; i < n; i++)
	{
		StreamSlotInfo slot;

		if (!stream_slot_read(slots[i], &slot) || slot.database != db || !slot.persistent)
			return false;
	}
	return true;
}

void
stream_status_set_origin(int sink, uint64 origin)
{
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->sinks[sink].origin = origin;
	SpinLockRelease(&stream_shared->mutex);
}

/* Did an admin ask this sink's worker for a new slot and snapshot? (once) */
bool
stream_status_take_resnapshot(int sink)
{
	bool		asked;

	SpinLockAcquire(&stream_shared->mutex);
	asked = stream_shared->sinks[sink].resnapshot;
	stream_shared->sinks[sink].resnapshot = false;
	SpinLockRelease(&stream_shared->mutex);
	return asked;
}

/*
 * ticket_ext.stream_resnapshot(sink) (1.1): the sink's worker drops its
 * slot and starts a new one with a snapshot of the tables, which the sink
 * takes whatever it holds (the way out of "history: the sink holds ...
 * newer than this server's slot", or to repair a sink that lost data).
 * True if that sink's worker runs and was told.
 */
Datum
ticket_stream_resnapshot(PG_FUNCTION_ARGS)
{
	char	   *name;
	int			procno = -1;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sink must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (stream_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ticket_ext must be loaded via shared_preload_libraries")));
	SpinLockAcquire(&stream_shared->mutex);
	for (i = 0; i < stream_shared->nsinks; i++)
		if (strcmp(stream_shared->sinks[i].name, name) == 0)
			break;
	if (i < stream_shared->nsinks)
	{
		procno = stream_shared->sinks[i].worker_procno;
		if (procno >= 0)
			stream_shared->sinks[i].resnapshot = true;
	}
	SpinLockRelease(&stream_shared->mutex);
	if (i >= MAX_SINKS || (i >= stream_shared->nsinks && procno < 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no sink is called \"%s\"", name),
				 errhint("The sinks are redis and kinesis.")));
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	PG_RETURN_BOOL(procno >= 0);
}

/* Wake every streaming worker that runs (by latch, never by pid). */
void
stream_status_wake_workers(void)
{
	int			procno[MAX_SINKS];
	int			i;

	if (stream_shared == NULL)
		return;
	SpinLockAcquire(&stream_shared->mutex);
	for (i = 0; i < MAX_SINKS; i++)
		procno[i] = stream_shared->sinks[i].worker_procno;
	SpinLockRelease(&stream_shared->mutex);
	for (i = 0; i < MAX_SINKS; i++)
		if (procno[i] >= 0)
			SetLatch(&ProcGlobal->allProcs[procno[i]].procLatch);
}

void
stream_status_set_state(int sink, StreamState state, const char *detail)
{
	SinkStatus *st = &stream_shared->sinks[sink];

	SpinLockAcquire(&stream_shared->mutex);
	st->stream_state = state;
	strlcpy(st->detail, detail ? detail : "", sizeof(st->detail));
	SpinLockRelease(&stream_shared->mutex);
}

void
stream_status_set_received(int sink, XLogRecPtr lsn)
{
	SinkStatus *st = &stream_shared->sinks[sink];

	SpinLockAcquire(&stream_shared->mutex);
	st->received_lsn = Max(st->received_lsn, lsn);
	SpinLockRelease(&stream_shared->mutex);
}

void
stream_status_set_confirmed(int sink, XLogRecPtr lsn, TimestampTz at)
{
	SinkStatus *st = &stream_shared->sinks[sink];

	SpinLockAcquire(&stream_shared->mutex);
	st->confirmed_lsn = lsn;
	st->last_confirm_at = at;
	SpinLockRelease(&stream_shared->mutex);
}

void
stream_status_set_queued(int sink, int queued)
{
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->sinks[sink].queued = queued;
	SpinLockRelease(&stream_shared->mutex);
}

void
sink_status_register(int sink, const char *name)
{
	Assert(sink >= 0 && sink < MAX_SINKS);
	SpinLockAcquire(&stream_shared->mutex);
	strlcpy(stream_shared->sinks[sink].name, name, sizeof(stream_shared->sinks[sink].name));
	stream_shared->nsinks = Max(stream_shared->nsinks, sink + 1);
	SpinLockRelease(&stream_shared->mutex);
}

void
sink_status_set_state(int sink, SinkState state, const char *error)
{
	SinkStatus *st = &stream_shared->sinks[sink];

	SpinLockAcquire(&stream_shared->mutex);
	st->state = state;
	if (error != NULL)
	{
		strlcpy(st->last_error, error, sizeof(st->last_error));
		st->last_error_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&stream_shared->mutex);
}

void
sink_status_note_retry(int sink, bool throttled)
{
	SinkStatus *st = &stream_shared->sinks[sink];

	SpinLockAcquire(&stream_shared->mutex);
	st->retries++;
	if (throttled)
		st->throttles++;
	SpinLockRelease(&stream_shared->mutex);
}

/* n events acknowledged, the last one committed at lsn; delays by bucket */
void
sink_status_note_acked(int sink, int n, XLogRecPtr lsn, const uint64 *delay_hist)
{
	SinkStatus *st = &stream_shared->sinks[sink];
	int			i;

	SpinLockAcquire(&stream_shared->mutex);
	st->events_sent += n;
	st->requests++;
	st->acked_lsn = lsn;
	st->state = SINK_STATE_OK;
	st->last_ok_at = GetCurrentTimestamp();
	for (i = 0; i < DELAY_BUCKETS; i++)
		st->delay_hist[i] += delay_hist[i];
	SpinLockRelease(&stream_shared->mutex);
}

void
sink_status_set_oldest_unacked(int sink, TimestampTz commit)
{
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->sinks[sink].oldest_unacked_commit = commit;
	SpinLockRelease(&stream_shared->mutex);
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

static const char *
stream_state_name(StreamState s)
{
	switch (s)
	{
		case STREAM_STATE_STOPPED:
			return "stopped";
		case STREAM_STATE_NOT_INSTALLED:
			return "not installed";
		case STREAM_STATE_NO_SINKS:
			return "no sinks";
		case STREAM_STATE_CONNECTING:
			return "connecting";
		case STREAM_STATE_CREATING_SLOT:
			return "creating slot";
		case STREAM_STATE_STREAMING:
			return "streaming";
		case STREAM_STATE_QUEUE_FULL:
			return "queue full";
		case STREAM_STATE_RETRYING:
			return "retrying";
		case STREAM_STATE_SLOT_LOST:
			return "slot lost";
		case STREAM_STATE_SNAPSHOT:
			return "snapshot";
		case STREAM_STATE_HISTORY:
			return "history conflict";
	}
	return "unknown";
}

/* What the views say in a database the workers do not serve. */
static const char *
not_served_text(void)
{
	return psprintf("ticket_ext.database is \"%s\": this database's events are not streamed "
					"and its holds do not expire by themselves (call ticket_ext.expire_holds() periodically)",
					ticket_database);
}

/* A consistent copy of the shared state, for the views. */
static void
copy_shared(StreamShared *copy)
{
	if (stream_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ticket_ext must be loaded via shared_preload_libraries"),
				 errhint("Add ticket_ext to shared_preload_libraries in postgresql.conf and restart the server.")));
	SpinLockAcquire(&stream_shared->mutex);
	memcpy(copy, stream_shared, sizeof(*copy));
	SpinLockRelease(&stream_shared->mutex);
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
	XLogRecPtr	now_lsn = RecoveryInProgress() ? InvalidXLogRecPtr : GetXLogInsertRecPtr();
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	copy_shared(&copy);
	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < copy.nsinks; i++)
	{
		SinkStatus *s = &copy.sinks[i];
		StreamSlotInfo slot;
		XLogRecPtr	slot_lsn;
		Datum		values[17];
		bool		nulls[17] = {0};

		slot_lsn = s->slot[0] != '\0' && stream_slot_read(s->slot, &slot)
			? slot.confirmed_flush : InvalidXLogRecPtr;

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
		values[11] = Int32GetDatum(s->queued);
		values[12] = Int32GetDatum(s->worker_pid);
		nulls[12] = s->worker_pid == 0;
		values[13] = Float8GetDatum(delay_percentile(s->delay_hist, 0.50));
		values[14] = Float8GetDatum(delay_percentile(s->delay_hist, 0.99));
		values[15] = Int64GetDatum((int64) s->requests);
		/* 1.1: last_ok_at (a database still at 1.0 declares 16 columns) */
		values[16] = TimestampTzGetDatum(s->last_ok_at);
		nulls[16] = s->last_ok_at == 0;
		if (!ticket_database_served())
		{
			int			c;

			/* the sinks' figures are another database's: none of them here */
			for (c = 2; c < lengthof(nulls); c++)
				nulls[c] = true;
			values[1] = CStringGetTextDatum("not served");
			values[6] = CStringGetTextDatum(not_served_text());
			nulls[6] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/*
 * ticket_ext.stream_state() (1.1): per sink, what its worker's replication
 * stream is doing and, when it cannot go on, why and what to do.
 */
Datum
ticket_stream_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamShared copy;
	int			i;

	copy_shared(&copy);
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < copy.nsinks; i++)
	{
		SinkStatus *s = &copy.sinks[i];
		Datum		values[6];
		bool		nulls[6] = {0};

		values[0] = CStringGetTextDatum(s->name);
		values[1] = CStringGetTextDatum(stream_state_name(s->stream_state));
		values[2] = CStringGetTextDatum(s->detail);
		nulls[2] = s->detail[0] == '\0';
		values[3] = CStringGetTextDatum(s->slot);
		nulls[3] = s->slot[0] == '\0';
		values[4] = Int32GetDatum(s->worker_pid);
		nulls[4] = s->worker_pid == 0;
		values[5] = Int64GetDatum((int64) s->origin);
		nulls[5] = s->origin == 0;
		if (!ticket_database_served())
		{
			values[1] = CStringGetTextDatum("not served");
			values[2] = CStringGetTextDatum(not_served_text());
			nulls[2] = false;
			nulls[3] = nulls[4] = nulls[5] = true;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}
