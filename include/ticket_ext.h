/*-------------------------------------------------------------------------
 *
 * ticket_ext.h
 *	  Shared declarations of the ticket_ext extension.
 *
 * The tables ticket_ext.items and ticket_ext.holds are the truth.  Shared
 * memory holds one TicketSlot per (database, item): a cache of
 * "capacity - taken" that reservations decrement with compare-and-swap, so
 * the hot path never locks a shared row.  See README.md, "How it works".
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_EXT_H
#define TICKET_EXT_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Schema and relation names created by sql/ticket_ext--*.sql */
#define TICKET_SCHEMA			"ticket_ext"
#define TICKET_ITEMS_TABLE		"items"
#define TICKET_HOLDS_TABLE		"holds"
#define TICKET_HOLD_SEQ			"holds_hold_id_seq"

/* Limits on text arguments (bytes); longer input is refused, not cut. */
#define TICKET_MAX_HOLDER_LEN	256
#define TICKET_MAX_IDEMPOTENCY_KEY_LEN 200
#define TICKET_MAX_NAME_LEN		200
/* Largest capacity accepted; keeps every sum far from int64 overflow. */
#define TICKET_MAX_CAPACITY		INT64CONST(1000000000000)

/*
 * Slot life cycle.  A slot's key (dboid, item_id) is written while the
 * slot is SLOT_EMPTY or SLOT_DEAD (skipped by lookups), under shmem.c's
 * insert lock; reusing a DEAD slot for another key also bumps the slot's
 * incarnation, so a lock-free lookup that raced with the reuse notices
 * and looks again, and a caller holding the slot can tell it is gone.
 */
typedef enum TicketSlotState
{
	SLOT_EMPTY = 0,				/* never used: ends a probe chain */
	SLOT_UNLOADED,				/* key set, counters not yet read from tables */
	SLOT_LOADING,				/* one backend is reading the tables */
	SLOT_READY,					/* counters valid */
	SLOT_DEAD					/* reclaimed (slot_reclaim.c): skipped by
								 * lookups, reusable for another key */
} TicketSlotState;

/* state word: TicketSlotState in the low bits, incarnation above */
#define SLOT_STATE_BITS			4
#define SLOT_STATE(w)			((TicketSlotState) ((w) & ((1 << SLOT_STATE_BITS) - 1)))
#define SLOT_INCARNATION(w)		((w) >> SLOT_STATE_BITS)

/*
 * gate: bits 0-31 count open transactions that have (or may have) changed
 * this item's counter and not yet applied their end-of-transaction
 * effects; bits 32-61 count joins, so two equal readings of the word mean
 * nobody joined or left in between; GATE_FROZEN stops new transactions
 * from joining (reload after a reinstall, reclaiming).
 */
#define GATE_FROZEN				(UINT64CONST(1) << 62)
#define GATE_JOIN_ONE			(UINT64CONST(1) << 32)
#define GATE_COUNT_MASK			UINT64CONST(0xFFFFFFFF)

/*
 * pause word: bits 32-63 count pause versions handed out, bits 1-31 the
 * version of the last write applied, bit 0 paused (see counter.c).
 */
#define PAUSE_PAUSED(w)			(((w) & 1) != 0)
#define PAUSE_VERSION(w)		((uint32) (((w) & UINT64CONST(0xFFFFFFFF)) >> 1))

typedef struct TicketSlot
{
	pg_atomic_uint32 state;		/* TicketSlotState | incarnation */
	pg_atomic_uint32 expiry_epoch;	/* bumped by every expiry note (expiry.c) */
	Oid			dboid;			/* key part 1 */
	Oid			items_relid;	/* ticket_ext.items OID when loaded: detects
								 * DROP/CREATE EXTENSION */
	int64		item_id;		/* key part 2 */
	pg_atomic_uint64 avail;		/* int64: capacity - taken; may be < 0 */
	pg_atomic_uint64 capacity;	/* int64: capacity as the counter sees it */
	pg_atomic_uint64 gate;		/* GATE_FROZEN | join seq | open count */
	pg_atomic_uint64 pause;		/* versioned paused flag */
	pg_atomic_uint64 next_expiry;	/* TimestampTz: no held hold of this item
									 * expires before this (a lower bound) */
} TicketSlot;

/* The whole shared state: a header and an open-addressing slot array. */
typedef struct TicketShared
{
	LWLock	   *insert_lock;	/* serializes slot creation and reclaiming */
	uint32		nslots;			/* array length (> max_items) */
	uint32		max_items;		/* ticket_ext.max_items at startup */
	pg_atomic_uint32 used;		/* slots in use (not EMPTY, not DEAD) */
	/* the slot array follows, starting on the next cache line */
} TicketShared;

/*
 * What an item draws on besides its own counter (1.1): its pools (ordinary
 * items, one level) and the holder limit set on it.  One per slot, in an
 * array of its own (item_links.c owns it), written only while nobody has
 * joined the slot (loading, or a set_pools/set_holder_limit committing
 * with the slot frozen), so a transaction joined to the item reads it
 * without a lock; readers that have not joined use the version (seqlock).
 */
#define TICKET_MAX_POOLS		8

typedef struct TicketItemLinks
{
	int32		npools;
	int32		holder_limit;	/* 0: none */
	int64		pool_ids[TICKET_MAX_POOLS];
} TicketItemLinks;

/* ticket_ext.c: settings */
extern int	ticket_max_items;
extern int	ticket_hold_ttl_s;
extern int	ticket_max_hold_ttl_s;
extern int	ticket_max_per_order;
extern int	ticket_resync_timeout_ms;
extern int	ticket_expiry_interval_ms;
extern int	ticket_expiry_batch;
extern char *ticket_database;

/* shmem.c: the slot table */
extern TicketShared *ticket_shared;
extern Size ticket_shmem_size(void);
extern uint32 ticket_slot_count(void);
extern void ticket_shmem_request(void);
extern void ticket_shmem_startup(void);
extern void ticket_require_shmem(void);
extern TicketSlot *ticket_slot_find(Oid dboid, int64 item_id, uint32 *incarnation);
extern TicketSlot *ticket_slot_find_or_create(Oid dboid, int64 item_id,
											  uint32 *incarnation);
extern bool ticket_slots_full(void);
extern TicketSlot *ticket_slot_next(uint32 *cursor, Oid *dboid, int64 *item_id);
extern uint32 ticket_slot_index(TicketSlot *slot);
extern TicketSlot *ticket_slot_at(uint32 index);
extern bool ticket_slot_is(TicketSlot *slot, uint32 incarnation);
extern bool ticket_slot_kill(TicketSlot *slot, Oid dboid, int64 item_id);

/* item_links.c: each slot's pools and holder limit */
extern Size ticket_links_shmem_size(void);
extern void ticket_links_shmem_startup(void);
extern void ticket_links_store(TicketSlot *slot, const TicketItemLinks *links);
extern void ticket_links_read(TicketSlot *slot, TicketItemLinks *links);
extern bool ticket_links_equal(const TicketItemLinks *a, const TicketItemLinks *b);

/* slot_reclaim.c: giving slots of dropped items, databases, installations back */
extern void ticket_reclaim_init(void);
extern int	ticket_reclaim_dead_slots(void);

/* counter.c: lock-free counter operations on one slot */
extern bool counter_try_take(TicketSlot *slot, int64 qty);
extern void counter_add(TicketSlot *slot, int64 delta);
extern void counter_add_capacity(TicketSlot *slot, int64 delta);
extern int64 counter_available(TicketSlot *slot);
extern int64 counter_capacity(TicketSlot *slot);
extern bool counter_paused(TicketSlot *slot);
extern uint64 counter_pause_word(TicketSlot *slot);
extern uint32 counter_pause_reserve(TicketSlot *slot);
extern void counter_pause_write(TicketSlot *slot, uint32 version, bool paused);
extern void counter_pause_reset(TicketSlot *slot, bool paused);
extern bool counter_pause_correct(TicketSlot *slot, uint64 seen, bool paused);
extern bool counter_gate_enter(TicketSlot *slot);
extern void counter_gate_leave(TicketSlot *slot);
extern bool counter_freeze_idle(TicketSlot *slot);
extern bool counter_freeze(TicketSlot *slot);
extern void counter_thaw(TicketSlot *slot);
extern uint64 counter_gate_word(TicketSlot *slot);
extern uint64 counter_gate_open_count(TicketSlot *slot);
extern void counter_note_expiry(TicketSlot *slot, TimestampTz expires_at);
extern bool counter_set_next_expiry(TicketSlot *slot, TimestampTz seen,
									TimestampTz next);

/* catalog.c: where our tables are, who owns them, running SPI as owner */
typedef struct TicketSpiFrame
{
	Oid			save_userid;
	int			save_sec_context;
} TicketSpiFrame;

extern Oid	ticket_items_relid(bool missing_ok);
extern bool ticket_is_items_table(Oid relid);
extern bool ticket_schema_has_pools(void);
extern void ticket_lock_key(uint16 lock_class, uint64 key);
extern void ticket_unlock_key(uint16 lock_class, uint64 key);

/* lock classes of ticket_lock_key (pg_locks.objsubid) */
#define TICKET_LOCK_IDEMPOTENCY_KEY	7458	/* hash of (item, key) */
#define TICKET_LOCK_RESYNC			7459	/* item id */
#define TICKET_LOCK_HOLDER			7460	/* hash of the holder */
#define TICKET_LOCK_POOL_CONFIG		7461	/* 0: set_pools, one at a time */
#define TICKET_LOCK_ITEM_LINKS		7462	/* item id: its pools, its limit */
extern Oid	ticket_holds_relid(void);
extern Oid	ticket_hold_seq_relid(void);
extern void ticket_spi_begin(TicketSpiFrame *frame);
extern void ticket_spi_end(TicketSpiFrame *frame);
extern void ticket_as_owner_begin(TicketSpiFrame *frame);
extern void ticket_as_owner_end(TicketSpiFrame *frame);
extern SPIPlanPtr ticket_prepare(SPIPlanPtr *cache, const char *sql,
								 int nargs, Oid *argtypes);

/* hold_store.c: the hot-path INSERT */
extern int64 ticket_insert_hold(int64 item_id, int32 qty, text *holder,
								TimestampTz created_at, TimestampTz expires_at);
extern int	ticket_holder_holds(text *holder, int64 **item_ids, int32 **qtys);

/* loader.c: reading the truth from the tables */
typedef struct TicketItemTruth
{
	bool		found;
	int64		capacity;
	bool		paused;
	int64		taken;
	TimestampTz next_expiry;	/* earliest expires_at of a held hold */
	TicketItemLinks links;		/* pool_ids, holder_limit */
} TicketItemTruth;

extern TicketItemTruth ticket_read_truth(int64 item_id, bool committed_only);
extern TicketItemTruth ticket_read_truth_at(int64 item_id, Snapshot snapshot);
extern void ticket_links_from_array(Datum array, TicketItemLinks *links);
extern TicketSlot *ticket_slot_ready(int64 item_id, uint32 *incarnation);
extern int64 ticket_item_available(int64 item_id);
extern void ticket_error_unknown_item(int64 item_id) pg_attribute_noreturn();

/* xact.c: effects of the current transaction on counters */
typedef enum TicketEffectKind
{
	EFFECT_TAKEN,				/* tickets taken now; returned on abort */
	EFFECT_RETURN_AT_COMMIT,	/* release/expiry: returned at commit */
	EFFECT_CAPACITY_LOWERED,	/* applied now; undone on abort */
	EFFECT_CAPACITY_RAISED,		/* applied at commit */
	EFFECT_PAUSED,				/* applied now; undone on abort */
	EFFECT_RESUMED				/* applied at commit */
} TicketEffectKind;

extern void ticket_xact_init(void);
extern TicketSlot *ticket_join(int64 item_id);
extern bool ticket_take_all(TicketSlot **slots, int nslots, int64 qty,
							TimestampTz expires_at);
extern void ticket_record_effect(TicketSlot *slot, TicketEffectKind kind,
								 int64 amount);
extern void ticket_record_pause(TicketSlot *slot, bool pause, bool row_was_paused);
extern bool ticket_xact_joined_any(void);
extern void ticket_xact_note_locks(void);
extern bool ticket_xact_joined(TicketSlot *slot);
extern void ticket_leave_unused(TicketSlot *slot);
extern void ticket_xact_note_frozen(TicketSlot *slot);
extern void ticket_xact_note_thawed(TicketSlot *slot);
extern void ticket_xact_note_loading(TicketSlot *slot, TicketSlotState from);
extern void ticket_xact_note_loaded(void);

/* inflight.c: what open transactions did to counters, readable by others */
typedef struct TicketInflightItem
{
	uint32		slot_index;
	uint32		pause_version;	/* V of the last pause/resume call (rolled
								 * back ones included), 0: none */
	bool		paused_now;		/* the counter's paused flag as we left it */
	int64		avail_now;		/* applied already: takes, capacity lowered */
	int64		capacity_now;
	int64		avail_later;	/* applied at commit: returns, capacity raised */
	int64		capacity_later;
} TicketInflightItem;

/* What a reader found for one slot (ticket_inflight_scan). */
typedef struct TicketInflightSum
{
	bool		stable;			/* nobody was changing */
	bool		overflow_seen;	/* an open transaction joined too many items
								 * to describe them all */
	int			nmatched;		/* open transactions joined to the slot */
	int		   *procnos;		/* their backends (palloc'd, MaxBackends) */
	uint32	   *seqs;			/* ... change counters when read */
	TransactionId *xids;		/* ... xid if committing, else invalid */
	TicketInflightItem *items;	/* ... effects on the slot */
} TicketInflightSum;

/* What the counter must be, given the tables as seen by a snapshot. */
typedef struct TicketInflightAdjust
{
	int64		avail;			/* counter avail - tables' avail */
	int64		capacity;		/* counter capacity - tables' capacity */
	bool		pause_known;	/* an open transaction set the paused flag: */
	bool		paused;			/* ... to this */
	bool		ok;				/* false: more than one did (try again) */
} TicketInflightAdjust;

extern Size ticket_inflight_shmem_size(void);
extern void ticket_inflight_shmem_startup(void);
extern void ticket_inflight_join(TicketSlot *slot);
extern void ticket_inflight_unjoin_last(void);
extern void ticket_inflight_committing(void);
extern void ticket_inflight_change_begin(void);
extern void ticket_inflight_change_end(void);
extern void ticket_inflight_add(TicketSlot *slot, int64 avail_now, int64 capacity_now,
								int64 avail_later, int64 capacity_later);
extern void ticket_inflight_set_pause(TicketSlot *slot, uint32 version, bool paused_now);
extern void ticket_inflight_reset(void);
extern void ticket_inflight_scan(TicketSlot *slot, TicketInflightSum *sum);
extern bool ticket_inflight_unchanged(const TicketInflightSum *sum);
extern TicketInflightAdjust ticket_inflight_adjust(const TicketInflightSum *sum,
												   Snapshot snapshot, uint64 pause_word);
extern void ticket_inflight_free(TicketInflightSum *sum);
extern char *ticket_inflight_pids(TicketSlot *slot);

/* xact_frozen.c: slots frozen until the end of the transaction (set_pools,
 * set_holder_limit), and the links they get at commit */
extern bool ticket_frozen_by_me(TicketSlot *slot);
extern bool ticket_frozen_any(void);
extern bool ticket_freeze_until_end(TicketSlot *slot, uint32 incarnation, int64 item_id);
extern void ticket_links_at_commit(TicketSlot *slot, const TicketItemLinks *links);
extern void ticket_frozen_end(bool commit);
extern void ticket_frozen_abort_sub(SubTransactionId subid);
extern void ticket_frozen_commit_sub(SubTransactionId subid, SubTransactionId parent);

/* pools.c: an item and its pools, as the app functions use them */
typedef struct TicketDraw
{
	int			n;				/* the item, then its pools */
	int64		ids[1 + TICKET_MAX_POOLS];
	TicketSlot *slots[1 + TICKET_MAX_POOLS];
	TicketItemLinks links[1 + TICKET_MAX_POOLS];
} TicketDraw;

extern void ticket_join_draw(int64 item_id, TicketDraw *draw);
extern void ticket_return_draw(int64 item_id, int64 qty);
extern void ticket_check_draw_paused(const TicketDraw *draw);
extern void ticket_check_draw_installation(const TicketDraw *draw);
extern void ticket_peek_draw(int64 item_id, bool *limited, bool *frozen);

/* holder_limit.c: per-customer limits at reservation */
extern void ticket_check_holder_limits(const TicketDraw *draw, text *holder, int32 qty);
extern void ticket_lock_holder(text *holder);

/* stream_gate.c: no write before the event stream can see it */
extern void ticket_stream_gate(void);

/* guards.c: argument checks shared by the SQL functions */
extern void ticket_check_entry(void);
extern void ticket_wait_tick(void);
extern void ticket_check_writable(const char *what);
extern int64 ticket_arg_int64(FunctionCallInfo fcinfo, int argno, const char *name);
extern text *ticket_arg_text(FunctionCallInfo fcinfo, int argno, const char *name,
							 int maxlen);
extern void ticket_check_capacity(int64 capacity);
extern int64 ticket_arg_hold_id(FunctionCallInfo fcinfo, int argno);

/* items.c: walking the item list */
extern int64 *ticket_item_ids(bool all, int64 item_id, uint64 *count);
extern int64 ticket_preload_items(void);

/* expiry.c */
extern int64 *ticket_due_items(uint64 *count);
extern int64 ticket_expire_item(int64 item_id, int batch);
extern void ticket_refresh_expiry_hint(int64 item_id);


/* worker_connect.c: the background workers' connection to ticket_ext.database */
#define TICKET_WORKER_EXPIRY		0
#define TICKET_WORKER_STREAM(sink)	(1 + (sink))
extern Size worker_connect_shmem_size(void);
extern void worker_connect_shmem_startup(void);
extern void ticket_worker_connect(int worker);

/* guards.c: is this backend's database the one the workers serve? */
extern bool ticket_database_served(void);
extern void ticket_warn_if_unserved(void);

#endif							/* TICKET_EXT_H */
