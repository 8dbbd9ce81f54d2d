/*-------------------------------------------------------------------------
 *
 * pool_admin.c
 *	  ticket_ext.set_pools and ticket_ext.set_holder_limit.
 *
 * Both change what reservations of an item read from its links
 * (item_links.c), so both freeze the item until their transaction ends
 * (xact_frozen.c) and hand the new links over at commit.  set_pools is
 * refused while the item has active holds: its pools' counters then never
 * need to move, and a hold's pools are always its item's current ones.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(ticket_set_pools);
PG_FUNCTION_INFO_V1(ticket_set_holder_limit);

static SPIPlanPtr lock_item_plan = NULL;
static SPIPlanPtr pools_of_plan = NULL;
static SPIPlanPtr drawn_on_plan = NULL;
static SPIPlanPtr active_holds_plan = NULL;
static SPIPlanPtr set_pools_plan = NULL;
static SPIPlanPtr set_limit_plan = NULL;

#define LOCK_ITEM_SQL \
	"SELECT pool_ids, holder_limit FROM ticket_ext.items " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 FOR UPDATE"
/* the listed items that exist, and whether each draws on pools itself */
#define POOLS_OF_SQL \
	"SELECT item_id, pg_catalog.cardinality(pool_ids) OPERATOR(pg_catalog.>) 0 " \
	"  FROM ticket_ext.items WHERE item_id OPERATOR(pg_catalog.=) ANY ($1)"
/* an item drawing on $1 (which makes $1 a pool) */
#define DRAWN_ON_SQL \
	"SELECT item_id FROM ticket_ext.items " \
	" WHERE pool_ids OPERATOR(pg_catalog.@>) ARRAY[$1] ORDER BY item_id LIMIT 1"
#define ACTIVE_HOLDS_SQL \
	"SELECT pg_catalog.count(*) FROM ticket_ext.holds " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 AND ended_at IS NULL"
#define SET_POOLS_SQL \
	"UPDATE ticket_ext.items SET pool_ids = $2, updated_at = pg_catalog.now() " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 " \
	"RETURNING pool_ids, COALESCE(holder_limit, 0)"
#define SET_LIMIT_SQL \
	"UPDATE ticket_ext.items SET holder_limit = $2, updated_at = pg_catalog.now() " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 " \
	"RETURNING pool_ids, COALESCE(holder_limit, 0)"

/* Run a plan with the latest snapshot (checks must not use a stale one). */
static void
exec_latest(SPIPlanPtr plan, Datum *values, const char *nulls, long count)
{
	SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(), InvalidSnapshot,
						 false, false, count);
}

static void
require_pools_schema(void)
{
	ticket_check_entry();
	/* its own open effects would be waited for, forever */
	if (ticket_xact_joined_any())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot change pools or holder limits in a transaction that changed ticket_ext counters"),
				 errhint("Run ticket_ext.set_pools() and set_holder_limit() in a transaction of their own.")));
	if (!ticket_schema_has_pools())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pools and holder limits need ticket_ext 1.1"),
				 errhint("Run ALTER EXTENSION ticket_ext UPDATE.")));
}

/* Lock the item's row (waits for other admins of it); false: no such item. */
static bool
lock_item(int64 item_id, Datum *pool_ids, int32 *holder_limit)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(item_id)};
	bool		isnull;

	exec_latest(ticket_prepare(&lock_item_plan, LOCK_ITEM_SQL, 1, argtypes), values, NULL, 0);
	if (SPI_processed != 1)
		return false;
	*pool_ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*holder_limit = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		*holder_limit = 0;
	return true;
}

/*
 * Freeze a committed item until the end of the transaction; NULL for one
 * created in this transaction (nobody can sell it before it commits, and
 * its counters will load the committed row) or for none (the caller's
 * row lock then says it does not exist).  First the item's links lock:
 * one change of an item's links at a time, waited for like a row lock.
 */
/* The slot of a committed item; NULL for one created in this transaction. */
static TicketSlot *
committed_slot(int64 item_id, uint32 *incarnation)
{
	if (!ticket_read_truth(item_id, true).found)
		return NULL;
	return ticket_slot_ready(item_id, incarnation);
}

static TicketSlot *
freeze_item(int64 item_id)
{
	ticket_lock_key(TICKET_LOCK_ITEM_LINKS, (uint64) item_id);
	for (;;)
	{
		uint32		incarnation;
		TicketSlot *slot = committed_slot(item_id, &incarnation);

		if (slot == NULL || ticket_freeze_until_end(slot, incarnation, item_id))
			return slot;
	}
}

/*
 * Are the links the item's counters use (slot: NULL before its first
 * commit) already these?  Compared with shared memory, not only the row:
 * after a direct UPDATE of the row (verify shows it) the same call again
 * is what puts them right.
 */
static bool
links_in_force(TicketSlot *slot, const TicketItemLinks *links)
{
	TicketItemLinks current;

	if (slot == NULL)
		return false;
	ticket_links_read(slot, &current);
	return ticket_links_equal(&current, links);
}

/* Run an UPDATE ... RETURNING pool_ids, holder_limit; the links it made. */
static void
update_links(SPIPlanPtr *plan, const char *sql, Oid argtype, int64 item_id,
			 Datum value, bool isnull, TicketItemLinks *links)
{
	Oid			argtypes[2] = {INT8OID, argtype};
	Datum		values[2] = {Int64GetDatum(item_id), value};
	char		nulls[2] = {' ', isnull ? 'n' : ' '};
	bool		n;

	SPI_execute_plan(ticket_prepare(plan, sql, 2, argtypes), values, nulls, false, 0);
	/* a REPEATABLE READ snapshot from before the item was created */
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access to item " INT64_FORMAT " due to a concurrent change",
						item_id),
				 errhint("Retry the transaction.")));
	ticket_links_from_array(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &n),
							links);
	links->holder_limit = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &n));
}

/* The pool ids argument: no NULLs, no duplicates, not the item, at most 8. */
static void
check_pool_ids(int64 item_id, ArrayType *arr, int64 *ids, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			i;
	int			j;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pool_ids must be a one-dimensional array")));
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, n);
	if (*n > TICKET_MAX_POOLS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an item can draw on at most %d pools, not %d", TICKET_MAX_POOLS, *n)));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("pool_ids must not contain NULL")));
		ids[i] = DatumGetInt64(elems[i]);
		if (ids[i] == item_id)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("item " INT64_FORMAT " cannot draw on itself", item_id)));
		for (j = 0; j < i; j++)
			if (ids[j] == ids[i])
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("pool " INT64_FORMAT " is listed twice", ids[i])));
	}
}

/* Pools exist and draw on nothing; the item is nobody's pool (one level). */
static void
check_one_level(int64 item_id, Datum pool_array, const int64 *ids, int n)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	Oid			id_type[1] = {INT8OID};
	Datum		values[1] = {pool_array};
	Datum		item[1] = {Int64GetDatum(item_id)};
	bool		isnull;
	uint64		r;
	int			i;

	if (n == 0)
		return;
	exec_latest(ticket_prepare(&pools_of_plan, POOLS_OF_SQL, 1, argtypes), values, NULL, 0);
	for (i = 0; i < n; i++)
	{
		bool		found = false;

		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];

			if (DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)) != ids[i])
				continue;
			found = true;
			if (DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item " INT64_FORMAT " draws on pools itself and cannot be a pool",
								ids[i]),
						 errdetail("Pools are one level deep: a pool draws on no pool.")));
		}
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("pool item " INT64_FORMAT " does not exist", ids[i]),
					 errhint("Create it with ticket_ext.create_item().")));
	}
	exec_latest(ticket_prepare(&drawn_on_plan, DRAWN_ON_SQL, 1, id_type), item, NULL, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("item " INT64_FORMAT " is a pool of item " INT64_FORMAT " and cannot draw on pools",
						item_id, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull))),
				 errdetail("Pools are one level deep (this also rules out cycles).")));
}

/* The item's active holds, committed or ours, once nobody else is open on it. */
static int64
active_holds(int64 item_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(item_id)};
	bool		isnull;

	exec_latest(ticket_prepare(&active_holds_plan, ACTIVE_HOLDS_SQL, 1, argtypes), values, NULL, 0);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static void pg_attribute_noreturn()
error_active_holds(int64 item_id, int64 holds)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot change the pools of item " INT64_FORMAT ": it has " INT64_FORMAT " active holds",
					item_id, holds),
			 errdetail("A hold's tickets were taken from the pools the item had then."),
			 errhint("Set pools before the item's sale starts, or sell the new combination as a new item.")));
}

/* The pools as stored: a plain array from 1 ('[0:1]={..}' is not kept). */
static Datum
pool_array(const int64 *ids, int n)
{
	Datum		elems[TICKET_MAX_POOLS];
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/* ticket_ext.set_pools(item_id, pool_ids) */
Datum
ticket_set_pools(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");
	ArrayType  *arr;
	int64		ids[TICKET_MAX_POOLS];
	int			n;
	TicketSpiFrame frame;
	Datum		old_pools;
	int32		old_limit;
	TicketItemLinks old;
	TicketItemLinks links;
	TicketSlot *slot;
	uint32		incarnation;
	int64		holds;
	TicketItemTruth truth;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pool_ids must not be NULL"),
				 errhint("Pass '{}' to remove the item's pools.")));
	arr = PG_GETARG_ARRAYTYPE_P(1);
	require_pools_schema();
	ticket_check_writable("change pools");
	check_pool_ids(item_id, arr, ids, &n);

	/* one change of pools at a time: the one-level check must stay true */
	ticket_lock_key(TICKET_LOCK_POOL_CONFIG, 0);
	ticket_spi_begin(&frame);

	/* what can be told before the item's sales are held is told first */
	truth = ticket_read_truth(item_id, false);
	if (!truth.found)
		ticket_error_unknown_item(item_id);
	links = truth.links;
	links.npools = n;
	memcpy(links.pool_ids, ids, n * sizeof(int64));
	if (ticket_links_equal(&truth.links, &links) &&
		links_in_force(committed_slot(item_id, &incarnation), &links))
	{
		ticket_spi_end(&frame);
		PG_RETURN_VOID();		/* nothing changes */
	}
	check_one_level(item_id, PointerGetDatum(arr), ids, n);
	if ((holds = active_holds(item_id)) > 0)
		error_active_holds(item_id, holds);

	slot = freeze_item(item_id);
	if (!lock_item(item_id, &old_pools, &old_limit))
		ticket_error_unknown_item(item_id);
	ticket_links_from_array(old_pools, &old);
	if (ticket_links_equal(&old, &links) && links_in_force(slot, &links))
	{
		ticket_spi_end(&frame);
		PG_RETURN_VOID();
	}
	/* nobody is open on it now: what the latest snapshot shows is all */
	holds = active_holds(item_id);
	if (holds > 0)
		error_active_holds(item_id, holds);
	update_links(&set_pools_plan, SET_POOLS_SQL, INT8ARRAYOID, item_id,
				 pool_array(ids, n), false, &links);
	ticket_spi_end(&frame);
	if (slot != NULL)
		ticket_links_at_commit(slot, &links);
	PG_RETURN_VOID();
}

/* The links the item has with this limit (its pools from the locked row). */
static TicketItemLinks
truth_links_with_limit(Datum pool_ids, int32 limit)
{
	TicketItemLinks links;

	ticket_links_from_array(pool_ids, &links);
	links.holder_limit = limit;
	return links;
}

/* ticket_ext.set_holder_limit(item_id, max_qty) -> the previous limit */
Datum
ticket_set_holder_limit(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");
	bool		remove = PG_ARGISNULL(1);
	int32		max_qty = remove ? 0 : PG_GETARG_INT32(1);
	TicketSpiFrame frame;
	Datum		old_pools;
	int32		old_limit;
	TicketItemLinks links;
	TicketSlot *slot;

	if (!remove && max_qty <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_qty must be positive, not %d", max_qty),
				 errhint("NULL removes the limit.")));
	require_pools_schema();
	ticket_check_writable("change holder limits");

	ticket_spi_begin(&frame);
	slot = freeze_item(item_id);
	if (!lock_item(item_id, &old_pools, &old_limit))
		ticket_error_unknown_item(item_id);
	links = truth_links_with_limit(old_pools, max_qty);
	if (old_limit != max_qty || !links_in_force(slot, &links))
	{
		update_links(&set_limit_plan, SET_LIMIT_SQL, INT4OID, item_id,
					 Int32GetDatum(max_qty), remove, &links);
		if (slot != NULL)
			ticket_links_at_commit(slot, &links);
	}
	ticket_spi_end(&frame);
	if (old_limit == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(old_limit);
}
