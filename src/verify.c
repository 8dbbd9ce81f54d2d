/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  Checking and repairing counters against the tables: verify, resync.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(ticket_verify);
PG_FUNCTION_INFO_V1(ticket_resync);

/* One item (argument 0) or all of them (NULL). */
static int64 *
items_of_call(FunctionCallInfo fcinfo, uint64 *count)
{
	return ticket_item_ids(PG_ARGISNULL(0),
						   PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), count);
}

/*
 * ticket_ext.verify(item_id DEFAULT NULL): counters against the tables.
 * Exact when no transaction is changing the item (in_flight = 0).
 */
Datum
ticket_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64	   *ids;
	uint64		n;
	uint64		i;

	ticket_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	ids = items_of_call(fcinfo, &n);
	for (i = 0; i < n; i++)
	{
		TicketSlot *slot = ticket_slot_ready(ids[i]);
		TicketItemTruth truth = ticket_read_truth(ids[i], false);
		int64		counter_cap = counter_capacity(slot);
		int64		counter_taken = counter_cap - counter_available(slot);
		bool		counter_paused = pg_atomic_read_u32(&slot->paused) != 0;
		Datum		values[8];
		bool		nulls[8] = {0};

		values[0] = Int64GetDatum(ids[i]);
		values[1] = Int64GetDatum(truth.capacity);
		values[2] = Int64GetDatum(counter_cap);
		values[3] = Int64GetDatum(counter_taken);
		values[4] = Int64GetDatum(truth.taken);
		values[5] = Int64GetDatum((int64) counter_gate_open_count(slot));
		values[6] = BoolGetDatum(truth.paused);
		values[7] = BoolGetDatum(truth.found &&
								 counter_cap == truth.capacity &&
								 counter_taken == truth.taken &&
								 counter_paused == truth.paused);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/* Wait until no transaction is open on the frozen slot, or time out. */
static void
wait_for_drain(TicketSlot *slot)
{
	TimestampTz start = GetCurrentTimestamp();

	while (counter_gate_open_count(slot) > 0)
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   ticket_resync_timeout_ms))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not resync item " INT64_FORMAT ": " UINT64_FORMAT
							" transactions still open on it after %d ms",
							slot->item_id, counter_gate_open_count(slot),
							ticket_resync_timeout_ms),
					 errhint("Find long transactions in pg_stat_activity, or raise ticket_ext.resync_timeout.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Rebuild one slot from the tables while sales go on: freeze the gate
 * (new transactions wait briefly), let open transactions finish, count
 * with a fresh snapshot, store, thaw.  Returns the old counter_taken.
 */
static int64
resync_slot(TicketSlot *slot, TicketItemTruth *truth)
{
	int64		before;
	TimestampTz start = GetCurrentTimestamp();

	while (!counter_freeze(slot))
	{
		/* another resync of this item is running */
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   ticket_resync_timeout_ms))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("item " INT64_FORMAT " is being resynchronized by another session",
							slot->item_id)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ticket_xact_note_frozen(slot);

	wait_for_drain(slot);
	before = counter_capacity(slot) - counter_available(slot);
	*truth = ticket_read_truth(slot->item_id, true);
	if (truth->found)
		ticket_slot_store(slot, truth);

	ticket_xact_note_thawed(slot);
	return before;
}

/* ticket_ext.resync(item_id DEFAULT NULL) */
Datum
ticket_resync(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64	   *ids;
	uint64		n;
	uint64		i;

	ticket_require_shmem();
	if (ticket_xact_joined_any())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot resync in a transaction that changed ticket_ext counters"),
				 errhint("Run ticket_ext.resync() in its own transaction.")));
	InitMaterializedSRF(fcinfo, 0);
	ids = items_of_call(fcinfo, &n);
	for (i = 0; i < n; i++)
	{
		TicketSlot *slot = ticket_slot_ready(ids[i]);
		TicketItemTruth truth;
		int64		before = resync_slot(slot, &truth);
		Datum		values[4];
		bool		nulls[4] = {0};

		values[0] = Int64GetDatum(ids[i]);
		values[1] = Int64GetDatum(before);
		values[2] = Int64GetDatum(truth.taken);
		values[3] = BoolGetDatum(before != truth.taken);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}


