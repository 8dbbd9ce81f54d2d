/*-------------------------------------------------------------------------
 *
 * holder_limit.c
 *	  Per-customer limits: one holder's held and sold qty on a limited
 *	  item (on a pool: over every item drawing on it), checked at each
 *	  reservation.
 *
 * The number of holders has no bound (50,000 users in the service this
 * replaces, millions in a real on-sale), so nothing per holder lives in
 * shared memory: the check counts the holder's active holds in the table,
 * in the latest snapshot, under a transaction lock on the holder.  That
 * lock serializes one holder's own concurrent reservations (the case a
 * limit exists for: one customer in many tabs) and nothing else, so
 * different buyers never wait for each other.  Held to the end of the
 * transaction, it makes a second call of the same holder count after the
 * first one committed or aborted; releases and expiries only lower the
 * count, so they need not take it.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"
#include "ticket_errcodes.h"

#include "access/xact.h"
#include "common/hashfn.h"

/*
 * The holder's lock: one holder's reservations of limited items, one at a
 * time.  Taken before the reservation joins its counters (ticket_reserve
 * peeks first), so a buyer waiting for their own other tab is not counted
 * as open on the item, where it would hold up a change of pools or limits.
 */
void
ticket_lock_holder(text *holder)
{
	ticket_lock_key(TICKET_LOCK_HOLDER,
					hash_bytes_extended((const unsigned char *) VARDATA_ANY(holder),
										VARSIZE_ANY_EXHDR(holder), 0));
}

/*
 * The links of a held item, for the pools it draws on: those of the draw
 * when it is one of them, else read from its slot (not joined: its pools
 * cannot change while this hold of it is active, set_pools refuses).
 * False when it draws on none of the draw's limited counters' ids and is
 * none of them (nothing to count).
 */
static bool
item_links_of(int64 item_id, const TicketDraw *draw, TicketItemLinks *links)
{
	uint32		incarnation;
	int			i;

	for (i = 0; i < draw->n; i++)
		if (draw->ids[i] == item_id)
		{
			*links = draw->links[i];
			return true;
		}
	ticket_links_read(ticket_slot_ready(item_id, &incarnation), links);
	return links->npools > 0;
}

void
ticket_check_holder_limits(const TicketDraw *draw, text *holder, int32 qty)
{
	int64		have[1 + TICKET_MAX_POOLS] = {0};
	bool		limited = false;
	int64	   *item_ids;
	int32	   *qtys;
	int			nholds;
	int			r;
	int			i;

	for (i = 0; i < draw->n; i++)
		limited |= draw->links[i].holder_limit > 0;
	if (!limited)
		return;
	/* '' would make every anonymous buyer one customer */
	if (holder == NULL || VARSIZE_ANY_EXHDR(holder) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TICKET_HOLDER_REQUIRED),
				 errmsg("item " INT64_FORMAT " has a per-customer limit: holder must not be NULL or empty",
						draw->ids[0]),
				 errhint("Pass the customer's id as holder.")));

	ticket_lock_holder(holder);
	/* holds this very statement made before (several calls in one SELECT) */
	CommandCounterIncrement();

	nholds = ticket_holder_holds(holder, &item_ids, &qtys);
	for (r = 0; r < nholds; r++)
	{
		TicketItemLinks links;
		int			p;

		if (!item_links_of(item_ids[r], draw, &links))
			continue;			/* not one of ours to count */
		for (i = 0; i < draw->n; i++)
		{
			if (draw->links[i].holder_limit == 0)
				continue;
			if (item_ids[r] == draw->ids[i])
				have[i] += qtys[r];
			else
				for (p = 0; p < links.npools; p++)
					if (links.pool_ids[p] == draw->ids[i])
						have[i] += qtys[r];
		}
	}

	for (i = 0; i < draw->n; i++)
	{
		int32		limit = draw->links[i].holder_limit;

		if (limit > 0 && have[i] + qty > limit)
			ereport(ERROR,
					(errcode(ERRCODE_TICKET_HOLDER_LIMIT),
					 errmsg("per-customer limit reached: this holder has " INT64_FORMAT " of the %d tickets allowed on item " INT64_FORMAT ", and asked for %d more",
							have[i], limit, draw->ids[i], qty),
					 i > 0 ? errdetail("Item " INT64_FORMAT " draws on pool " INT64_FORMAT ", which has the limit.",
									   draw->ids[0], draw->ids[i]) : 0,
					 errhint("Released and expired holds count no more once they commit.")));
	}
}
