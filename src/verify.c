/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  Checking and repairing counters against the tables while sales go
 *	  on: verify, resync.
 *
 * Both take a consistent reading of one item (read_item): the counters,
 * the open transactions' effects on them (inflight.c) and a snapshot of
 * the tables, at a moment when nothing moved.  What the counter must be
 * then follows exactly, whatever is open.  Nothing waits for this: a
 * reading that caught something moving is simply taken again.
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
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(ticket_verify);
PG_FUNCTION_INFO_V1(ticket_resync);

/*
 * How long verify() keeps trying to get a consistent reading of one item,
 * and how long when a transaction that joined too many items to be
 * described has joined this one (it keeps its state until it ends).
 */
#define VERIFY_BUDGET_MS		500
#define VERIFY_UNACCOUNTED_MS	20

typedef struct ItemReading
{
	TicketSlot *slot;
	bool		consistent;		/* false: nothing below but the raw values */
	int64		capacity;		/* raw counter values */
	int64		avail;
	uint64		pause_word;
	uint64		open;			/* transactions open on the item */
	TicketItemTruth truth;		/* the tables */
	int64		want_capacity;	/* what the counter must be */
	int64		want_avail;
	bool		want_paused;
	bool		links_differ;	/* pools or holder limit in shared memory
								 * are not the items row's */
} ItemReading;

typedef enum ReadResult
{
	READ_OK,
	READ_MOVED,					/* something changed meanwhile: try again */
	READ_UNACCOUNTED			/* steady, but an open transaction joined too
								 * many items to describe this one */
} ReadResult;

static bool
links_differ(TicketSlot *slot, const TicketItemLinks *truth)
{
	TicketItemLinks links;

	ticket_links_read(slot, &links);
	return !ticket_links_equal(&links, truth);
}

/* One attempt at a consistent reading. */
static ReadResult
try_read_item(int64 item_id, ItemReading *r)
{
	uint32		incarnation;
	TicketSlot *slot = ticket_slot_ready(item_id, &incarnation);
	TicketInflightSum sum;
	TicketInflightAdjust adj = {0};
	uint64		gate;
	Snapshot	snapshot;
	bool		steady;
	bool		unaccounted;

	r->slot = slot;
	gate = counter_gate_word(slot);
	pg_memory_barrier();
	ticket_inflight_scan(slot, &sum);
	pg_read_barrier();
	r->capacity = counter_capacity(slot);
	r->avail = counter_available(slot);
	r->pause_word = counter_pause_word(slot);
	r->open = gate & GATE_COUNT_MASK;

	/* the tables as committed (our own changes reach counters as effects) */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	snapshot->curcid = FirstCommandId;

	pg_memory_barrier();
	steady = sum.stable &&
		counter_capacity(slot) == r->capacity &&
		counter_available(slot) == r->avail &&
		counter_pause_word(slot) == r->pause_word &&
		ticket_inflight_unchanged(&sum) &&
		counter_gate_word(slot) == gate &&
		ticket_slot_is(slot, incarnation);
	/* one open too many: an undescribable transaction, or one joining */
	if (steady && sum.nmatched != (int) r->open)
	{
		unaccounted = sum.overflow_seen;
		steady = false;
	}
	else
		unaccounted = false;
	if (steady)
	{
		adj = ticket_inflight_adjust(&sum, snapshot, r->pause_word);
		steady = adj.ok;
	}
	if (steady)
	{
		r->truth = ticket_read_truth_at(item_id, snapshot);
		r->want_capacity = r->truth.capacity + adj.capacity;
		r->want_avail = r->truth.capacity - r->truth.taken + adj.avail;
		r->want_paused = adj.pause_known ? adj.paused : r->truth.paused;
		r->links_differ = links_differ(slot, &r->truth.links);
		/* a set_pools/set_holder_limit committing: its links come next */
		if (r->links_differ && (gate & GATE_FROZEN))
			steady = false;
	}
	UnregisterSnapshot(snapshot);
	ticket_inflight_free(&sum);
	r->consistent = steady;
	return steady ? READ_OK : unaccounted ? READ_UNACCOUNTED : READ_MOVED;
}

/*
 * Consistent reading of an item, trying for up to budget_ms; a transaction
 * that cannot be accounted for is given up on after unaccounted_ms.
 */
static bool
read_item(int64 item_id, ItemReading *r, int budget_ms, int unaccounted_ms)
{
	TimestampTz start = GetCurrentTimestamp();
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		ReadResult	res = try_read_item(item_id, r);

		if (res == READ_OK)
			return true;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   res == READ_UNACCOUNTED ? unaccounted_ms : budget_ms))
			return false;
		/* spin a little first: a change lasts microseconds */
		if (attempt >= 20)
		{
			ticket_wait_tick();
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* One item (argument 0) or all of them (NULL). */
static int64 *
items_of_call(FunctionCallInfo fcinfo, uint64 *count)
{
	return ticket_item_ids(PG_ARGISNULL(0),
						   PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), count);
}

/*
 * ticket_ext.verify(item_id DEFAULT NULL): counters against the tables.
 * counter_capacity and counter_taken are the counters without what open
 * transactions did to them, so when ok they equal capacity and
 * table_taken; ok is NULL when no consistent reading could be had.
 */
Datum
ticket_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64	   *ids;
	uint64		n;
	uint64		i;

	ticket_check_entry();
	InitMaterializedSRF(fcinfo, 0);
	ids = items_of_call(fcinfo, &n);
	for (i = 0; i < n; i++)
	{
		ItemReading r;
		Datum		values[8];
		bool		nulls[8] = {0};

		values[0] = Int64GetDatum(ids[i]);
		values[5] = Int64GetDatum((int64) 0);
		if (read_item(ids[i], &r, VERIFY_BUDGET_MS, VERIFY_UNACCOUNTED_MS))
		{
			int64		counter_cap = r.capacity - (r.want_capacity - r.truth.capacity);
			int64		counter_avail = r.avail -
				(r.want_avail - (r.truth.capacity - r.truth.taken));

			values[1] = Int64GetDatum(r.truth.capacity);
			values[2] = Int64GetDatum(counter_cap);
			values[3] = Int64GetDatum(counter_cap - counter_avail);
			values[4] = Int64GetDatum(r.truth.taken);
			values[6] = BoolGetDatum(r.truth.paused);
			values[7] = BoolGetDatum(r.truth.found && !r.links_differ &&
									 r.capacity == r.want_capacity &&
									 r.avail == r.want_avail &&
									 PAUSE_PAUSED(r.pause_word) == r.want_paused);
		}
		else
		{
			/* raw counters; the tables' side and ok unknown */
			values[2] = Int64GetDatum(r.capacity);
			values[3] = Int64GetDatum(r.capacity - r.avail);
			nulls[1] = nulls[4] = nulls[6] = nulls[7] = true;
		}
		values[5] = Int64GetDatum((int64) r.open);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/*
 * Bring one slot to what the tables say, while sales go on: from a
 * consistent reading, add the difference (deltas commute with whatever
 * happened since) and set paused if nobody changed it since.  Returns
 * whether anything was corrected; *before is counter_taken as read.
 */
static bool
resync_item(int64 item_id, int64 *before, int64 *table_taken)
{
	ItemReading r;
	int64		fix_capacity;
	int64		fix_avail;
	bool		corrected;
	TicketSlot *joined;

	/*
	 * One resync of an item at a time (two would both correct from the same
	 * reading), and joined (with no effect): the slot cannot be reclaimed
	 * under us.
	 */
	ticket_lock_key(TICKET_LOCK_RESYNC, (uint64) item_id);
	joined = ticket_join(item_id);
	if (!read_item(item_id, &r, ticket_resync_timeout_ms, ticket_resync_timeout_ms))
	{
		char	   *pids = ticket_inflight_pids(r.slot);

		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not resync item " INT64_FORMAT ": no consistent reading within %d ms",
						item_id, ticket_resync_timeout_ms),
				 errdetail("Backends with transactions open on it: %s.", pids),
				 errhint("Retry, or raise ticket_ext.resync_timeout.")));
	}
	if (!r.truth.found)
		ticket_error_unknown_item(item_id);

	fix_capacity = r.want_capacity - r.capacity;
	fix_avail = r.want_avail - r.avail;
	*before = (r.capacity - (r.want_capacity - r.truth.capacity)) -
		(r.avail - (r.want_avail - (r.truth.capacity - r.truth.taken)));
	*table_taken = r.truth.taken;
	corrected = fix_capacity != 0 || fix_avail != 0;
	/* bracketed like our own effects: a verify reading now sees it move */
	ticket_inflight_change_begin();

	/*
	 * Two changes: capacity (which moves avail with it) and the rest of
	 * avail.  The smaller move of avail goes first, so between them the
	 * counter never offers more than the tables have (test/t/016).
	 */
	if (fix_avail - fix_capacity < fix_capacity)
	{
		counter_add(r.slot, fix_avail - fix_capacity);
		counter_add_capacity(r.slot, fix_capacity);
	}
	else
	{
		counter_add_capacity(r.slot, fix_capacity);
		counter_add(r.slot, fix_avail - fix_capacity);
	}
	if (PAUSE_PAUSED(r.pause_word) != r.want_paused &&
		counter_pause_correct(r.slot, r.pause_word, r.want_paused))
		corrected = true;
	ticket_inflight_change_end();
	if (r.truth.next_expiry < (TimestampTz) pg_atomic_read_u64(&r.slot->next_expiry))
		counter_note_expiry(r.slot, r.truth.next_expiry);
	/* done: let the next resync of the item in, and leave it */
	ticket_unlock_key(TICKET_LOCK_RESYNC, (uint64) item_id);
	ticket_leave_unused(joined);
	return corrected;
}

/* ticket_ext.resync(item_id DEFAULT NULL) */
Datum
ticket_resync(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64	   *ids;
	uint64		n;
	uint64		i;

	ticket_check_entry();
	if (ticket_xact_joined_any())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot resync in a transaction that changed ticket_ext counters"),
				 errhint("Run ticket_ext.resync() in its own transaction.")));
	InitMaterializedSRF(fcinfo, 0);
	ids = items_of_call(fcinfo, &n);
	for (i = 0; i < n; i++)
	{
		int64		before;
		int64		table_taken;
		bool		corrected = resync_item(ids[i], &before, &table_taken);
		Datum		values[4];
		bool		nulls[4] = {0};

		values[0] = Int64GetDatum(ids[i]);
		values[1] = Int64GetDatum(before);
		values[2] = Int64GetDatum(table_taken);
		values[3] = BoolGetDatum(corrected);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}
