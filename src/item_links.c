/*-------------------------------------------------------------------------
 *
 * item_links.c
 *	  Each slot's pools and holder limit (TicketItemLinks), in an array
 *	  parallel to the slot table.
 *
 * Writers: the loader (slot LOADING, nobody joined) and a committing
 * set_pools/set_holder_limit (slot frozen since the call, nobody joined),
 * so a transaction that has joined the slot reads a stable value.  Readers
 * that have not joined (ticket_available) go by the version, bumped to odd
 * before a write and to even after it, and read again when it moved.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "storage/shmem.h"

typedef struct LinksEntry
{
	pg_atomic_uint32 version;	/* odd while being written */
	TicketItemLinks links;
} LinksEntry;

static LinksEntry *entries = NULL;

Size
ticket_links_shmem_size(void)
{
	return mul_size(ticket_slot_count(), sizeof(LinksEntry));
}

/* Called with AddinShmemInitLock held, after the slot table exists. */
void
ticket_links_shmem_startup(void)
{
	bool		found;

	entries = ShmemInitStruct("ticket_ext item links", ticket_links_shmem_size(), &found);
	if (!found)
	{
		uint32		i;

		memset(entries, 0, ticket_links_shmem_size());
		for (i = 0; i < ticket_slot_count(); i++)
			pg_atomic_init_u32(&entries[i].version, 0);
	}
}

void
ticket_links_store(TicketSlot *slot, const TicketItemLinks *links)
{
	LinksEntry *e = &entries[ticket_slot_index(slot)];

	Assert(links->npools >= 0 && links->npools <= TICKET_MAX_POOLS);
	pg_atomic_fetch_add_u32(&e->version, 1);	/* full barrier */
	e->links = *links;
	pg_write_barrier();
	pg_atomic_fetch_add_u32(&e->version, 1);
}

void
ticket_links_read(TicketSlot *slot, TicketItemLinks *links)
{
	LinksEntry *e = &entries[ticket_slot_index(slot)];

	for (;;)
	{
		uint32		before = pg_atomic_read_u32(&e->version);

		pg_read_barrier();
		*links = e->links;
		pg_read_barrier();
		if ((before & 1) == 0 && pg_atomic_read_u32(&e->version) == before)
			return;
		pg_spin_delay();
	}
}

bool
ticket_links_equal(const TicketItemLinks *a, const TicketItemLinks *b)
{
	return a->npools == b->npools && a->holder_limit == b->holder_limit &&
		memcmp(a->pool_ids, b->pool_ids, a->npools * sizeof(int64)) == 0;
}
