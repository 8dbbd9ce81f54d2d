/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The shared slot table: one cache-line sized TicketSlot per
 *	  (database, item), found by lock-free linear probing.
 *
 * Slots are created under an LWLock.  A slot nobody has joined can be
 * reclaimed (slot_reclaim.c): it becomes SLOT_DEAD, which lookups skip
 * without ending the probe chain, and a later creation may reuse it for
 * another key, bumping its incarnation; lookups read the key between two
 * readings of the state word and start over if the incarnation moved.
 * A crash restart gives the postmaster fresh shared memory: every slot is
 * SLOT_EMPTY again and is reloaded from the tables on first use
 * (loader.c).
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

TicketShared *ticket_shared = NULL;

/*
 * One slot per 64-byte cache line: no false sharing between hot items.
 * (PG_CACHE_LINE_SIZE is 128 to cover adjacent-line prefetch; 64 keeps the
 * cost per item at 80 bytes with the 25% spare slots.)
 */
#define SLOT_STRIDE			64
StaticAssertDecl(sizeof(TicketSlot) <= SLOT_STRIDE,
				 "TicketSlot must fit in one cache line");
#define SLOTS_OFFSET		CACHELINEALIGN(sizeof(TicketShared))
#define SLOT_AT(i) \
	((TicketSlot *) ((char *) ticket_shared + SLOTS_OFFSET + (Size) (i) * SLOT_STRIDE))

/* 25% spare slots keep linear probe chains short. */
uint32
ticket_slot_count(void)
{
	return (uint32) ticket_max_items + ticket_max_items / 4 + 1;
}

Size
ticket_shmem_size(void)
{
	return add_size(SLOTS_OFFSET, mul_size(ticket_slot_count(), SLOT_STRIDE));
}

/* Called from shmem_request_hook (PG15 refuses requests elsewhere). */
void
ticket_shmem_request(void)
{
	RequestAddinShmemSpace(ticket_shmem_size());
	RequestNamedLWLockTranche("ticket_ext", 1);
}

/*
 * Called from shmem_startup_hook, in the postmaster at start and again
 * after every crash restart (with new, zeroed memory).
 */
void
ticket_shmem_startup(void)
{
	bool		found;
	uint32		i;

	/* reset in case this is a restart within the postmaster */
	ticket_shared = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ticket_shared = ShmemInitStruct("ticket_ext", ticket_shmem_size(), &found);
	if (!found)
	{
		memset(ticket_shared, 0, ticket_shmem_size());
		ticket_shared->insert_lock = &(GetNamedLWLockTranche("ticket_ext"))->lock;
		ticket_shared->nslots = ticket_slot_count();
		ticket_shared->max_items = ticket_max_items;
		pg_atomic_init_u32(&ticket_shared->used, 0);
		for (i = 0; i < ticket_shared->nslots; i++)
		{
			TicketSlot *slot = SLOT_AT(i);

			pg_atomic_init_u32(&slot->state, SLOT_EMPTY);
			pg_atomic_init_u32(&slot->expiry_epoch, 0);
			pg_atomic_init_u64(&slot->avail, 0);
			pg_atomic_init_u64(&slot->capacity, 0);
			pg_atomic_init_u64(&slot->gate, 0);
			pg_atomic_init_u64(&slot->pause, 0);
			pg_atomic_init_u64(&slot->next_expiry, (uint64) DT_NOEND);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Every SQL entry point starts here: a clear error when not preloaded. */
void
ticket_require_shmem(void)
{
	if (ticket_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ticket_ext must be loaded via shared_preload_libraries"),
				 errhint("Add ticket_ext to shared_preload_libraries in postgresql.conf and restart the server.")));
}

static uint32
slot_hash(Oid dboid, int64 item_id)
{
	uint64		h = hash_bytes_uint32_extended((uint32) item_id,
											   ((uint64) dboid << 32) |
											   (uint32) ((uint64) item_id >> 32));

	return (uint32) (h % ticket_shared->nslots);
}

/*
 * Read a slot's state word and key consistently: false when the slot was
 * being reused for another key meanwhile (try again).
 */
static bool
read_slot_key(TicketSlot *slot, uint32 *word, Oid *dboid, int64 *item_id)
{
	uint32		before = pg_atomic_read_u32(&slot->state);
	uint32		after;

	pg_read_barrier();			/* key was written before the state word */
	*dboid = slot->dboid;
	*item_id = slot->item_id;
	pg_read_barrier();
	after = pg_atomic_read_u32(&slot->state);
	*word = before;
	return SLOT_INCARNATION(before) == SLOT_INCARNATION(after);
}

/*
 * Lock-free lookup; NULL when no slot exists for the key.  *incarnation
 * identifies this use of the slot (see ticket_slot_is).
 */
TicketSlot *
ticket_slot_find(Oid dboid, int64 item_id, uint32 *incarnation)
{
	uint32		i = slot_hash(dboid, item_id);
	uint32		probes;

	for (probes = 0; probes < ticket_shared->nslots; probes++)
	{
		TicketSlot *slot = SLOT_AT(i);
		uint32		word;
		Oid			db;
		int64		item;

		while (!read_slot_key(slot, &word, &db, &item))
			;					/* reused right now: read again */
		if (SLOT_STATE(word) == SLOT_EMPTY)
			return NULL;
		if (SLOT_STATE(word) != SLOT_DEAD && db == dboid && item == item_id)
		{
			*incarnation = SLOT_INCARNATION(word);
			return slot;
		}
		if (++i == ticket_shared->nslots)
			i = 0;
	}
	return NULL;
}

/* Is the slot still the one found with this incarnation, and alive? */
bool
ticket_slot_is(TicketSlot *slot, uint32 incarnation)
{
	uint32		word = pg_atomic_read_u32(&slot->state);

	return SLOT_INCARNATION(word) == incarnation && SLOT_STATE(word) != SLOT_DEAD;
}

/* Claim slot for a new key (insert lock held; slot EMPTY or DEAD). */
static void
claim_slot(TicketSlot *slot, Oid dboid, int64 item_id)
{
	uint32		word = pg_atomic_read_u32(&slot->state);
	uint32		incarnation = SLOT_INCARNATION(word) + (SLOT_STATE(word) == SLOT_DEAD ? 1 : 0);

	slot->dboid = dboid;
	slot->item_id = item_id;
	slot->items_relid = InvalidOid;
	pg_atomic_write_u64(&slot->avail, 0);
	pg_atomic_write_u64(&slot->capacity, 0);
	pg_atomic_write_u64(&slot->pause, 0);
	pg_atomic_write_u64(&slot->next_expiry, (uint64) DT_NOEND);
	/* keep the join sequence (readers compare it), unfreeze, count 0 */
	pg_atomic_write_u64(&slot->gate,
						pg_atomic_read_u64(&slot->gate) & ~(GATE_FROZEN | GATE_COUNT_MASK));
	pg_write_barrier();			/* key before state: see read_slot_key */
	pg_atomic_write_u32(&slot->state,
						(incarnation << SLOT_STATE_BITS) | SLOT_UNLOADED);
	pg_atomic_fetch_add_u32(&ticket_shared->used, 1);
}

static void
error_full(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("ticket_ext shared memory is full (%u items)",
					ticket_shared->max_items),
			 errhint("Raise ticket_ext.max_items and restart the server.")));
}

/*
 * Lookup, creating an SLOT_UNLOADED slot when missing.  Callers have
 * already checked that the item exists in the tables, so unknown ids sent
 * by clients never use up slots.  When the table is full, slots of
 * dropped items, installations and databases are reclaimed first.
 */
TicketSlot *
ticket_slot_find_or_create(Oid dboid, int64 item_id, uint32 *incarnation)
{
	TicketSlot *slot = ticket_slot_find(dboid, item_id, incarnation);
	int			attempt;

	for (attempt = 0; slot == NULL; attempt++)
	{
		TicketSlot *reuse = NULL;
		uint32		i = slot_hash(dboid, item_id);
		uint32		probes;

		LWLockAcquire(ticket_shared->insert_lock, LW_EXCLUSIVE);
		for (probes = 0; probes < ticket_shared->nslots; probes++)
		{
			TicketSlot *cand = SLOT_AT(i);
			uint32		word = pg_atomic_read_u32(&cand->state);

			if (SLOT_STATE(word) == SLOT_EMPTY || SLOT_STATE(word) == SLOT_DEAD)
			{
				if (reuse == NULL)
					reuse = cand;
				if (SLOT_STATE(word) == SLOT_EMPTY)
					break;		/* the key is not further down the chain */
			}
			else if (cand->dboid == dboid && cand->item_id == item_id)
			{
				/* created meanwhile by another backend */
				*incarnation = SLOT_INCARNATION(word);
				slot = cand;
				break;
			}
			if (++i == ticket_shared->nslots)
				i = 0;
		}
		if (slot == NULL && reuse != NULL && !ticket_slots_full())
		{
			claim_slot(reuse, dboid, item_id);
			*incarnation = SLOT_INCARNATION(pg_atomic_read_u32(&reuse->state));
			slot = reuse;
		}
		LWLockRelease(ticket_shared->insert_lock);

		/* full: give back what dropped items and databases hold, once */
		if (slot == NULL && (attempt > 0 || ticket_reclaim_dead_slots() == 0))
			error_full();
	}
	return slot;
}

/*
 * Make an idle slot of (dboid, item_id) DEAD: only if nobody has joined
 * its gate (it stays frozen while dead, so nobody can) and it is not being
 * loaded.  Returns whether it did.
 */
bool
ticket_slot_kill(TicketSlot *slot, Oid dboid, int64 item_id)
{
	bool		killed = false;
	uint32		word;

	LWLockAcquire(ticket_shared->insert_lock, LW_EXCLUSIVE);
	word = pg_atomic_read_u32(&slot->state);
	if ((SLOT_STATE(word) == SLOT_READY || SLOT_STATE(word) == SLOT_UNLOADED) &&
		slot->dboid == dboid && slot->item_id == item_id &&
		counter_freeze_idle(slot))
	{
		uint32		dead = (word & ~((1u << SLOT_STATE_BITS) - 1)) | SLOT_DEAD;

		if (pg_atomic_compare_exchange_u32(&slot->state, &word, dead))
		{
			pg_atomic_fetch_sub_u32(&ticket_shared->used, 1);
			killed = true;
		}
		else
			counter_thaw(slot); /* a load started: leave it */
	}
	LWLockRelease(ticket_shared->insert_lock);
	return killed;
}

bool
ticket_slots_full(void)
{
	return pg_atomic_read_u32(&ticket_shared->used) >= ticket_shared->max_items;
}

/*
 * Iterate over live slots: start with *cursor = 0; returns NULL at the
 * end.  *dboid and *item_id are the slot's key as read consistently.
 */
TicketSlot *
ticket_slot_next(uint32 *cursor, Oid *dboid, int64 *item_id)
{
	while (*cursor < ticket_shared->nslots)
	{
		TicketSlot *slot = SLOT_AT(*cursor);
		uint32		word;

		if (!read_slot_key(slot, &word, dboid, item_id))
			continue;			/* being reused: read it again */
		(*cursor)++;
		if (SLOT_STATE(word) != SLOT_EMPTY && SLOT_STATE(word) != SLOT_DEAD)
			return slot;
	}
	return NULL;
}

uint32
ticket_slot_index(TicketSlot *slot)
{
	return (uint32) (((char *) slot - ((char *) ticket_shared + SLOTS_OFFSET)) / SLOT_STRIDE);
}

TicketSlot *
ticket_slot_at(uint32 index)
{
	Assert(index < ticket_shared->nslots);
	return SLOT_AT(index);
}
