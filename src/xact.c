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
 * signals after the commit is durable and visible.
 *
 * A transaction "joins" every item it touches (counter.c gate) before its
 * first effect and leaves after applying its end-of-transaction effects,
 * which is what lets resync() wait for a quiet moment.
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
	uint32		generation;		/* the slot's load it applies to */
} TicketEffect;

static TicketSlot **joined = NULL;
static int	njoined = 0;
static int	joined_cap = 0;

static TicketEffect *effects = NULL;
static int	neffects = 0;
static int	effects_cap = 0;

/* A slot this backend froze (resync) or is loading: undone on abort. */
static TicketSlot *frozen_slot = NULL;
static TicketSlot *loading_slot = NULL;

static void
ensure_room(void)
{
	if (joined == NULL)
	{
		joined_cap = 16;
		effects_cap = 16;
		joined = MemoryContextAlloc(TopMemoryContext,
									joined_cap * sizeof(TicketSlot *));
		effects = MemoryContextAlloc(TopMemoryContext,
									 effects_cap * sizeof(TicketEffect));
	}
	if (njoined + 1 >= joined_cap)
	{
		joined_cap *= 2;
		joined = repalloc(joined, joined_cap * sizeof(TicketSlot *));
	}
	if (neffects + 1 >= effects_cap)
	{
		effects_cap *= 2;
		effects = repalloc(effects, effects_cap * sizeof(TicketEffect));
	}
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
 * Count this transaction as open on the item, waiting while a resync has
 * the item frozen (resync is bounded by ticket_ext.resync_timeout).  Also
 * guarantees room for one more effect, so recording it cannot fail.
 */
void
ticket_join_item(TicketSlot *slot)
{
	TimestampTz start = 0;

	ensure_room();
	if (ticket_xact_joined(slot))
		return;

	while (!counter_gate_enter(slot))
	{
		if (start == 0)
			start = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
											2 * ticket_resync_timeout_ms + 1000))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("item " INT64_FORMAT " is being resynchronized", slot->item_id),
					 errhint("Retry the statement.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	joined[njoined++] = slot;
}

/* Record an effect; apply it now if it lowers availability. */
void
ticket_record_effect(TicketSlot *slot, TicketEffectKind kind, int64 amount)
{
	TicketEffect *e;

	Assert(ticket_xact_joined(slot));
	Assert(neffects < effects_cap);

	switch (kind)
	{
		case EFFECT_TAKEN:
			/* the caller already took the tickets with counter_try_take */
			break;
		case EFFECT_CAPACITY_LOWERED:
			counter_add_capacity(slot, -amount);
			break;
		case EFFECT_PAUSED:
			pg_atomic_write_u32(&slot->paused, 1);
			break;
		case EFFECT_RETURN_AT_COMMIT:
		case EFFECT_CAPACITY_RAISED:
		case EFFECT_RESUMED:
			break;
	}
	e = &effects[neffects++];
	e->slot = slot;
	e->kind = kind;
	e->amount = amount;
	e->subid = GetCurrentSubTransactionId();
	e->generation = slot->generation;
}

/* Undo the effect (of this statement) that was recorded last. */
void
ticket_undo_last_take(TicketSlot *slot, int64 qty)
{
	Assert(neffects > 0);
	Assert(effects[neffects - 1].slot == slot &&
		   effects[neffects - 1].kind == EFFECT_TAKEN);
	neffects--;
	counter_add(slot, qty);
}

/*
 * A slot reloaded since the effect was recorded (DROP/CREATE EXTENSION
 * while this transaction waited) counts from new tables: leave it alone.
 */
static inline bool
effect_current(TicketEffect *e)
{
	return e->slot->generation == e->generation;
}

/* Undo an immediate effect (abort); deferred ones are simply dropped. */
static void
undo_effect(TicketEffect *e)
{
	if (!effect_current(e))
		return;
	switch (e->kind)
	{
		case EFFECT_TAKEN:
			counter_add(e->slot, e->amount);
			break;
		case EFFECT_CAPACITY_LOWERED:
			counter_add_capacity(e->slot, e->amount);
			break;
		case EFFECT_PAUSED:
			pg_atomic_write_u32(&e->slot->paused, (uint32) e->amount);
			break;
		case EFFECT_RETURN_AT_COMMIT:
		case EFFECT_CAPACITY_RAISED:
		case EFFECT_RESUMED:
			break;
	}
}

/* Was the item paused again later in this transaction? */
static bool
paused_later(int i)
{
	int			j;

	for (j = i + 1; j < neffects; j++)
		if (effects[j].slot == effects[i].slot && effects[j].kind == EFFECT_PAUSED)
			return true;
	return false;
}

/* Apply the deferred effect effects[i] after commit. */
static void
apply_at_commit(int i)
{
	TicketEffect *e = &effects[i];

	if (!effect_current(e))
		return;
	switch (e->kind)
	{
		case EFFECT_RETURN_AT_COMMIT:
			counter_add(e->slot, e->amount);
			break;
		case EFFECT_CAPACITY_RAISED:
			counter_add_capacity(e->slot, e->amount);
			break;
		case EFFECT_RESUMED:
			/* the last pause/resume of the transaction wins */
			if (!paused_later(i))
				pg_atomic_write_u32(&e->slot->paused, 0);
			break;
		case EFFECT_TAKEN:
		case EFFECT_CAPACITY_LOWERED:
		case EFFECT_PAUSED:
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
		effects = NULL;
		joined = NULL;
		effects_cap = joined_cap = 0;
	}
}

/* resync()/load bookkeeping, so an error or FATAL cannot leave them stuck */
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

void
ticket_xact_note_loading(TicketSlot *slot)
{
	loading_slot = slot;
}

void
ticket_xact_note_loaded(void)
{
	loading_slot = NULL;
}

static void
release_private_states(void)
{
	if (frozen_slot != NULL)
	{
		counter_thaw(frozen_slot);
		frozen_slot = NULL;
	}
	if (loading_slot != NULL)
	{
		pg_atomic_write_u32(&loading_slot->state, SLOT_UNLOADED);
		loading_slot = NULL;
	}
}

static void
ticket_xact_callback(XactEvent event, void *arg)
{
	int			i;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (neffects > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed ticket_ext counters"),
						 errdetail("Reservations, releases, expiries and capacity changes must commit or abort in the session that made them."),
						 errhint("Call ticket_ext functions outside two-phase transactions.")));
			break;
		case XACT_EVENT_COMMIT:
			for (i = 0; i < neffects; i++)
				apply_at_commit(i);
			leave_all();
			release_private_states();
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
			/* parallel workers cannot call the functions that record effects */
			Assert(neffects == 0 && njoined == 0);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			for (i = neffects - 1; i >= 0; i--)
				undo_effect(&effects[i]);
			leave_all();
			release_private_states();
			break;
		case XACT_EVENT_PREPARE:
			/* PRE_PREPARE refused any effect; only joins are left */
			leave_all();
			release_private_states();
			break;
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
}

static void
ticket_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			i;
	int			keep;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			/* undo this subtransaction's effects (children were folded in) */
			for (i = neffects - 1; i >= 0; i--)
				if (effects[i].subid == mySubid)
					undo_effect(&effects[i]);
			keep = 0;
			for (i = 0; i < neffects; i++)
				if (effects[i].subid != mySubid)
					effects[keep++] = effects[i];
			neffects = keep;
			release_private_states();
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
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
