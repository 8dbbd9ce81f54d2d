/*-------------------------------------------------------------------------
 *
 * expiry.c
 *	  Returning holds whose time is up to the pool.
 *
 * Each slot carries next_expiry, a lower bound on when its item's earliest
 * held hold expires: reservations lower it, the expiry worker raises it
 * after a sweep.  So the worker only visits items with something due, and
 * each visit is an index range scan on holds_item_idx, never a table scan.
 *
 * Raising the hint must not skip a hold that our snapshot cannot see yet.
 * If a transaction is open on the item when we start, the hint rises no
 * further than "now": its holds expire later, unless the transaction stays
 * open past their expiry; such a hold, already due when its transaction
 * commits, lowers the hint again right after the commit (xact.c).  And if
 * any expiry note happened while we looked (the slot's expiry_epoch moved:
 * a new hold, or such a commit), the hint goes back to what it was before
 * our update, which was a valid lower bound for all of them.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(ticket_expire_holds);

static SPIPlanPtr expire_plan = NULL;
static SPIPlanPtr next_expiry_plan = NULL;

/*
 * Expire at most $2 overdue holds of item $1 whose expiry is at or after
 * $3, the slot's hint (a lower bound, so the index range scan skips the
 * older sold holds).  SKIP LOCKED: a hold that a confirm or release is
 * working on is left for the next round.
 */
#define EXPIRE_SQL \
	"UPDATE ticket_ext.holds h SET status = 'expired', ended_at = pg_catalog.now() " \
	"  FROM (SELECT hold_id FROM ticket_ext.holds " \
	"         WHERE item_id OPERATOR(pg_catalog.=) $1 AND ended_at IS NULL " \
	"           AND expires_at OPERATOR(pg_catalog.>=) $3 " \
	"           AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() " \
	"           AND status OPERATOR(pg_catalog.=) 'held' " \
	"         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) due " \
	" WHERE h.hold_id OPERATOR(pg_catalog.=) due.hold_id " \
	"   AND h.status OPERATOR(pg_catalog.=) 'held' " \
	"RETURNING h.qty"

/* the earliest expiry of a held hold of item $1, at or after $2 */
#define NEXT_EXPIRY_SQL \
	"SELECT pg_catalog.min(expires_at) FROM ticket_ext.holds " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 AND ended_at IS NULL " \
	"   AND expires_at OPERATOR(pg_catalog.>=) $2 " \
	"   AND status OPERATOR(pg_catalog.=) 'held'"

/* Items of this database that may have a hold due now. */
int64 *
ticket_due_items(uint64 *count)
{
	Oid			relid = ticket_items_relid(false);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	uint32		cursor = 0;
	uint64		n = 0;
	uint64		cap = 64;
	int64	   *ids = palloc(sizeof(int64) * cap);
	TicketSlot *slot;
	Oid			dboid;
	int64		item_id;

	ticket_require_shmem();
	while ((slot = ticket_slot_next(&cursor, &dboid, &item_id)) != NULL)
	{
		if (dboid != MyDatabaseId ||
			SLOT_STATE(pg_atomic_read_u32(&slot->state)) != SLOT_READY)
			continue;
		pg_read_barrier();		/* items_relid is written before the state */
		if (slot->items_relid != relid ||
			(int64) pg_atomic_read_u64(&slot->next_expiry) > now)
			continue;
		if (n == cap)
		{
			cap *= 2;
			ids = repalloc(ids, sizeof(int64) * cap);
		}
		ids[n++] = item_id;
	}
	*count = n;
	return ids;
}

/*
 * Expire up to batch due holds of one item in the current transaction;
 * their tickets return to the pool when it commits.  Returns how many.
 */
int64
ticket_expire_item(int64 item_id, int batch)
{
	TicketSlot *slot;
	TicketSpiFrame frame;
	Oid			argtypes[3] = {INT8OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[3];
	int64		qty = 0;
	uint64		n;
	uint64		i;
	bool		isnull;

	ticket_stream_gate();
	/*
	 * An item or pool frozen by an open change of pools or limits: next
	 * round, instead of holding up every other item's expiry meanwhile.
	 */
	{
		bool		limited;
		bool		frozen;

		ticket_peek_draw(item_id, &limited, &frozen);
		if (frozen)
			return 0;
	}
	/* joined first: the slot cannot be reclaimed while we use its hint */
	slot = ticket_join(item_id);
	values[0] = Int64GetDatum(item_id);
	values[1] = Int32GetDatum(batch);
	values[2] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&slot->next_expiry));
	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&expire_plan, EXPIRE_SQL, 3, argtypes),
					 values, NULL, false, 0);
	n = SPI_processed;
	for (i = 0; i < n; i++)
		qty += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
										   SPI_tuptable->tupdesc, 1, &isnull));
	ticket_spi_end(&frame);

	if (n > 0)
		ticket_return_draw(item_id, qty);
	return (int64) n;
}

/*
 * Raise the item's hint to its earliest held expiry.  Run in a transaction
 * of its own, after the expiring one committed.
 */
void
ticket_refresh_expiry_hint(int64 item_id)
{
	TicketSlot *slot = ticket_join(item_id);	/* not reclaimed under us */
	TimestampTz seen;
	TimestampTz next;
	TimestampTz now = GetCurrentTimestamp();
	uint64		open;
	uint32		epoch;
	TicketSpiFrame frame;
	Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;

	/* read hint, epoch and open count before our snapshot exists */
	/* in this order (as they are written in the other order), on any CPU */
	seen = (TimestampTz) pg_atomic_read_u64(&slot->next_expiry);
	pg_read_barrier();
	epoch = pg_atomic_read_u32(&slot->expiry_epoch);
	pg_read_barrier();
	open = counter_gate_open_count(slot) - 1;	/* but us */
	pg_memory_barrier();

	values[0] = Int64GetDatum(item_id);
	values[1] = TimestampTzGetDatum(seen);
	ticket_spi_begin(&frame);
	SPI_execute_snapshot(ticket_prepare(&next_expiry_plan, NEXT_EXPIRY_SQL, 2, argtypes),
						 values, NULL, GetLatestSnapshot(), InvalidSnapshot,
						 true, false, 1);
	next = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		next = DT_NOEND;
	ticket_spi_end(&frame);

	if (open > 0 && next > now)
		next = now;				/* an open transaction may add an earlier hold */
	if (next != seen && counter_set_next_expiry(slot, seen, next) &&
		pg_atomic_read_u32(&slot->expiry_epoch) != epoch)
		counter_note_expiry(slot, Min(seen, now));	/* a note slipped in: undo */
}

/*
 * ticket_ext.expire_holds(batch DEFAULT NULL): expire due holds of every
 * item now, in the caller's transaction (the worker does this by itself).
 */
Datum
ticket_expire_holds(PG_FUNCTION_ARGS)
{
	int32		batch = PG_ARGISNULL(0) ? ticket_expiry_batch : PG_GETARG_INT32(0);
	int64	   *ids;
	uint64		n;
	uint64		i;
	int64		total = 0;

	if (batch <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be positive, not %d", batch)));
	ticket_check_entry();
	ticket_check_writable("expire holds");
	ids = ticket_due_items(&n);
	for (i = 0; i < n; i++)
		total += ticket_expire_item(ids[i], batch);
	PG_RETURN_INT64(total);
}
