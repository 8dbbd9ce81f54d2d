/*-------------------------------------------------------------------------
 *
 * inflight.c
 *	  Each backend's open-transaction effects on counters, published in
 *	  shared memory so verify() and resync() can account for them.
 *
 * A counter includes what open transactions took at once (reservations,
 * capacity lowered, pause) but the tables do not show it until they
 * commit.  Each backend keeps, in its own entry here, the items its
 * transaction joined and the net immediate effect on each; only that
 * backend writes its entry, bracketing every change (and the counter
 * update it goes with) by two increments of a sequence number, like a
 * seqlock.  It records what it applied already and what it will apply at
 * commit; before committing (XACT_EVENT_PRE_COMMIT) it publishes its xid,
 * and it empties its entry in the same bracketed step that applies its
 * end-of-transaction effects.
 *
 * So a reader that finds nothing moving around a snapshot (every entry
 * unchanged, the gate word unchanged: nobody joined or left) knows, for
 * each open transaction, whether the snapshot sees it (committed, effects
 * at commit not applied yet: the counter lacks them) or not (the counter
 * has its immediate effects, the tables do not), and so exactly what the
 * counter must be.  Nobody ever waits for anybody; a reader that catches
 * something moving tries again.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/transam.h"
#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/snapmgr.h"

/* A transaction rarely touches more items; more makes it unaccountable. */
#define INFLIGHT_MAX_ITEMS		32

typedef struct BackendInflight
{
	pg_atomic_uint32 seq;		/* odd while the owner changes the entry */
	bool		active;			/* joined items in the current transaction */
	bool		overflow;		/* joined more than INFLIGHT_MAX_ITEMS items */
	int			nitems;
	TransactionId xid;			/* set when committing: may be visible */
	TicketInflightItem items[INFLIGHT_MAX_ITEMS];
} BackendInflight;

#define ENTRY_STRIDE	TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(BackendInflight))

static char *entries = NULL;
static BackendInflight *me = NULL;

#define ENTRY(i)	((BackendInflight *) (entries + (Size) (i) * ENTRY_STRIDE))

/* One entry per backend (PGPROC numbers below MaxBackends). */
Size
ticket_inflight_shmem_size(void)
{
	return add_size(PG_CACHE_LINE_SIZE, mul_size(MaxBackends, ENTRY_STRIDE));
}

void
ticket_inflight_shmem_startup(void)
{
	bool		found;
	char	   *base;
	int			i;

	entries = NULL;				/* a restart within the postmaster */
	me = NULL;
	base = ShmemInitStruct("ticket_ext inflight", ticket_inflight_shmem_size(), &found);
	entries = (char *) CACHELINEALIGN(base);
	if (!found)
	{
		memset(base, 0, ticket_inflight_shmem_size());
		for (i = 0; i < MaxBackends; i++)
			pg_atomic_init_u32(&ENTRY(i)->seq, 0);
	}
}

static BackendInflight *
my_entry(void)
{
	if (me == NULL)
	{
		if (entries == NULL || MyProc == NULL || MyProc->pgprocno >= MaxBackends)
			elog(ERROR, "ticket_ext: no in-flight entry for this process");
		me = ENTRY(MyProc->pgprocno);
	}
	return me;
}

/* Bracket a change of our entry (and the counter change it goes with). */
void
ticket_inflight_change_begin(void)
{
	pg_atomic_fetch_add_u32(&my_entry()->seq, 1);	/* full barrier */
}

void
ticket_inflight_change_end(void)
{
	pg_write_barrier();
	pg_atomic_fetch_add_u32(&my_entry()->seq, 1);
}

static TicketInflightItem *
find_item(BackendInflight *e, uint32 index)
{
	int			i;

	for (i = 0; i < e->nitems && i < INFLIGHT_MAX_ITEMS; i++)
		if (e->items[i].slot_index == index)
			return &e->items[i];
	return NULL;
}

/* This transaction has joined slot's gate (called right after joining). */
void
ticket_inflight_join(TicketSlot *slot)
{
	BackendInflight *e = my_entry();

	ticket_inflight_change_begin();
	e->active = true;
	if (e->nitems < INFLIGHT_MAX_ITEMS)
	{
		TicketInflightItem *it = &e->items[e->nitems];

		memset(it, 0, sizeof(*it));
		it->slot_index = ticket_slot_index(slot);
		e->nitems++;
	}
	else
		e->overflow = true;
	ticket_inflight_change_end();
}

/* Forget the item joined last (it was left without any effect). */
void
ticket_inflight_unjoin_last(void)
{
	BackendInflight *e = my_entry();

	ticket_inflight_change_begin();
	if (e->nitems > 0 && !e->overflow)
		e->nitems--;
	ticket_inflight_change_end();
}

/* Between change_begin and change_end: effects on slot, now and later. */
void
ticket_inflight_add(TicketSlot *slot, int64 avail_now, int64 capacity_now,
					int64 avail_later, int64 capacity_later)
{
	TicketInflightItem *it = find_item(my_entry(), ticket_slot_index(slot));

	if (it != NULL)
	{
		it->avail_now += avail_now;
		it->capacity_now += capacity_now;
		it->avail_later += avail_later;
		it->capacity_later += capacity_later;
	}
}

/* Between change_begin and change_end: our pause state of slot. */
void
ticket_inflight_set_pause(TicketSlot *slot, uint32 version, bool paused_now)
{
	TicketInflightItem *it = find_item(my_entry(), ticket_slot_index(slot));

	if (it != NULL)
	{
		it->pause_version = version;
		it->paused_now = paused_now;
	}
}

/* XACT_EVENT_PRE_COMMIT: from here on our commit may become visible. */
void
ticket_inflight_committing(void)
{
	BackendInflight *e = my_entry();

	if (!e->active)
		return;
	ticket_inflight_change_begin();
	e->xid = GetTopTransactionIdIfAny();
	ticket_inflight_change_end();
}

/* Between change_begin and change_end: the transaction is over. */
void
ticket_inflight_reset(void)
{
	BackendInflight *e = my_entry();

	e->active = false;
	e->overflow = false;
	e->nitems = 0;
	e->xid = InvalidTransactionId;
}

/*
 * The open transactions joined to slot, copied.  sum->stable is false when
 * one was changing, or one may have joined without an entry; the caller
 * must also find them unchanged afterwards (ticket_inflight_unchanged) and
 * the gate's open count equal to sum->nmatched.
 */
void
ticket_inflight_scan(TicketSlot *slot, TicketInflightSum *sum)
{
	uint32		index = ticket_slot_index(slot);
	int			i;

	memset(sum, 0, sizeof(*sum));
	sum->stable = true;
	sum->procnos = palloc(sizeof(int) * MaxBackends);
	sum->seqs = palloc(sizeof(uint32) * MaxBackends);
	sum->xids = palloc(sizeof(TransactionId) * MaxBackends);
	sum->items = palloc(sizeof(TicketInflightItem) * MaxBackends);
	for (i = 0; i < MaxBackends; i++)
	{
		BackendInflight *e = ENTRY(i);
		uint32		seq = pg_atomic_read_u32(&e->seq);
		TicketInflightItem *it;
		TicketInflightItem copy;
		TransactionId xid;
		bool		found = false;

		pg_read_barrier();
		if (!e->active && (seq & 1) == 0)
			continue;
		it = find_item(e, index);
		if (it != NULL)
		{
			copy = *it;
			found = true;
		}
		xid = e->xid;
		/* an overflowed entry joined to slot shows as one open too many */
		if (!found && e->overflow)
			sum->overflow_seen = true;
		pg_read_barrier();
		if ((seq & 1) != 0 || pg_atomic_read_u32(&e->seq) != seq)
		{
			sum->stable = false;	/* changing right now */
			continue;
		}
		if (!found)
			continue;
		sum->procnos[sum->nmatched] = i;
		sum->seqs[sum->nmatched] = seq;
		sum->xids[sum->nmatched] = xid;
		sum->items[sum->nmatched] = copy;
		sum->nmatched++;
	}
}

/* Did none of the transactions found by the scan change since? */
bool
ticket_inflight_unchanged(const TicketInflightSum *sum)
{
	int			i;

	pg_read_barrier();
	for (i = 0; i < sum->nmatched; i++)
		if (pg_atomic_read_u32(&ENTRY(sum->procnos[i])->seq) != sum->seqs[i])
			return false;
	return true;
}

/*
 * counter - tables, for tables read with snapshot (and the pause word read
 * with the counter): a transaction the
 * snapshot does not see added its immediate effects to the counter only;
 * one it sees (committed, callback not run yet, since it did not change)
 * is in the tables whole and lacks its effects at commit in the counter.
 */
TicketInflightAdjust
ticket_inflight_adjust(const TicketInflightSum *sum, Snapshot snapshot,
					   uint64 pause_word)
{
	TicketInflightAdjust adj = {0};
	int			i;

	adj.ok = true;
	for (i = 0; i < sum->nmatched; i++)
	{
		const TicketInflightItem *it = &sum->items[i];
		TransactionId xid = sum->xids[i];

		if (TransactionIdIsValid(xid) && !XidInMVCCSnapshot(xid, snapshot) &&
			TransactionIdDidCommit(xid))
		{
			adj.avail -= it->avail_later;
			adj.capacity -= it->capacity_later;
		}
		else
		{
			adj.avail += it->avail_now;
			adj.capacity += it->capacity_now;
		}
		/*
		 * Its pause state, unless a newer version than all of its own (V to
		 * V + 2 of its last call) was applied: a later admin's, who locked
		 * the row after this transaction's end became visible; this one's
		 * remaining writes will be refused, the snapshot shows the row.
		 */
		if (it->pause_version != 0 &&
			PAUSE_VERSION(pause_word) <= it->pause_version + 2)
		{
			/* two pausers at once: the counter is between their writes */
			if (adj.pause_known)
				adj.ok = false;
			adj.pause_known = true;
			adj.paused = it->paused_now;
		}
	}
	return adj;
}

void
ticket_inflight_free(TicketInflightSum *sum)
{
	pfree(sum->procnos);
	pfree(sum->seqs);
	pfree(sum->xids);
	pfree(sum->items);
}

/*
 * "pids 12, 34": the backends whose open transactions have joined slot
 * (and those that joined too many items to tell), for error messages.
 */
char *
ticket_inflight_pids(TicketSlot *slot)
{
	uint32		index = ticket_slot_index(slot);
	StringInfoData buf;
	int			n = 0;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < MaxBackends; i++)
	{
		BackendInflight *e = ENTRY(i);
		int			pid;

		if (!e->active || e == me || (find_item(e, index) == NULL && !e->overflow))
			continue;
		pid = ProcGlobal->allProcs[i].pid;
		if (pid == 0)
			continue;
		appendStringInfo(&buf, "%s%d", n++ == 0 ? "" : ", ", pid);
	}
	return n == 0 ? pstrdup("none found") : buf.data;
}
