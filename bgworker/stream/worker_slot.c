/*-------------------------------------------------------------------------
 *
 * worker_slot.c
 *	  A sink worker's care of its replication slot, apart from streaming
 *	  it: dropping it (extension dropped, sink turned off), noticing it was
 *	  lost, saying what its creation waits for, and the retained-WAL
 *	  warning that says why WAL is kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "snapshot.h"
#include "storage/lmgr.h"
#include "stream.h"
#include "stream_slot.h"
#include "stream_worker.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"


/*
 * In a transaction: drop our slot if it exists and no walsender uses it;
 * true once gone.  Its origin and snapshot files go with it.
 */
static bool
drop_slot_in_xact(const char *why)
{
	StreamSlotInfo slot;
	char		name[64];

	if (stream_slot_read(stream_worker_slot(), &slot))
	{
		bool		dropped;

		if (slot.active_pid != 0)
			return false;		/* the walsender is still letting go */
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_execute_with_args("SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
							  "  FROM pg_catalog.pg_replication_slots "
							  " WHERE slot_name = $1 AND NOT active",
							  1, (Oid[]) {TEXTOID},
							  (Datum[]) {CStringGetTextDatum(stream_worker_slot())},
							  NULL, false, 0);
		dropped = SPI_processed == 1;
		SPI_finish();
		PopActiveSnapshot();
		if (!dropped)
			return false;
		ereport(LOG,
				(errmsg("ticket_ext: %s, replication slot \"%s\" of the %s sink removed",
						why, stream_worker_slot(), stream_worker_ops->name)));
	}
	snprintf(name, sizeof(name), "%s.slot", stream_worker_ops->name);
	state_file_remove(name);
	snapshot_discard(stream_worker_ops->name);
	return true;
}

/* Drop our slot (see drop_slot_in_xact), in a transaction of its own. */
bool
drop_own_slot(const char *why)
{
	bool		gone;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	gone = drop_slot_in_xact(why);
	CommitTransactionCommand();
	return gone;
}

/*
 * After DROP EXTENSION: drop our slot and (the first sink's worker) the
 * publication PostgreSQL 15 cannot tie to the extension.  Under a lock on
 * pg_extension that CREATE EXTENSION's insert conflicts with, and only if
 * the extension is still absent then: a CREATE EXTENSION that commits
 * meanwhile never has its new publication or slot dropped.
 */
void
drop_leftovers(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	LockRelationOid(ExtensionRelationId, ShareRowExclusiveLock);
	if (!OidIsValid(get_extension_oid("ticket_ext", true)))
	{
		(void) drop_slot_in_xact("extension dropped");
		if (stream_worker_sink == 0)
		{
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			SPI_execute("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = 'ticket_ext_events'",
						true, 1);
			if (SPI_processed == 1)
			{
				SPI_execute("DROP PUBLICATION ticket_ext_events", false, 0);
				ereport(LOG,
						(errmsg("ticket_ext: extension dropped, publication ticket_ext_events removed")));
			}
			SPI_finish();
			PopActiveSnapshot();
		}
	}
	CommitTransactionCommand();
}

/* Was the slot invalidated (max_slot_wal_keep_size)? */
bool
slot_lost(XLogRecPtr *at)
{
	StreamSlotInfo slot;

	if (!stream_slot_read(stream_worker_slot(), &slot) || slot.invalidated_at == InvalidXLogRecPtr)
		return false;
	*at = slot.invalidated_at;
	return true;
}

/* If the slot was invalidated, say so in stream_state: true if it was. */
bool
note_slot_lost(void)
{
	XLogRecPtr	lost_at;

	if (!slot_lost(&lost_at))
		return false;
	stream_status_set_state(stream_worker_sink, STREAM_STATE_SLOT_LOST,
							psprintf("slot \"%s\" was invalidated at %X/%X (max_slot_wal_keep_size): "
									 "events after its confirmed position are gone from WAL; "
									 "see README, \"When the slot is lost\"",
									 stream_worker_slot(), LSN_FORMAT_ARGS(lost_at)));
	return true;
}

/* While the slot is being created: say what it waits for (once a second). */
void
note_slot_wait(int walsender_pid)
{
	static TimestampTz noted = 0;
	char	   *pids = NULL;

	if (!TimestampDifferenceExceeds(noted, GetCurrentTimestamp(), 1000))
		return;
	noted = GetCurrentTimestamp();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT pg_catalog.string_agg(p::text, ', ') "
							  "  FROM pg_catalog.unnest(pg_catalog.pg_blocking_pids($1)) p",
							  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(walsender_pid)},
							  NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v != NULL)
			pids = MemoryContextStrdup(TopMemoryContext, v);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	stream_status_set_state(stream_worker_sink, STREAM_STATE_CREATING_SLOT,
							pids ? psprintf("slot \"%s\" waits for transactions of pids %s to end; "
											"ticket writes wait up to 10 s meanwhile",
											stream_worker_slot(), pids)
							: psprintf("creating slot \"%s\"", stream_worker_slot()));
	if (pids)
		pfree(pids);
}

/*
 * The oldest transaction with an xid open for more than 15 s, if any: its
 * pid and how long (s).  15 s: a slot's restart_lsn moves only at the
 * running-transactions records PostgreSQL writes that often, so a younger
 * lag is no long transaction's doing.
 */
static bool
oldest_long_transaction(int *pid, double *age)
{
	bool		found = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT pid, extract(epoch FROM now() - xact_start)::float8 "
					"  FROM pg_catalog.pg_stat_activity "
					" WHERE backend_xid IS NOT NULL AND xact_start < now() - interval '15 seconds' "
					" ORDER BY xact_start LIMIT 1", true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;

		*pid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		*age = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		found = true;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return found;
}

/*
 * WARNINGs when the slot holds more WAL than ticket_ext.stream_wal_warning,
 * one per cause, each with a LOG when it is back under: events the sink
 * has not acknowledged (past confirmed_flush), and WAL decoding must
 * restart from (restart_lsn behind confirmed_flush) because a long
 * transaction is open, which no sink can help.
 */
void
check_retained_wal(bool streaming)
{
	static bool warned_unacked = false;
	static bool warned_held = false;
	StreamSlotInfo slot;
	XLogRecPtr	insert = GetXLogInsertRecPtr();
	uint64		limit = (uint64) stream_wal_warning_mb * 1024 * 1024;
	uint64		unacked;
	uint64		held;
	bool		over;
	int			pid = 0;
	double		age = 0;

	if (!streaming && note_slot_lost())
		return;					/* e.g. closed for room when the slot was lost */
	if (!stream_slot_read(stream_worker_slot(), &slot) || slot.restart_lsn == InvalidXLogRecPtr ||
		slot.confirmed_flush == InvalidXLogRecPtr)
		return;
	unacked = insert > slot.confirmed_flush ? insert - slot.confirmed_flush : 0;
	held = slot.confirmed_flush > slot.restart_lsn ? slot.confirmed_flush - slot.restart_lsn : 0;

	over = unacked > limit;
	if (over && !warned_unacked)
		ereport(WARNING,
				(errmsg("ticket_ext: replication slot \"%s\" retains %lu MB of WAL",
						stream_worker_slot(), (unsigned long) ((insert - slot.restart_lsn) / (1024 * 1024))),
				 errdetail("%lu MB are events the %s sink has not acknowledged yet; they are kept until it does.",
						   (unsigned long) (unacked / (1024 * 1024)), stream_worker_ops->name),
				 errhint("Check ticket_ext.stream_status. max_slot_wal_keep_size bounds the WAL kept, at the cost of losing the slot.")));
	else if (!over && warned_unacked)
		ereport(LOG,
				(errmsg("ticket_ext: replication slot \"%s\": the WAL the %s sink has not acknowledged is back under %d MB",
						stream_worker_slot(), stream_worker_ops->name, stream_wal_warning_mb)));
	warned_unacked = over;

	over = held > limit && oldest_long_transaction(&pid, &age);
	if (over && !warned_held)
		ereport(WARNING,
				(errmsg("ticket_ext: replication slot \"%s\" retains %lu MB of WAL",
						stream_worker_slot(), (unsigned long) ((insert - slot.restart_lsn) / (1024 * 1024))),
				 errdetail("%lu MB are held by a long-running transaction (the oldest: pid %d, open %.0f s): "
						   "decoding restarts at the oldest transaction open when that WAL was written. "
						   "The %s sink has all but %lu MB.",
						   (unsigned long) (held / (1024 * 1024)), pid, age,
						   stream_worker_ops->name, (unsigned long) (unacked / (1024 * 1024))),
				 errhint("End old transactions (pg_stat_activity: xact_start, backend_xid).")));
	else if (!over && warned_held && held <= limit)
		ereport(LOG,
				(errmsg("ticket_ext: replication slot \"%s\": the WAL long transactions hold is back under %d MB",
						stream_worker_slot(), stream_wal_warning_mb)));
	if (!over && held <= limit)
		warned_held = false;
	else if (over)
		warned_held = true;
}
