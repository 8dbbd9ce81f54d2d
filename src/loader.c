/*-------------------------------------------------------------------------
 *
 * loader.c
 *	  Reading the truth from the tables and (re)building counters from it.
 *
 * A slot is loaded lazily on first use after server start or crash restart
 * (the expiry worker also preloads every item at its start).  Loading and
 * resync read the tables with the latest snapshot, not the caller's, so a
 * REPEATABLE READ caller cannot load stale numbers.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

static SPIPlanPtr truth_plan = NULL;

/*
 * capacity, paused, tickets taken (held + sold = not ended) and the
 * earliest expiry of a held hold, of one item
 */
#define TRUTH_SQL \
	"SELECT i.capacity, i.paused, " \
	"       (SELECT COALESCE(pg_catalog.sum(h.qty), 0)::pg_catalog.int8 " \
	"          FROM ticket_ext.holds h " \
	"         WHERE h.item_id OPERATOR(pg_catalog.=) i.item_id AND h.ended_at IS NULL), " \
	"       (SELECT pg_catalog.min(h.expires_at) FROM ticket_ext.holds h " \
	"         WHERE h.item_id OPERATOR(pg_catalog.=) i.item_id AND h.ended_at IS NULL " \
	"           AND h.status OPERATOR(pg_catalog.=) 'held') " \
	"  FROM ticket_ext.items i WHERE i.item_id OPERATOR(pg_catalog.=) $1"

/*
 * The truth about one item, read with the latest snapshot.  committed_only
 * hides the calling transaction's own changes (curcid 0): a counter must
 * start from what is committed, since this transaction's changes reach it
 * through their effects (xact.c), never through the load.
 */
TicketItemTruth
ticket_read_truth(int64 item_id, bool committed_only)
{
	TicketItemTruth truth = {0};
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	SPIPlanPtr	plan;
	Snapshot	snapshot;
	int			rc;

	ticket_spi_begin(&frame);
	plan = ticket_prepare(&truth_plan, TRUTH_SQL, 1, argtypes);
	values[0] = Int64GetDatum(item_id);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	if (committed_only)
		snapshot->curcid = FirstCommandId;
	rc = SPI_execute_snapshot(plan, values, NULL, snapshot,
							  InvalidSnapshot, true, false, 1);
	UnregisterSnapshot(snapshot);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ticket_ext: reading item " INT64_FORMAT " failed: %s",
			 item_id, SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		truth.found = true;
		truth.capacity = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		truth.paused = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		truth.taken = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		truth.next_expiry = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		if (isnull)
			truth.next_expiry = DT_NOEND;
	}
	ticket_spi_end(&frame);
	return truth;
}

/* Not committed: unknown, or created by this very transaction. */
static void
error_not_committed(int64 item_id)
{
	if (ticket_read_truth(item_id, false).found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("item " INT64_FORMAT " was created in this transaction", item_id),
				 errhint("Commit the transaction that created the item before selling it.")));
	ticket_error_unknown_item(item_id);
}

void
ticket_error_unknown_item(int64 item_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("item " INT64_FORMAT " does not exist", item_id),
			 errhint("Create it with ticket_ext.create_item().")));
}

/* Publish truth into a slot nobody else is changing (loading or frozen). */
void
ticket_slot_store(TicketSlot *slot, const TicketItemTruth *truth)
{
	pg_atomic_write_u64(&slot->capacity, (uint64) truth->capacity);
	pg_atomic_write_u64(&slot->avail, (uint64) (truth->capacity - truth->taken));
	pg_atomic_write_u32(&slot->paused, truth->paused ? 1 : 0);
	pg_atomic_write_u64(&slot->next_expiry, (uint64) truth->next_expiry);
	pg_write_barrier();
}

static void
load_slot(TicketSlot *slot, Oid items_relid)
{
	TicketItemTruth truth;

	ticket_xact_note_loading(slot);
	truth = ticket_read_truth(slot->item_id, true);
	if (!truth.found)
	{
		/* deleted behind our back, or not committed: leave it unloaded */
		pg_atomic_write_u32(&slot->state, SLOT_UNLOADED);
		ticket_xact_note_loaded();
		error_not_committed(slot->item_id);
	}
	ticket_slot_store(slot, &truth);
	slot->items_relid = items_relid;
	/* transactions still holding effects of an older load must not apply them */
	slot->generation++;
	pg_write_barrier();
	pg_atomic_write_u32(&slot->state, SLOT_READY);
	ticket_xact_note_loaded();
}

/*
 * The slot of an existing item with valid counters, loading it if needed.
 * Unknown items raise an error and use no shared memory.
 */
TicketSlot *
ticket_slot_ready(int64 item_id)
{
	Oid			relid;
	TicketSlot *slot;
	TimestampTz start = 0;

	ticket_require_shmem();
	relid = ticket_items_relid(false);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("ticket_ext keeps no counters during recovery"),
				 errhint("Run this on the primary server.")));

	slot = ticket_slot_find(MyDatabaseId, item_id);
	if (slot != NULL && pg_atomic_read_u32(&slot->state) == SLOT_READY)
	{
		pg_read_barrier();		/* relid and counters were written before state */
		if (slot->items_relid == relid)
			return slot;		/* fast path */
	}

	if (slot == NULL)
	{
		if (!ticket_read_truth(item_id, true).found)
			error_not_committed(item_id);
		slot = ticket_slot_find_or_create(MyDatabaseId, item_id);
	}

	for (;;)
	{
		uint32		state = pg_atomic_read_u32(&slot->state);

		pg_read_barrier();
		if (state == SLOT_READY && slot->items_relid == relid)
			return slot;

		/* unloaded, or loaded by a dropped installation of the extension */
		if (state == SLOT_UNLOADED || state == SLOT_READY)
		{
			if (pg_atomic_compare_exchange_u32(&slot->state, &state, SLOT_LOADING))
			{
				load_slot(slot, relid);
				return slot;
			}
			continue;
		}

		/* another backend is loading: wait for it */
		if (start == 0)
			start = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
											ticket_resync_timeout_ms))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("counters of item " INT64_FORMAT " are being loaded by another session",
							item_id),
					 errhint("Retry the statement.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Tickets left.  On a hot standby no counters are kept (replay would leave
 * them behind): the answer then comes from the replicated tables.
 */
int64
ticket_item_available(int64 item_id)
{
	if (RecoveryInProgress())
	{
		TicketItemTruth truth = ticket_read_truth(item_id, true);

		if (!truth.found)
			ticket_error_unknown_item(item_id);
		return Max(truth.capacity - truth.taken, 0);
	}
	return Max(counter_available(ticket_slot_ready(item_id)), 0);
}
