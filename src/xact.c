/*-------------------------------------------------------------------------
 *
 * xact.c
 *	  What the current transaction did to shared counters, and the
 *	  (sub)transaction callbacks that finish or undo it.
 *
 * The rule that keeps counters from ever promising more than the tables
 * allow: anything that lowers availability happens at once (and is undone
 * on abort or rollback to savepoint); anything that raises it (release,
 * expiry, capacity raise, resume) waits for COMMIT, which PostgreSQL
 * signals after the commit is durable and visible.  Those callbacks may
 * run after another session has already seen our end and acted: deltas
 * commute, and pause writes are versioned (counter.c), so the result does
 * not depend on that order.
 *
 * A transaction "joins" every item it touches (counter.c gate) before its
 * first effect and leaves after applying its end-of-transaction effects;
 * inflight.c publishes what it did meanwhile, for verify() and resync().
 *
 * Abort callbacks run inside AbortTransaction and must not fail: they use
 * only atomics and memory that was allocated before the effect happened.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

typedef struct TicketEffect
{
	TicketSlot *slot;
	TicketEffectKind kind;
	int64		amount;
	SubTransactionId subid;
	TimestampTz expires_at;		/* EFFECT_TAKEN: the new hold's expiry */
	uint32		version;		/* EFFECT_PAUSED/RESUMED: versions V .. V + 2 */
	bool		row_was_paused; /* EFFECT_PAUSED/RESUMED: items row before */
} TicketEffect;

static TicketSlot **joined = NULL;
static uint32 *joined_pause_version = NULL;	/* last pause call's V, or 0 */
static int	njoined = 0;
static int	joined_cap = 0;

static TicketEffect *effects = NULL;
static int	neffects = 0;
static int	effects_cap = 0;

/* This transaction took a lock of ticket_ext's (ticket_lock_key). */
static bool holds_locks = false;

/* A slot this backend froze (reload) or is loading: undone on abort. */
static TicketSlot *frozen_slot = NULL;
static TicketSlot *loading_slot = NULL;
static TicketSlotState loading_from;	/* the state to go back to */

/* Room for n more joins and effects: after this nothing fails. */
static void
ensure_room_for(int n)
{
	if (joined == NULL)
	{
		joined_cap = 16;
		effects_cap = 16;
		joined = MemoryContextAlloc(TopMemoryContext,
									joined_cap * sizeof(TicketSlot *));
		joined_pause_version = MemoryContextAlloc(TopMemoryContext,
												  joined_cap * sizeof(uint32));
		effects = MemoryContextAlloc(TopMemoryContext,
									 effects_cap * sizeof(TicketEffect));
	}
	while (njoined + n >= joined_cap)
	{
		joined_cap *= 2;
		joined = repalloc(joined, joined_cap * sizeof(TicketSlot *));
		joined_pause_version = repalloc(joined_pause_version, joined_cap * sizeof(uint32));
	}
	while (neffects + n >= effects_cap)
	{
		effects_cap *= 2;
		effects = repalloc(effects, effects_cap * sizeof(TicketEffect));
	}
}

static void
ensure_room(void)
{
	ensure_room_for(1);
}

bool
ticket_xact_joined(TicketSlot *slot)
{
	int			i;

	for (i = njoined - 1; i >= 0; i--)
		if (joined[i] == slot)
			return true;
	return false;
}

bool
ticket_xact_joined_any(void)
{
	return njoined > 0;
}

/*
 * A prepared transaction keeps its locks until COMMIT PREPARED, which may
 * never come: a holder's lock kept so would stop that holder's sales, an
 * idempotency key's its retries, an item's links lock its admins.  (A
 * prepared confirm is allowed: it keeps only its hold's row, as any
 * prepared UPDATE would.)
 */
void
ticket_xact_note_locks(void)
{
	holds_locks = true;
}

/* items_relid, read after the state that says it is set (weak-memory CPUs) */
static Oid
slot_relid_after_state(TicketSlot *slot)
{
	pg_read_barrier();
	return slot->items_relid;
}

/*
 * The item's slot, joined by this transaction: counted as open on the
 * item, so it cannot be reclaimed or reloaded under us.  Waits while the
 * gate is frozen (a reload, bounded by ticket_ext.resync_timeout), and
 * looks the slot up again if it was reclaimed meanwhile.
 */
TicketSlot *
ticket_join(int64 item_id)
{
	TimestampTz start = 0;

	for (;;)
	{
		uint32		incarnation;
		TicketSlot *slot = ticket_slot_ready(item_id, &incarnation);
		Oid			relid = ticket_items_relid(false);
		bool		entered;

		if (ticket_xact_joined(slot))
			return slot;
		if (ticket_frozen_by_me(slot))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the pools or holder limit of item " INT64_FORMAT " were changed in this transaction",
							item_id),
					 errhint("Commit it first: the item's sales wait for that commit.")));
		ensure_room();
		while (!(entered = counter_gate_enter(slot)) && ticket_slot_is(slot, incarnation))
		{
			if (start == 0)
				start = GetCurrentTimestamp();
			else if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
												ticket_resync_timeout_ms + 1000))
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("counters of item " INT64_FORMAT " are being reloaded or reconfigured", item_id),
						 errdetail("A reload, or an open transaction that changed its pools or holder limit (or a pool's), holds its sales."),
						 errhint("Retry the statement.")));
			ticket_wait_tick();
		}
		if (!entered)
			continue;			/* reclaimed while we waited: look again */
		/* still the same, loaded slot? (reload or reclaim before we got in) */
		pg_read_barrier();
		if (ticket_slot_is(slot, incarnation) &&
			SLOT_STATE(pg_atomic_read_u32(&slot->state)) == SLOT_READY &&
			slot_relid_after_state(slot) == relid)
		{
			ticket_inflight_join(slot);
			joined_pause_version[njoined] = 0;
			joined[njoined++] = slot;
			return slot;
		}
		counter_gate_leave(slot);
	}
}

/*
 * Leave slot before the end of the transaction, if it is the one joined
 * last and nothing was done to it (resync of many items: each is joined
 * only while it is corrected).
 */
void
ticket_leave_unused(TicketSlot *slot)
{
	int			i;

	if (njoined == 0 || joined[njoined - 1] != slot)
		return;
	for (i = 0; i < neffects; i++)
		if (effects[i].slot == slot)
			return;
	ticket_inflight_unjoin_last();
	njoined--;
	counter_gate_leave(slot);
}

static TicketEffect *
add_effect(TicketSlot *slot, TicketEffectKind kind, int64 amount)
{
	TicketEffect *e = &effects[neffects++];

	Assert(ticket_xact_joined(slot));
	Assert(neffects <= effects_cap);
	memset(e, 0, sizeof(*e));
	e->slot = slot;
	e->kind = kind;
	e->amount = amount;
	e->subid = GetCurrentSubTransactionId();
	return e;
}

/*
 * Take qty from every slot (joined: an item and its pools), all or none.
 * In ascending slot order, so two reservations contending for the same
 * counters meet on the first one they share; a failed take gives back
 * what was taken before it (a reader may meanwhile see one counter short:
 * a brief false "sold out", never more than is there).  The first slot's
 * effect carries the hold's expiry; the others are pools.
 */
bool
ticket_take_all(TicketSlot **slots, int nslots, int64 qty, TimestampTz expires_at)
{
	int			order[1 + TICKET_MAX_POOLS];
	int			i;
	int			j;

	Assert(nslots >= 1 && nslots <= 1 + TICKET_MAX_POOLS);
	ensure_room_for(nslots);
	for (i = 0; i < nslots; i++)
	{
		/* insertion sort by slot index */
		for (j = i; j > 0 && ticket_slot_index(slots[order[j - 1]]) > ticket_slot_index(slots[i]); j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	ticket_inflight_change_begin();
	for (i = 0; i < nslots; i++)
		if (!counter_try_take(slots[order[i]], qty))
			break;
	if (i < nslots)
	{
		while (--i >= 0)
			counter_add(slots[order[i]], qty);
		ticket_inflight_change_end();
		return false;
	}
	for (i = 0; i < nslots; i++)
	{
		ticket_inflight_add(slots[i], -qty, 0, 0, 0);
		add_effect(slots[i], EFFECT_TAKEN, qty)->expires_at =
			i == 0 ? expires_at : DT_NOEND;
	}
	ticket_inflight_change_end();
	return true;
}

/* Record a capacity change or a return of tickets (at commit). */
void
ticket_record_effect(TicketSlot *slot, TicketEffectKind kind, int64 amount)
{
	Assert(kind == EFFECT_RETURN_AT_COMMIT || kind == EFFECT_CAPACITY_LOWERED ||
		   kind == EFFECT_CAPACITY_RAISED);
	ensure_room();
	ticket_inflight_change_begin();
	if (kind == EFFECT_CAPACITY_LOWERED)
	{
		counter_add_capacity(slot, -amount);
		ticket_inflight_add(slot, -amount, -amount, 0, 0);
	}
	else if (kind == EFFECT_RETURN_AT_COMMIT)
		ticket_inflight_add(slot, 0, 0, amount, 0);
	else
		ticket_inflight_add(slot, 0, 0, amount, amount);
	add_effect(slot, kind, amount);
	ticket_inflight_change_end();
}

static inline bool
is_pause_call(TicketEffect *e)
{
	return e->kind == EFFECT_PAUSED || e->kind == EFFECT_RESUMED;
}

/*
 * Publish (between change_begin and change_end) the paused flag our pause
 * calls on slot leave on the counter: paused if one is in force, else the
 * row's value before the first.
 */
static void
publish_pause(TicketSlot *slot)
{
	TicketEffect *first = NULL;
	uint32		version = 0;
	bool		in_force = false;
	int			i;

	/* our highest version, rolled-back calls included (see inflight.c) */
	for (i = 0; i < njoined; i++)
		if (joined[i] == slot)
			version = joined_pause_version[i];

	for (i = 0; i < neffects; i++)
	{
		TicketEffect *e = &effects[i];

		if (e->slot != slot || !is_pause_call(e))
			continue;
		if (first == NULL)
			first = e;
		in_force |= e->kind == EFFECT_PAUSED;
	}
	ticket_inflight_set_pause(slot, first != NULL ? version : 0,
							  first != NULL && (in_force || first->row_was_paused));
}

/*
 * pause (applied now) or resume (applied at commit), called with the items
 * row locked; row_was_paused is that row's value before this call.
 */
void
ticket_record_pause(TicketSlot *slot, bool pause, bool row_was_paused)
{
	TicketEffect *e;
	int			i;

	ensure_room();
	ticket_inflight_change_begin();
	e = add_effect(slot, pause ? EFFECT_PAUSED : EFFECT_RESUMED, 0);
	e->version = counter_pause_reserve(slot);
	e->row_was_paused = row_was_paused;
	for (i = 0; i < njoined; i++)
		if (joined[i] == slot)
			joined_pause_version[i] = e->version;
	if (pause)
		counter_pause_write(slot, e->version, true);
	publish_pause(slot);
	ticket_inflight_change_end();
}

/*
 * Final pause writes: at commit the last call's value, at abort the row's
 * value before the first call, with the third version of the last call
 * (rolled-back ones included), which sorts after all of ours.  A slot
 * whose calls were all rolled back was restored by the rollback.
 */
static void
finish_pauses(bool commit)
{
	int			i;
	int			j;

	for (i = 0; i < njoined; i++)
	{
		TicketEffect *first = NULL;
		TicketEffect *last = NULL;

		if (joined_pause_version[i] == 0)
			continue;
		for (j = 0; j < neffects; j++)
			if (effects[j].slot == joined[i] && is_pause_call(&effects[j]))
			{
				if (first == NULL)
					first = &effects[j];
				last = &effects[j];
			}
		if (first != NULL)
			counter_pause_write(joined[i], joined_pause_version[i] + 2,
								commit ? last->kind == EFFECT_PAUSED : first->row_was_paused);
	}
}

static void
apply_at_commit(TicketEffect *e, TimestampTz now)
{
	switch (e->kind)
	{
		case EFFECT_RETURN_AT_COMMIT:
			counter_add(e->slot, e->amount);
			break;
		case EFFECT_CAPACITY_RAISED:
			counter_add_capacity(e->slot, e->amount);
			break;
		case EFFECT_TAKEN:

			/*
			 * A hold already due when it becomes visible: the expiry worker
			 * may have raised the item's hint past it while it was not, so
			 * lower the hint again (expiry.c explains the protocol).
			 */
			if (e->expires_at <= now)
				counter_note_expiry(e->slot, e->expires_at);
			break;
		case EFFECT_CAPACITY_LOWERED:
		case EFFECT_PAUSED:
		case EFFECT_RESUMED:
			break;
	}
}

/* Undo an immediate effect (abort); deferred ones are simply dropped. */
static void
undo_effect(TicketEffect *e)
{
	switch (e->kind)
	{
		case EFFECT_TAKEN:
			counter_add(e->slot, e->amount);
			ticket_inflight_add(e->slot, e->amount, 0, 0, 0);
			break;
		case EFFECT_CAPACITY_LOWERED:
			counter_add_capacity(e->slot, e->amount);
			ticket_inflight_add(e->slot, e->amount, e->amount, 0, 0);
			break;
		case EFFECT_RETURN_AT_COMMIT:
			ticket_inflight_add(e->slot, 0, 0, -e->amount, 0);
			break;
		case EFFECT_CAPACITY_RAISED:
			ticket_inflight_add(e->slot, 0, 0, -e->amount, -e->amount);
			break;
		case EFFECT_PAUSED:
		case EFFECT_RESUMED:
			break;
	}
}

static void
leave_all(void)
{
	int			i;

	for (i = 0; i < njoined; i++)
		counter_gate_leave(joined[i]);
	njoined = 0;
	neffects = 0;
	/* give back the memory of an unusually large transaction */
	if (effects_cap > 1024 || joined_cap > 1024)
	{
		pfree(effects);
		pfree(joined);
		pfree(joined_pause_version);
		effects = NULL;
		joined = NULL;
		joined_pause_version = NULL;
		effects_cap = joined_cap = 0;
	}
}

/* reload/load bookkeeping, so an error or FATAL cannot leave them stuck */
void
ticket_xact_note_frozen(TicketSlot *slot)
{
	frozen_slot = slot;
}

void
ticket_xact_note_thawed(TicketSlot *slot)
{
	Assert(frozen_slot == slot);
	counter_thaw(slot);
	frozen_slot = NULL;
}

/*
 * An error while loading puts the slot back where it was: UNLOADED, or
 * READY with the dropped installation's counters (a reload), so the next
 * user tries the reload again, draining first, instead of a plain load.
 */
void
ticket_xact_note_loading(TicketSlot *slot, TicketSlotState from)
{
	loading_slot = slot;
	loading_from = from;
}

void
ticket_xact_note_loaded(void)
{
	loading_slot = NULL;
}

static void
release_private_states(void)
{
	if (loading_slot != NULL)
	{
		uint32		word = pg_atomic_read_u32(&loading_slot->state);

		pg_atomic_write_u32(&loading_slot->state,
							(word & ~((1u << SLOT_STATE_BITS) - 1)) | loading_from);
		loading_slot = NULL;
	}
	if (frozen_slot != NULL)
	{
		counter_thaw(frozen_slot);
		frozen_slot = NULL;
	}
}

static void
end_of_xact(bool commit)
{
	TimestampTz now = commit ? GetCurrentTimestamp() : 0;
	int			i;

	if (njoined > 0 || neffects > 0)
	{
		ticket_inflight_change_begin();
		if (commit)
		{
			for (i = 0; i < neffects; i++)
				apply_at_commit(&effects[i], now);
		}
		else
		{
			for (i = neffects - 1; i >= 0; i--)
				undo_effect(&effects[i]);
		}
		finish_pauses(commit);
		ticket_inflight_reset();
		ticket_inflight_change_end();
	}
	leave_all();
	release_private_states();
	ticket_frozen_end(commit);
	holds_locks = false;
}

static void
ticket_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (neffects > 0 || ticket_frozen_any())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed ticket_ext counters"),
						 errdetail("Reservations, releases, expiries and capacity changes must commit or abort in the session that made them."),
						 errhint("Call ticket_ext functions outside two-phase transactions.")));
			if (holds_locks)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that holds ticket_ext locks"),
						 errdetail("A reservation of a limited item or with an idempotency key, or a change of pools or limits, locks what other sessions wait for until the transaction ends."),
						 errhint("Call ticket_ext functions outside two-phase transactions.")));
			break;
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			if (njoined > 0)
				ticket_inflight_committing();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			end_of_xact(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:	/* PRE_PREPARE refused any effect */
			end_of_xact(false);
			break;
	}
}

/*
 * The pause write a rollback to savepoint owes slot, if the rolled-back
 * subtransaction paused or resumed it: with the last undone call's second
 * version, the flag the remaining calls imply (or the row's value before
 * the first undone one).
 */
static bool
pause_after_rollback(TicketSlot *slot, SubTransactionId subid,
					 uint32 *version, bool *target)
{
	TicketEffect *first_undone = NULL;
	TicketEffect *first_left = NULL;
	bool		left_pause = false;
	int			i;

	for (i = 0; i < neffects; i++)
	{
		TicketEffect *e = &effects[i];

		if (e->slot != slot || !is_pause_call(e))
			continue;
		if (e->subid == subid)
		{
			if (first_undone == NULL)
				first_undone = e;
			*version = e->version;	/* calls come in version order */
		}
		else
		{
			if (first_left == NULL)
				first_left = e;
			left_pause |= e->kind == EFFECT_PAUSED;
		}
	}
	if (first_undone == NULL)
		return false;
	*target = first_left != NULL ? (first_left->row_was_paused || left_pause) :
		first_undone->row_was_paused;
	return true;
}

/* Rollback to savepoint: undo the subtransaction's effects. */
static void
abort_subxact(SubTransactionId mySubid)
{
	int			i;
	int			keep = 0;

	if (njoined == 0)
	{
		release_private_states();
		return;
	}
	ticket_inflight_change_begin();
	for (i = neffects - 1; i >= 0; i--)
		if (effects[i].subid == mySubid)
			undo_effect(&effects[i]);
	for (i = 0; i < njoined; i++)
	{
		uint32		version;
		bool		target;

		if (pause_after_rollback(joined[i], mySubid, &version, &target))
			counter_pause_write(joined[i], version + 1, target);
	}
	for (i = 0; i < neffects; i++)
		if (effects[i].subid != mySubid)
			effects[keep++] = effects[i];
	neffects = keep;
	for (i = 0; i < njoined; i++)
		publish_pause(joined[i]);
	ticket_inflight_change_end();
	release_private_states();
}

static void
ticket_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			i;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			if (njoined > 0 || frozen_slot != NULL || loading_slot != NULL)
				abort_subxact(mySubid);
			ticket_frozen_abort_sub(mySubid);
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			ticket_frozen_commit_sub(mySubid, parentSubid);
			for (i = 0; i < neffects; i++)
				if (effects[i].subid == mySubid)
					effects[i].subid = parentSubid;
			break;
		case SUBXACT_EVENT_START_SUB:
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			break;
	}
}

void
ticket_xact_init(void)
{
	RegisterXactCallback(ticket_xact_callback, NULL);
	RegisterSubXactCallback(ticket_subxact_callback, NULL);
}
