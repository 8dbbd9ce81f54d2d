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
#include "ticket_errcodes.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

static SPIPlanPtr truth_plan = NULL;
static SPIPlanPtr truth_plan_10 = NULL;

/*
 * capacity, paused, tickets taken (held + sold = not ended: the item's own
 * holds and, for a pool, those of every item drawing on it), the earliest
 * expiry of a held hold of its own, its pools and its holder limit
 */
#define TRUTH_SQL \
	"SELECT i.capacity, i.paused, " \
	"       (SELECT COALESCE(pg_catalog.sum(h.qty), 0)::pg_catalog.int8 " \
	"          FROM ticket_ext.holds h " \
	"         WHERE h.item_id OPERATOR(pg_catalog.=) i.item_id AND h.ended_at IS NULL) " \
	"       OPERATOR(pg_catalog.+) " \
	"       (SELECT COALESCE(pg_catalog.sum(h.qty), 0)::pg_catalog.int8 " \
	"          FROM ticket_ext.items m JOIN ticket_ext.holds h " \
	"            ON h.item_id OPERATOR(pg_catalog.=) m.item_id AND h.ended_at IS NULL " \
	"         WHERE m.pool_ids OPERATOR(pg_catalog.@>) ARRAY[i.item_id]), " \
	"       (SELECT pg_catalog.min(h.expires_at) FROM ticket_ext.holds h " \
	"         WHERE h.item_id OPERATOR(pg_catalog.=) i.item_id AND h.ended_at IS NULL " \
	"           AND h.status OPERATOR(pg_catalog.=) 'held'), " \
	"       i.pool_ids, COALESCE(i.holder_limit, 0) " \
	"  FROM ticket_ext.items i WHERE i.item_id OPERATOR(pg_catalog.=) $1"

/* the same for a database still at 1.0: no pools, no limits */
#define TRUTH_SQL_10 \
	"SELECT i.capacity, i.paused, " \
	"       (SELECT COALESCE(pg_catalog.sum(h.qty), 0)::pg_catalog.int8 " \
	"          FROM ticket_ext.holds h " \
	"         WHERE h.item_id OPERATOR(pg_catalog.=) i.item_id AND h.ended_at IS NULL), " \
	"       (SELECT pg_catalog.min(h.expires_at) FROM ticket_ext.holds h " \
	"         WHERE h.item_id OPERATOR(pg_catalog.=) i.item_id AND h.ended_at IS NULL " \
	"           AND h.status OPERATOR(pg_catalog.=) 'held'), " \
	"       '{}'::pg_catalog.int8[], 0 " \
	"  FROM ticket_ext.items i WHERE i.item_id OPERATOR(pg_catalog.=) $1"

/* An items row's pool_ids (bigint[]) into links. */
void
ticket_links_from_array(Datum array, TicketItemLinks *links)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	if (n > TICKET_MAX_POOLS)
		elog(ERROR, "ticket_ext: an item has %d pools (at most %d)", n, TICKET_MAX_POOLS);
	links->npools = n;
	for (i = 0; i < n; i++)
		links->pool_ids[i] = DatumGetInt64(elems[i]);
}

/* The truth about one item as seen by snapshot. */
TicketItemTruth
ticket_read_truth_at(int64 item_id, Snapshot snapshot)
{
	TicketItemTruth truth = {0};
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	SPIPlanPtr	plan;
	int			rc;

	ticket_spi_begin(&frame);
	if (ticket_schema_has_pools())
		plan = ticket_prepare(&truth_plan, TRUTH_SQL, 1, argtypes);
	else
		plan = ticket_prepare(&truth_plan_10, TRUTH_SQL_10, 1, argtypes);
	values[0] = Int64GetDatum(item_id);
	rc = SPI_execute_snapshot(plan, values, NULL, snapshot,
							  InvalidSnapshot, true, false, 1);
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
		ticket_links_from_array(SPI_getbinval(tup, desc, 5, &isnull), &truth.links);
		truth.links.holder_limit = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	}
	ticket_spi_end(&frame);
	return truth;
}

/*
 * The truth about one item, read with the latest snapshot.  committed_only
 * hides the calling transaction's own changes (curcid 0): a counter must
 * start from what is committed, since this transaction's changes reach it
 * through their effects (xact.c), never through the load.
 */
TicketItemTruth
ticket_read_truth(int64 item_id, bool committed_only)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TicketItemTruth truth;

	if (committed_only)
		snapshot->curcid = FirstCommandId;
	truth = ticket_read_truth_at(item_id, snapshot);
	UnregisterSnapshot(snapshot);
	return truth;
}

/* Not committed: unknown, or created by this very transaction. */
static void
error_not_committed(int64 item_id)
{
	if (ticket_read_truth(item_id, false).found)
		ereport(ERROR,
				(errcode(ERRCODE_TICKET_ITEM_NOT_COMMITTED),
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

static void
set_state(TicketSlot *slot, TicketSlotState state)
{
	uint32		word = pg_atomic_read_u32(&slot->state);

	pg_write_barrier();			/* counters and relid before the state */
	pg_atomic_write_u32(&slot->state,
						(word & ~((1u << SLOT_STATE_BITS) - 1)) | state);
}

/* Publish truth into a slot nobody else is changing (we are loading it). */
static void
store_truth(TicketSlot *slot, const TicketItemTruth *truth, Oid items_relid)
{
	pg_atomic_write_u64(&slot->capacity, (uint64) truth->capacity);
	pg_atomic_write_u64(&slot->avail, (uint64) (truth->capacity - truth->taken));
	counter_pause_reset(slot, truth->paused);
	pg_atomic_write_u64(&slot->next_expiry, (uint64) truth->next_expiry);
	ticket_links_store(slot, &truth->links);
	slot->items_relid = items_relid;
	set_state(slot, SLOT_READY);
}

/* Load an UNLOADED slot (now LOADING, nobody joined) from the tables. */
static void
load_slot(TicketSlot *slot, Oid items_relid)
{
	TicketItemTruth truth;

	truth = ticket_read_truth(slot->item_id, true);
	if (!truth.found)
	{
		/* deleted behind our back, or not committed: leave it unloaded */
		set_state(slot, SLOT_UNLOADED);
		ticket_xact_note_loaded();
		error_not_committed(slot->item_id);
	}
	store_truth(slot, &truth, items_relid);
	ticket_xact_note_loaded();
}

/*
 * Reload a slot that counted the item of another installation (DROP and
 * CREATE EXTENSION): freeze its gate and wait until the transactions still
 * open on it have ended, so no effect of theirs can land on the new
 * counters.  They belong to the dropped installation, and DROP EXTENSION
 * waited for every one holding a lock on its tables, so this is short;
 * after ticket_ext.resync_timeout the slot is left as it was, with an
 * error naming them.
 */
static void
reload_slot(TicketSlot *slot, Oid items_relid)
{
	TimestampTz start = GetCurrentTimestamp();

	/* we would wait for ourselves */
	if (ticket_xact_joined(slot))
	{
		set_state(slot, SLOT_READY);
		ticket_xact_note_loaded();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("item " INT64_FORMAT " was used in this transaction before the extension was reinstalled",
						slot->item_id),
				 errhint("End this transaction, then retry.")));
	}
	while (!counter_freeze(slot))
	{
		/* a reclaimer's momentary freeze: it gives up on a LOADING slot */
		ticket_wait_tick();
	}
	ticket_xact_note_frozen(slot);
	while (counter_gate_open_count(slot) > 0)
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   ticket_resync_timeout_ms))
		{
			char	   *pids = ticket_inflight_pids(slot);
			uint64		open = counter_gate_open_count(slot);

			set_state(slot, SLOT_READY);
			ticket_xact_note_thawed(slot);
			ticket_xact_note_loaded();
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg_plural("could not load the counters of item " INT64_FORMAT
								   ": " UINT64_FORMAT " transaction of the dropped installation is still open on it",
								   "could not load the counters of item " INT64_FORMAT
								   ": " UINT64_FORMAT " transactions of the dropped installation are still open on them",
								   open, slot->item_id, open),
					 errdetail("Backends: %s.", pids),
					 errhint("End those transactions (pg_terminate_backend), then retry.")));
		}
		ticket_wait_tick();
	}
	load_slot(slot, items_relid);
	ticket_xact_note_thawed(slot);
}

/*
 * Before an item is loaded, its pools are: a loaded item can then always
 * give back to them (release, expiry), also when shared memory is too full
 * for more (the item then fails to load instead).  Pools draw on no pool,
 * so this goes one level deep.
 */
static void
load_pools_first(int64 item_id)
{
	static int	depth = 0;
	TicketItemTruth truth;
	int			i;

	if (depth > 0)
		return;
	truth = ticket_read_truth(item_id, true);
	depth++;
	PG_TRY();
	{
		for (i = 0; i < truth.links.npools; i++)
		{
			uint32		incarnation;

			(void) ticket_slot_ready(truth.links.pool_ids[i], &incarnation);
		}
	}
	PG_FINALLY();
	{
		depth--;
	}
	PG_END_TRY();
}

/*
 * The slot of an existing item with valid counters, loading it if needed;
 * *incarnation identifies it (ticket_slot_is).  Unknown items raise an
 * error and use no shared memory.
 */
TicketSlot *
ticket_slot_ready(int64 item_id, uint32 *incarnation)
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

	slot = ticket_slot_find(MyDatabaseId, item_id, incarnation);
	if (slot != NULL &&
		SLOT_STATE(pg_atomic_read_u32(&slot->state)) == SLOT_READY)
	{
		pg_read_barrier();		/* relid and counters were written before state */
		if (slot->items_relid == relid)
			return slot;		/* fast path */
	}

	/*
	 * Before loading, be sure which installation is current: a session that
	 * processed no invalidation since DROP/CREATE EXTENSION still has the
	 * old table's OID cached, and must not reload over the new one.
	 */
	AcceptInvalidationMessages();
	relid = ticket_items_relid(false);
	load_pools_first(item_id);

	for (;;)
	{
		uint32		word;

		if (slot == NULL || !ticket_slot_is(slot, *incarnation))
		{
			slot = ticket_slot_find(MyDatabaseId, item_id, incarnation);
			if (slot == NULL)
			{
				if (!ticket_read_truth(item_id, true).found)
					error_not_committed(item_id);
				slot = ticket_slot_find_or_create(MyDatabaseId, item_id, incarnation);
			}
		}
		word = pg_atomic_read_u32(&slot->state);
		pg_read_barrier();
		if (SLOT_INCARNATION(word) != *incarnation || SLOT_STATE(word) == SLOT_DEAD)
			continue;			/* reclaimed meanwhile */
		if (SLOT_STATE(word) == SLOT_READY && slot->items_relid == relid)
			return slot;

		/* unloaded, or loaded by a dropped installation of the extension */
		if (SLOT_STATE(word) == SLOT_UNLOADED || SLOT_STATE(word) == SLOT_READY)
		{
			uint32		loading = (word & ~((1u << SLOT_STATE_BITS) - 1)) | SLOT_LOADING;
			bool		reload = SLOT_STATE(word) == SLOT_READY;

			if (pg_atomic_compare_exchange_u32(&slot->state, &word, loading))
			{
				ticket_xact_note_loading(slot, reload ? SLOT_READY : SLOT_UNLOADED);
				if (reload)
					reload_slot(slot, relid);
				else
					load_slot(slot, relid);
				return slot;
			}
			continue;
		}

		/* another backend is loading: wait for it */
		if (start == 0)
			start = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
											ticket_resync_timeout_ms + 1000))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("counters of item " INT64_FORMAT " are being loaded by another session",
							item_id),
					 errhint("Retry the statement.")));
		ticket_wait_tick();
	}
}
