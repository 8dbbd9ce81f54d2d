/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *	  Checking and repairing counters against the tables (verify, resync)
 *	  and expiring holds whose time is up.
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
PG_FUNCTION_INFO_V1(ticket_expire_holds);

static SPIPlanPtr list_items_plan = NULL;
static SPIPlanPtr expire_plan = NULL;

#define LIST_ITEMS_SQL \
	"SELECT item_id FROM ticket_ext.items " \
	" WHERE $1 IS NULL OR item_id OPERATOR(pg_catalog.=) $1 ORDER BY item_id"

/*
 * Expire at most $1 overdue holds.  SKIP LOCKED: a hold that a confirm or
 * release is working on is left for the next round.
 */
#define EXPIRE_SQL \
	"UPDATE ticket_ext.holds h SET status = 'expired', ended_at = pg_catalog.now() " \
	"  FROM (SELECT hold_id FROM ticket_ext.holds " \
	"         WHERE status OPERATOR(pg_catalog.=) 'held' " \
	"           AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() " \
	"         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) due " \
	" WHERE h.hold_id OPERATOR(pg_catalog.=) due.hold_id " \
	"   AND h.status OPERATOR(pg_catalog.=) 'held' " \
	"RETURNING h.item_id, h.qty"

/* Item ids to work on: one, or all (NULL), as a palloc'd array. */
static int64 *
list_items(FunctionCallInfo fcinfo, int *count)
{
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	char		nulls[1];
	int64	   *ids;
	bool		isnull;
	uint64		i;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	nulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';

	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&list_items_plan, LIST_ITEMS_SQL, 1, argtypes),
					 values, nulls, true, 0);
	if (!PG_ARGISNULL(0) && SPI_processed == 0)
		ticket_error_unknown_item(PG_GETARG_INT64(0));
	ids = MemoryContextAlloc(caller, sizeof(int64) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	*count = (int) SPI_processed;
	ticket_spi_end(&frame);
	return ids;
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
	int			n;
	int			i;

	ticket_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	ids = list_items(fcinfo, &n);
	for (i = 0; i < n; i++)
	{
		TicketSlot *slot = ticket_slot_ready(ids[i]);
		TicketItemTruth truth = ticket_read_truth(ids[i]);
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
	pg_atomic_write_u32(&slot->loader_pid, MyProcPid);

	wait_for_drain(slot);
	before = counter_capacity(slot) - counter_available(slot);
	*truth = ticket_read_truth(slot->item_id);
	if (truth->found)
		ticket_slot_store(slot, truth);

	pg_atomic_write_u32(&slot->loader_pid, 0);
	ticket_xact_note_thawed(slot);
	return before;
}

/* ticket_ext.resync(item_id DEFAULT NULL) */
Datum
ticket_resync(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64	   *ids;
	int			n;
	int			i;

	ticket_require_shmem();
	if (ticket_xact_joined_any())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot resync in a transaction that changed ticket_ext counters"),
				 errhint("Run ticket_ext.resync() in its own transaction.")));
	InitMaterializedSRF(fcinfo, 0);
	ids = list_items(fcinfo, &n);
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

/*
 * Expire up to batch overdue holds in the current transaction; their
 * tickets return to the pool when it commits.  Returns holds expired.
 */
int64
ticket_expire_batch(int batch)
{
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(batch)};
	int64	   *items;
	int32	   *qtys;
	uint64		n;
	uint64		i;
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&expire_plan, EXPIRE_SQL, 1, argtypes),
					 values, NULL, false, 0);
	n = SPI_processed;
	items = MemoryContextAlloc(caller, sizeof(int64) * (n + 1));
	qtys = MemoryContextAlloc(caller, sizeof(int32) * (n + 1));
	for (i = 0; i < n; i++)
	{
		items[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc, 1, &isnull));
		qtys[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
											  SPI_tuptable->tupdesc, 2, &isnull));
	}
	ticket_spi_end(&frame);

	for (i = 0; i < n; i++)
	{
		TicketSlot *slot = ticket_slot_ready(items[i]);

		ticket_join_item(slot);
		ticket_record_effect(slot, EFFECT_RETURN_AT_COMMIT, qtys[i]);
	}
	return (int64) n;
}

/* ticket_ext.expire_holds(batch DEFAULT 1000): what the worker runs. */
Datum
ticket_expire_holds(PG_FUNCTION_ARGS)
{
	int32		batch = PG_ARGISNULL(0) ? ticket_expiry_batch : PG_GETARG_INT32(0);

	if (batch <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be positive, not %d", batch)));
	ticket_require_shmem();
	ticket_check_writable("expire holds");
	PG_RETURN_INT64(ticket_expire_batch(batch));
}

/* Load the counters of every item in this database; returns how many. */
int64
ticket_preload_items(void)
{
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {0};
	char		nulls[1] = {'n'};
	int64	   *ids;
	uint64		n;
	uint64		i;
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	ticket_require_shmem();
	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&list_items_plan, LIST_ITEMS_SQL, 1, argtypes),
					 values, nulls, true, 0);
	n = SPI_processed;
	ids = MemoryContextAlloc(caller, sizeof(int64) * (n + 1));
	for (i = 0; i < n; i++)
		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	ticket_spi_end(&frame);
	for (i = 0; i < n; i++)
		(void) ticket_slot_ready(ids[i]);
	return (int64) n;
}
