/*-------------------------------------------------------------------------
 *
 * hold_store.c
 *	  Writing a new hold row straight through the executor's simple
 *	  insert path (the one logical replication's apply worker uses), and
 *	  reading one holder's active holds straight from their index.
 *
 * ticket_reserve is the hot path: planning-free insertion saves the cost
 * of a second statement inside the caller's statement.  The row still goes
 * through ExecSimpleRelationInsert, so indexes, constraints, triggers and
 * WAL (hence logical decoding) see an ordinary INSERT.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* Column positions of ticket_ext.holds, looked up by name once per table. */
typedef struct HoldColumns
{
	Oid			relid;
	AttrNumber	hold_id;
	AttrNumber	item_id;
	AttrNumber	qty;
	AttrNumber	status;
	AttrNumber	holder;
	AttrNumber	created_at;
	AttrNumber	expires_at;
	AttrNumber	ended_at;
	Oid			holder_index;	/* holds_holder_idx, InvalidOid before 1.1 */
} HoldColumns;

static HoldColumns cols;

static AttrNumber
column(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table ticket_ext.holds has no column \"%s\"", name),
				 errhint("Reinstall the extension: DROP EXTENSION ticket_ext; CREATE EXTENSION ticket_ext.")));
	return attnum;
}

static void
lookup_columns(Oid relid)
{
	if (cols.relid == relid)
		return;
	cols.hold_id = column(relid, "hold_id");
	cols.item_id = column(relid, "item_id");
	cols.qty = column(relid, "qty");
	cols.status = column(relid, "status");
	cols.holder = column(relid, "holder");
	cols.created_at = column(relid, "created_at");
	cols.expires_at = column(relid, "expires_at");
	cols.ended_at = column(relid, "ended_at");
	cols.holder_index = get_relname_relid("holds_holder_idx", get_rel_namespace(relid));
	cols.relid = relid;
}

/*
 * Insert a 'held' row without idempotency key and return its hold_id.
 * Columns not set here are NULL (confirmed_at, ended_at, idempotency_key).
 * created_at is the clock time the tickets were taken at, and expires_at
 * counts from it, not from the start of the transaction.
 */
int64
ticket_insert_hold(int64 item_id, int32 qty, text *holder,
				   TimestampTz created_at, TimestampTz expires_at)
{
	Oid			relid = ticket_holds_relid();
	Relation	rel;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	int64		hold_id;
	int			i;

	lookup_columns(relid);
	rel = table_open(relid, RowExclusiveLock);

	estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(rri, false);
	AfterTriggerBeginQuery();

	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	ExecClearTuple(slot);
	for (i = 0; i < slot->tts_tupleDescriptor->natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
	hold_id = nextval_internal(ticket_hold_seq_relid(), false);

#define SET(attnum, datum) \
	do { slot->tts_values[(attnum) - 1] = (datum); \
		 slot->tts_isnull[(attnum) - 1] = false; } while (0)
	SET(cols.hold_id, Int64GetDatum(hold_id));
	SET(cols.item_id, Int64GetDatum(item_id));
	SET(cols.qty, Int32GetDatum(qty));
	SET(cols.status, CStringGetTextDatum("held"));
	if (holder != NULL)
		SET(cols.holder, PointerGetDatum(holder));
	SET(cols.created_at, TimestampTzGetDatum(created_at));
	SET(cols.expires_at, TimestampTzGetDatum(expires_at));
#undef SET
	ExecStoreVirtualTuple(slot);

	ExecSimpleRelationInsert(rri, estate, slot);

	AfterTriggerEndQuery(estate);
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return hold_id;
}

/*
 * The item ids and qty of a holder's active holds as the latest snapshot
 * sees them (palloc'd arrays; returns how many).  An index scan of
 * holds_holder_idx without SPI: the per-customer limit check runs it at
 * every reservation of a limited item, where a planned statement cost
 * most of the check.
 */
int
ticket_holder_holds(text *holder, int64 **item_ids, int32 **qtys)
{
	Oid			relid = ticket_holds_relid();
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	ScanKeyData key;
	Snapshot	snapshot;
	HeapTuple	tup;
	int			n = 0;
	int			cap = 8;

	lookup_columns(relid);
	if (!OidIsValid(cols.holder_index))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("per-customer limits need ticket_ext 1.1"),
				 errhint("Run ALTER EXTENSION ticket_ext UPDATE.")));
	*item_ids = palloc(cap * sizeof(int64));
	*qtys = palloc(cap * sizeof(int32));
	rel = table_open(relid, AccessShareLock);
	index = index_open(cols.holder_index, AccessShareLock);
	/* the index's own collation: its order is what the search follows */
	ScanKeyEntryInitialize(&key, 0, cols.holder, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(holder));
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, cols.holder_index, true, snapshot, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;

		(void) heap_getattr(tup, cols.ended_at, RelationGetDescr(rel), &isnull);
		if (!isnull)
			continue;			/* ended (released, expired) */
		if (n == cap)
		{
			cap *= 2;
			*item_ids = repalloc(*item_ids, cap * sizeof(int64));
			*qtys = repalloc(*qtys, cap * sizeof(int32));
		}
		(*item_ids)[n] = DatumGetInt64(heap_getattr(tup, cols.item_id, RelationGetDescr(rel), &isnull));
		(*qtys)[n] = DatumGetInt32(heap_getattr(tup, cols.qty, RelationGetDescr(rel), &isnull));
		n++;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return n;
}

