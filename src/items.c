/*-------------------------------------------------------------------------
 *
 * items.c
 *	  Walking the items of the current database: one id or all of them,
 *	  and loading every item's counters (done by the worker at start).
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "catalog/pg_type.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "utils/resowner.h"

static SPIPlanPtr list_items_plan = NULL;

#define LIST_ITEMS_SQL \
	"SELECT item_id FROM ticket_ext.items " \
	" WHERE $1 IS NULL OR item_id OPERATOR(pg_catalog.=) $1 ORDER BY item_id"

/*
 * Item ids, in order, palloc'd in the caller's memory context: all of
 * them, or just item_id (an error if it does not exist).
 */
int64 *
ticket_item_ids(bool all, int64 item_id, uint64 *count)
{
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(item_id)};
	char		nulls[1] = {all ? 'n' : ' '};
	int64	   *ids;
	bool		isnull;
	uint64		i;
	MemoryContext caller = CurrentMemoryContext;

	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&list_items_plan, LIST_ITEMS_SQL, 1, argtypes),
					 values, nulls, true, 0);
	if (!all && SPI_processed == 0)
		ticket_error_unknown_item(item_id);
	ids = MemoryContextAlloc(caller, sizeof(int64) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	*count = SPI_processed;
	ticket_spi_end(&frame);
	return ids;
}

/*
 * Load one item in a subtransaction of its own: one that cannot be loaded
 * now (a reinstall still draining, say) must not keep the others from it.
 */
static void
load_one(int64 item_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	uint32		incarnation;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		(void) ticket_slot_ready(item_id, &incarnation);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(LOG,
				(errmsg("ticket_ext: item " INT64_FORMAT " not loaded: %s", item_id, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

/*
 * Load the counters of every item in this database, as far as the slot
 * table has room (items beyond it load on first use, if room appears);
 * returns how many were loaded.  The expiry worker calls it at its start
 * and now and then (an item only expires holds while its slot is loaded).
 */
int64
ticket_preload_items(void)
{
	static bool warned = false;
	uint64		n;
	uint64		i;
	int64	   *ids;

	ticket_require_shmem();
	ids = ticket_item_ids(true, 0, &n);
	for (i = 0; i < n; i++)
	{
		uint32		incarnation;

		if (ticket_slot_find(MyDatabaseId, ids[i], &incarnation) == NULL &&
			ticket_slots_full() && ticket_reclaim_dead_slots() == 0)
		{
			if (!warned)
				ereport(WARNING,
						(errmsg("ticket_ext: only " UINT64_FORMAT " of " UINT64_FORMAT
								" items fit in shared memory", i, n),
						 errhint("Raise ticket_ext.max_items and restart the server.")));
			warned = true;
			break;
		}
		load_one(ids[i]);
	}
	pfree(ids);
	return (int64) i;
}
