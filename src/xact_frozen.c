/*-------------------------------------------------------------------------
 *
 * xact_frozen.c
 *	  Slots frozen until the end of the transaction, for the admin calls
 *	  that change what a reservation reads from an item's links
 *	  (set_pools, set_holder_limit).
 *
 * A reservation reads the links of the items it has joined without a
 * lock, so links may change only while nobody is joined: the call freezes
 * the item's gate, waits for the transactions open on it to end, and keeps
 * it frozen until its own transaction ends.  At commit (after the catalog
 * change is visible) the new links are stored, then the gate thaws; at
 * abort it just thaws.  Sales of that item wait meanwhile, as for a
 * reload: these calls belong in short transactions of their own.
 *
 * The end-of-transaction part runs in xact.c's callbacks and must not
 * fail: the arrays are grown before anything is frozen or pending.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

typedef struct PendingLinks
{
	TicketSlot *slot;
	SubTransactionId subid;
	TicketItemLinks links;
} PendingLinks;

typedef struct FrozenSlot
{
	TicketSlot *slot;
	SubTransactionId subid;		/* thawed if this one rolls back */
} FrozenSlot;

static FrozenSlot *frozen = NULL;
static int	nfrozen = 0;
static int	frozen_cap = 0;

static PendingLinks *pending = NULL;
static int	npending = 0;
static int	pending_cap = 0;

static void
grow(void **array, int *cap, int used, Size elem)
{
	if (*array == NULL)
	{
		*cap = 8;
		*array = MemoryContextAlloc(TopMemoryContext, *cap * elem);
	}
	else if (used + 1 >= *cap)
	{
		*cap *= 2;
		*array = repalloc(*array, *cap * elem);
	}
}

bool
ticket_frozen_by_me(TicketSlot *slot)
{
	int			i;

	for (i = 0; i < nfrozen; i++)
		if (frozen[i].slot == slot)
			return true;
	return false;
}

bool
ticket_frozen_any(void)
{
	return nfrozen > 0;
}

/*
 * Freeze the item's slot (incarnation: as looked up) until this
 * transaction ends, once nobody else is open on it
 * (ticket_ext.resync_timeout at most, then an error naming the backends).
 * False when the slot was reclaimed meanwhile: look it up again.  The
 * caller holds the item's links lock, so two admins of one item do not
 * wait for each other here; it takes the items row lock only after this
 * (pause and set_capacity join first, then lock the row).
 */
bool
ticket_freeze_until_end(TicketSlot *slot, uint32 incarnation, int64 item_id)
{
	TimestampTz start = GetCurrentTimestamp();

	if (ticket_frozen_by_me(slot))
		return true;
	/* it would wait for its own joins: the callers refuse that first */
	Assert(!ticket_xact_joined_any());
	grow((void **) &frozen, &frozen_cap, nfrozen, sizeof(FrozenSlot));

	/* frozen by someone else only for a moment (a reload, a reclaimer) */
	while (!counter_freeze(slot))
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), ticket_resync_timeout_ms))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("counters of item " INT64_FORMAT " are being reloaded", item_id),
					 errhint("Retry.")));
		ticket_wait_tick();
	}
	/* reclaimed and maybe reused for another item before we froze it */
	if (!ticket_slot_is(slot, incarnation))
	{
		counter_thaw(slot);
		return false;
	}
	frozen[nfrozen].slot = slot;	/* from here on the end of the xact thaws it */
	frozen[nfrozen].subid = GetCurrentSubTransactionId();
	nfrozen++;

	while (counter_gate_open_count(slot) > 0)
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), ticket_resync_timeout_ms))
		{
			char	   *pids = ticket_inflight_pids(slot);

			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not change item " INT64_FORMAT ": transactions stayed open on it for %d ms",
							item_id, ticket_resync_timeout_ms),
					 errdetail("Backends: %s.", pids),
					 errhint("Retry when they have ended, or raise ticket_ext.resync_timeout.")));
		}
		ticket_wait_tick();
	}
	return true;
}

/* The links a frozen slot gets if this (sub)transaction commits. */
void
ticket_links_at_commit(TicketSlot *slot, const TicketItemLinks *links)
{
	Assert(ticket_frozen_by_me(slot));
	grow((void **) &pending, &pending_cap, npending, sizeof(PendingLinks));
	pending[npending].slot = slot;
	pending[npending].subid = GetCurrentSubTransactionId();
	pending[npending].links = *links;
	npending++;
}

/* End of transaction (xact.c): store what committed, thaw.  Cannot fail. */
void
ticket_frozen_end(bool commit)
{
	int			i;

	if (commit)
		for (i = 0; i < npending; i++)	/* in call order: the last one wins */
			ticket_links_store(pending[i].slot, &pending[i].links);
	for (i = 0; i < nfrozen; i++)
		counter_thaw(frozen[i].slot);
	nfrozen = 0;
	npending = 0;
}

/*
 * Rollback to savepoint: its calls' links are gone, and the slots it froze
 * thaw (a failed set_pools in a savepoint must not hold the item's sales
 * until the whole transaction ends).
 */
void
ticket_frozen_abort_sub(SubTransactionId subid)
{
	int			i;
	int			keep = 0;

	for (i = 0; i < npending; i++)
		if (pending[i].subid != subid)
			pending[keep++] = pending[i];
	npending = keep;
	keep = 0;
	for (i = 0; i < nfrozen; i++)
	{
		if (frozen[i].subid == subid)
			counter_thaw(frozen[i].slot);
		else
			frozen[keep++] = frozen[i];
	}
	nfrozen = keep;
}

void
ticket_frozen_commit_sub(SubTransactionId subid, SubTransactionId parent)
{
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].subid == subid)
			pending[i].subid = parent;
	for (i = 0; i < nfrozen; i++)
		if (frozen[i].subid == subid)
			frozen[i].subid = parent;
}
