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
 * existing ones.  Deltas commute, so effects applied late (after their
 * transaction's end became visible) still add up right; the one absolute
 * value, paused, is versioned instead (counter_pause_write).
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
 * Pause state.  Pause applies at once and resume at commit, and both may
 * be applied after the transaction's end is already visible, when a second
 * admin may have locked the items row and changed it again.  So every
 * write carries a version handed out under the items row lock (in row-lock
 * order), and a write only applies if no newer version was applied: the
 * counter ends equal to the last committed row whatever the order in which
 * the callbacks run.
 */
#define PAUSE_SEQ_ONE			(UINT64CONST(1) << 32)

bool
counter_paused(TicketSlot *slot)
{
	return PAUSE_PAUSED(pg_atomic_read_u64(&slot->pause));
}

uint64
counter_pause_word(TicketSlot *slot)
{
	return pg_atomic_read_u64(&slot->pause);
}

/*
 * Hand out three versions, V, V + 1 and V + 2 (returns V): the caller's
 * immediate write uses V, a rollback to savepoint V + 1, the end of its
 * transaction V + 2 of its last call, so all sort before any version a
 * later holder of the row lock gets, and the end after all its others.
 */
uint32
counter_pause_reserve(TicketSlot *slot)
{
	uint64		old = pg_atomic_fetch_add_u64(&slot->pause, 3 * PAUSE_SEQ_ONE);

	return (uint32) (old >> 32) + 1;
}

/* Apply (version, paused) unless a newer version was applied already. */
void
counter_pause_write(TicketSlot *slot, uint32 version, bool paused)
{
	uint64		cur = pg_atomic_read_u64(&slot->pause);

	Assert(version < (UINT64CONST(1) << 31));
	while (PAUSE_VERSION(cur) < version)
	{
		uint64		next = (cur & ~UINT64CONST(0xFFFFFFFF)) |
			((uint64) version << 1) | (paused ? 1 : 0);

		if (pg_atomic_compare_exchange_u64(&slot->pause, &cur, next))
			break;
	}
}

/*
 * Set paused from the tables (load): newer than every version handed out,
 * so a write still pending from before cannot undo it.
 */
void
counter_pause_reset(TicketSlot *slot, bool paused)
{
	uint64		cur = pg_atomic_read_u64(&slot->pause);

	for (;;)
	{
		uint64		seq = cur >> 32;
		uint64		next = (cur & ~UINT64CONST(0xFFFFFFFF)) |
			((seq & UINT64CONST(0x7FFFFFFF)) << 1) | (paused ? 1 : 0);

		if (pg_atomic_compare_exchange_u64(&slot->pause, &cur, next))
			break;
	}
}

/* resync: set paused if the word is still exactly what it read. */
bool
counter_pause_correct(TicketSlot *slot, uint64 seen, bool paused)
{
	uint64		expected = seen;

	return pg_atomic_compare_exchange_u64(&slot->pause, &expected,
										  (seen & ~UINT64CONST(1)) | (paused ? 1 : 0));
}

/*
 * Join the item's gate: count this transaction as open on the item (and
 * bump the join sequence).  Fails (without joining) while frozen.
 */
bool
counter_gate_enter(TicketSlot *slot)
{
	uint64		cur = pg_atomic_read_u64(&slot->gate);

	for (;;)
	{
		uint64		next;

		if (cur & GATE_FROZEN)
			return false;
		next = cur + 1 + GATE_JOIN_ONE;
		if ((next & GATE_FROZEN) != 0)	/* join sequence wrapped */
			next &= ~GATE_FROZEN;
		if (pg_atomic_compare_exchange_u64(&slot->gate, &cur, next))
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

/* Freeze a gate nobody has joined; false if someone has, or it is frozen. */
bool
counter_freeze_idle(TicketSlot *slot)
{
	uint64		cur = pg_atomic_read_u64(&slot->gate);

	if ((cur & (GATE_FROZEN | GATE_COUNT_MASK)) != 0)
		return false;
	return pg_atomic_compare_exchange_u64(&slot->gate, &cur, cur | GATE_FROZEN);
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
counter_gate_word(TicketSlot *slot)
{
	return pg_atomic_read_u64(&slot->gate);
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
