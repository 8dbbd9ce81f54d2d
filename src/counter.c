/*-------------------------------------------------------------------------
 *
 * counter.c
 *	  Lock-free operations on one item's counters (pg_atomic_*).
 *
 * avail = capacity - taken is the single word reservations race on: a
 * reservation is one compare-and-swap that never lets avail drop below
 * zero, so no interleaving can take more than is there.  Capacity changes
 * move avail and capacity together with fetch-add; lowering capacity below
 * what is taken makes avail negative, which stops sales without touching
 * existing ones.
 *
 * All pg_atomic read-modify-write operations are full barriers.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

/* Take qty tickets if at least qty are available. */
bool
counter_try_take(TicketSlot *slot, int64 qty)
{
	uint64		cur = pg_atomic_read_u64(&slot->avail);

	Assert(qty > 0);
	for (;;)
	{
		if ((int64) cur < qty)
			return false;
		/* on failure cur is refreshed with the current value */
		if (pg_atomic_compare_exchange_u64(&slot->avail, &cur,
										   (uint64) ((int64) cur - qty)))
			return true;
	}
}

/* Return tickets (delta > 0) or take them unconditionally (delta < 0). */
void
counter_add(TicketSlot *slot, int64 delta)
{
	pg_atomic_fetch_add_u64(&slot->avail, delta);
}

/* Capacity change: capacity and avail move by the same amount. */
void
counter_add_capacity(TicketSlot *slot, int64 delta)
{
	pg_atomic_fetch_add_u64(&slot->capacity, delta);
	pg_atomic_fetch_add_u64(&slot->avail, delta);
}

int64
counter_available(TicketSlot *slot)
{
	return (int64) pg_atomic_read_u64(&slot->avail);
}

int64
counter_capacity(TicketSlot *slot)
{
	return (int64) pg_atomic_read_u64(&slot->capacity);
}

/*
 * Join the item's gate: count this transaction as open on the item.
 * Fails (without joining) while a resync holds the gate frozen.
 */
bool
counter_gate_enter(TicketSlot *slot)
{
	uint64		cur = pg_atomic_read_u64(&slot->gate);

	for (;;)
	{
		if (cur & GATE_FROZEN)
			return false;
		if (pg_atomic_compare_exchange_u64(&slot->gate, &cur, cur + 1))
			return true;
	}
}

void
counter_gate_leave(TicketSlot *slot)
{
	uint64		old PG_USED_FOR_ASSERTS_ONLY;

	old = pg_atomic_fetch_sub_u64(&slot->gate, 1);
	Assert((old & GATE_COUNT_MASK) > 0);
}

/* Freeze the gate; false when another backend already froze it. */
bool
counter_freeze(TicketSlot *slot)
{
	uint64		old = pg_atomic_fetch_or_u64(&slot->gate, GATE_FROZEN);

	return (old & GATE_FROZEN) == 0;
}

void
counter_thaw(TicketSlot *slot)
{
	pg_atomic_fetch_and_u64(&slot->gate, ~GATE_FROZEN);
}

uint64
counter_gate_open_count(TicketSlot *slot)
{
	return pg_atomic_read_u64(&slot->gate) & GATE_COUNT_MASK;
}

/*
 * Expiry hint: lower next_expiry to expires_at.  The epoch bump first
 * tells a concurrent hint refresh (expiry.c) that a hold it may not see
 * exists; the CAS is usually skipped, since new holds expire after the
 * ones already counted.
 */
void
counter_note_expiry(TicketSlot *slot, TimestampTz expires_at)
{
	uint64		cur;

	pg_atomic_fetch_add_u32(&slot->expiry_epoch, 1);
	cur = pg_atomic_read_u64(&slot->next_expiry);

	while ((int64) cur > expires_at)
	{
		if (pg_atomic_compare_exchange_u64(&slot->next_expiry, &cur,
										   (uint64) expires_at))
			break;
	}
}

/* Replace the hint by next unless a reservation lowered it since "seen". */
bool
counter_set_next_expiry(TicketSlot *slot, TimestampTz seen, TimestampTz next)
{
	uint64		expected = (uint64) seen;

	return pg_atomic_compare_exchange_u64(&slot->next_expiry, &expected,
										  (uint64) next);
}
