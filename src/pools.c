/*-------------------------------------------------------------------------
 *
 * pools.c
 *	  An item and the pools it draws on, as reservations, releases,
 *	  expiries and availability use them.
 *
 * A pool is an ordinary item whose counter also pays for the items drawing
 * on it.  A transaction joins the item first, then reads the item's links
 * (stable while joined: item_links.c) and joins each pool; every counter
 * effect is then recorded on each of them (xact.c), so an abort, a
 * rollback to savepoint, a release or an expiry covers every pool.
 * set_pools is refused while the item has active holds, so a hold's pools
 * are always its item's current pools.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"
#include "ticket_errcodes.h"

#include "access/xlog.h"

/* Join the item and its pools (draw: the item first). */
void
ticket_join_draw(int64 item_id, TicketDraw *draw)
{
	int			i;

	draw->ids[0] = item_id;
	draw->slots[0] = ticket_join(item_id);
	ticket_links_read(draw->slots[0], &draw->links[0]);
	draw->n = 1 + draw->links[0].npools;
	for (i = 1; i < draw->n; i++)
	{
		draw->ids[i] = draw->links[0].pool_ids[i - 1];
		draw->slots[i] = ticket_join(draw->ids[i]);
		ticket_links_read(draw->slots[i], &draw->links[i]);
	}
}

/*
 * Every counter of the draw belongs to the installation whose tables this
 * backend now uses.  Joining a pool may process invalidations (a DROP and
 * CREATE EXTENSION meanwhile): the hold would then go into the new tables
 * while the counters taken were the old installation's.  Checked after the
 * last call that may process invalidations, right before the hold is
 * written.
 */
void
ticket_check_draw_installation(const TicketDraw *draw)
{
	Oid			relid = ticket_items_relid(false);
	int			i;

	for (i = 0; i < draw->n; i++)
		if (draw->slots[i]->items_relid != relid)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("ticket_ext was reinstalled while this call ran"),
					 errhint("Retry the transaction.")));
}

/*
 * A glance at the item and its pools without joining them: whether any
 * has a holder limit or is frozen (a change of pools or limit, a reload).
 * It may change right after; callers use it to wait or skip before
 * joining, and decide again once joined.
 */
void
ticket_peek_draw(int64 item_id, bool *limited, bool *frozen)
{
	TicketItemLinks links;
	TicketItemLinks pool;
	uint32		incarnation;
	TicketSlot *slot = ticket_slot_ready(item_id, &incarnation);
	int			i;

	ticket_links_read(slot, &links);
	*limited = links.holder_limit > 0;
	*frozen = (counter_gate_word(slot) & GATE_FROZEN) != 0;
	for (i = 0; i < links.npools; i++)
	{
		slot = ticket_slot_ready(links.pool_ids[i], &incarnation);
		ticket_links_read(slot, &pool);
		*limited |= pool.holder_limit > 0;
		*frozen |= (counter_gate_word(slot) & GATE_FROZEN) != 0;
	}
}

/* Pausing an item or any of its pools stops its sales. */
void
ticket_check_draw_paused(const TicketDraw *draw)
{
	int			i;

	for (i = 0; i < draw->n; i++)
	{
		if (!counter_paused(draw->slots[i]))
			continue;
		if (i == 0)
			ereport(ERROR,
					(errcode(ERRCODE_TICKET_ITEM_PAUSED),
					 errmsg("sales of item " INT64_FORMAT " are paused", draw->ids[0]),
					 errhint("An administrator can resume them with ticket_ext.resume().")));
		ereport(ERROR,
				(errcode(ERRCODE_TICKET_ITEM_PAUSED),
				 errmsg("sales of item " INT64_FORMAT " are paused: its pool " INT64_FORMAT " is paused",
						draw->ids[0], draw->ids[i]),
				 errhint("An administrator can resume the pool with ticket_ext.resume().")));
	}
}

/* A hold of item_id ended (release, expiry): qty back to all, at commit. */
void
ticket_return_draw(int64 item_id, int64 qty)
{
	TicketDraw	draw;
	int			i;

	ticket_join_draw(item_id, &draw);
	ticket_check_draw_installation(&draw);
	for (i = 0; i < draw.n; i++)
		ticket_record_effect(draw.slots[i], EFFECT_RETURN_AT_COMMIT, qty);
}

/* One counter's tickets left, without joining; -1: reclaimed meanwhile. */
static int64
slot_available(int64 item_id, TicketItemLinks *links)
{
	uint32		incarnation;
	TicketSlot *slot = ticket_slot_ready(item_id, &incarnation);
	int64		avail = counter_available(slot);

	if (links != NULL)
		ticket_links_read(slot, links);
	pg_read_barrier();
	return ticket_slot_is(slot, incarnation) ? Max(avail, 0) : -1;
}

/*
 * Tickets left: the least over the item and its pools.  On a hot standby
 * no counters are kept (replay would leave them behind): the answer then
 * comes from the replicated tables.
 */
int64
ticket_item_available(int64 item_id)
{
	TicketItemLinks links;
	int64		avail;
	int			i;

	if (RecoveryInProgress())
	{
		TicketItemTruth truth = ticket_read_truth(item_id, true);

		if (!truth.found)
			ticket_error_unknown_item(item_id);
		avail = Max(truth.capacity - truth.taken, 0);
		for (i = 0; i < truth.links.npools; i++)
		{
			TicketItemTruth pool = ticket_read_truth(truth.links.pool_ids[i], true);

			if (pool.found)
				avail = Min(avail, Max(pool.capacity - pool.taken, 0));
		}
		return avail;
	}
	/* reclaimed and reused while we read: ask again */
	while ((avail = slot_available(item_id, &links)) < 0)
		;
	for (i = 0; i < links.npools; i++)
	{
		int64		pool_avail;

		while ((pool_avail = slot_available(links.pool_ids[i], NULL)) < 0)
			;
		avail = Min(avail, pool_avail);
	}
	return avail;
}
