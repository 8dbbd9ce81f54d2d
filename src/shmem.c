/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The shared slot table: one cache-line sized TicketSlot per
 *	  (database, item), found by lock-free linear probing.
 *
 * Slots are created under an LWLock and never removed while the server
 * runs, so a reader that sees a slot's state != SLOT_EMPTY (after a read
 * barrier) also sees its immutable key.  A crash restart gives the
 * postmaster fresh shared memory: every slot is SLOT_EMPTY again and is
 * reloaded from the tables on first use (loader.c).
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
static uint32
slot_count(void)
{
	return (uint32) ticket_max_items + ticket_max_items / 4 + 1;
}

Size
ticket_shmem_size(void)
{
	return add_size(SLOTS_OFFSET, mul_size(slot_count(), SLOT_STRIDE));
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
		ticket_shared->nslots = slot_count();
		ticket_shared->max_items = ticket_max_items;
		pg_atomic_init_u32(&ticket_shared->used, 0);
		for (i = 0; i < ticket_shared->nslots; i++)
		{
			TicketSlot *slot = SLOT_AT(i);

			pg_atomic_init_u32(&slot->state, SLOT_EMPTY);
			pg_atomic_init_u64(&slot->avail, 0);
			pg_atomic_init_u64(&slot->capacity, 0);
			pg_atomic_init_u64(&slot->gate, 0);
			pg_atomic_init_u32(&slot->paused, 0);
			pg_atomic_init_u32(&slot->expiry_epoch, 0);
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

static inline bool
slot_matches(TicketSlot *slot, Oid dboid, int64 item_id)
{
	return slot->dboid == dboid && slot->item_id == item_id;
}

/* Lock-free lookup; NULL when no slot exists for the key. */
TicketSlot *
ticket_slot_find(Oid dboid, int64 item_id)
{
	uint32		i = slot_hash(dboid, item_id);
	uint32		probes;

	for (probes = 0; probes < ticket_shared->nslots; probes++)
	{
		TicketSlot *slot = SLOT_AT(i);

		if (pg_atomic_read_u32(&slot->state) == SLOT_EMPTY)
			return NULL;
		pg_read_barrier();		/* key was written before state */
		if (slot_matches(slot, dboid, item_id))
			return slot;
		if (++i == ticket_shared->nslots)
			i = 0;
	}
	return NULL;
}

/*
 * Lookup, creating an SLOT_UNLOADED slot when missing.  Callers have
 * already checked that the item exists in the tables, so unknown ids sent
 * by clients never use up slots.
 */
TicketSlot *
ticket_slot_find_or_create(Oid dboid, int64 item_id)
{
	TicketSlot *slot = ticket_slot_find(dboid, item_id);
	uint32		i;

	if (slot != NULL)
		return slot;

	LWLockAcquire(ticket_shared->insert_lock, LW_EXCLUSIVE);
	i = slot_hash(dboid, item_id);
	for (;;)
	{
		slot = SLOT_AT(i);
		if (pg_atomic_read_u32(&slot->state) == SLOT_EMPTY)
			break;
		if (slot_matches(slot, dboid, item_id))
		{
			LWLockRelease(ticket_shared->insert_lock);
			return slot;		/* created meanwhile by another backend */
		}
		if (++i == ticket_shared->nslots)
			i = 0;
	}

	if (pg_atomic_read_u32(&ticket_shared->used) >= ticket_shared->max_items)
	{
		LWLockRelease(ticket_shared->insert_lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("ticket_ext shared memory is full (%u items)",
						ticket_shared->max_items),
				 errhint("Raise ticket_ext.max_items and restart the server.")));
	}

	slot->dboid = dboid;
	slot->item_id = item_id;
	slot->items_relid = InvalidOid;
	pg_atomic_write_u64(&slot->gate, 0);
	pg_write_barrier();			/* key before state: see ticket_slot_find */
	pg_atomic_write_u32(&slot->state, SLOT_UNLOADED);
	pg_atomic_fetch_add_u32(&ticket_shared->used, 1);
	LWLockRelease(ticket_shared->insert_lock);
	return slot;
}

bool
ticket_slots_full(void)
{
	return pg_atomic_read_u32(&ticket_shared->used) >= ticket_shared->max_items;
}

/*
 * Iterate over used slots: start with *cursor = 0; returns NULL at the end.
 * Slots appear as they are created; the caller checks what it needs.
 */
TicketSlot *
ticket_slot_next(uint32 *cursor)
{
	while (*cursor < ticket_shared->nslots)
	{
		TicketSlot *slot = SLOT_AT(*cursor);

		(*cursor)++;
		if (pg_atomic_read_u32(&slot->state) != SLOT_EMPTY)
		{
			pg_read_barrier();
			return slot;
		}
	}
	return NULL;
}
