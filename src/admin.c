/*-------------------------------------------------------------------------
 *
 * admin.c
 *	  Item administration: create_item, set_capacity, pause, resume.
 *
 * Each change updates the items row (its row lock serializes concurrent
 * admin calls on one item) and records a counter effect: decreases of
 * availability apply at once, increases at commit (see xact.c).
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(ticket_create_item);
PG_FUNCTION_INFO_V1(ticket_set_capacity);
PG_FUNCTION_INFO_V1(ticket_pause);
PG_FUNCTION_INFO_V1(ticket_resume);

static SPIPlanPtr create_plan = NULL;
static SPIPlanPtr lock_item_plan = NULL;
static SPIPlanPtr set_capacity_plan = NULL;
static SPIPlanPtr set_paused_plan = NULL;

#define CREATE_SQL \
	"INSERT INTO ticket_ext.items (item_id, capacity, name) VALUES ($1, $2, $3) " \
	"ON CONFLICT (item_id) DO NOTHING"
#define LOCK_ITEM_SQL \
	"SELECT capacity, paused FROM ticket_ext.items " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 FOR UPDATE"
#define SET_CAPACITY_SQL \
	"UPDATE ticket_ext.items SET capacity = $2, updated_at = pg_catalog.now() " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1"
#define SET_PAUSED_SQL \
	"UPDATE ticket_ext.items SET paused = $2, updated_at = pg_catalog.now() " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1"

/* ticket_ext.create_item(item_id, capacity, name) */
Datum
ticket_create_item(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");
	int64		capacity = ticket_arg_int64(fcinfo, 1, "capacity");
	text	   *name = ticket_arg_text(fcinfo, 2, "name", TICKET_MAX_NAME_LEN);
	TicketSpiFrame frame;
	Oid			argtypes[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(item_id), Int64GetDatum(capacity),
	PointerGetDatum(name)};
	char		nulls[3] = {' ', ' ', name ? ' ' : 'n'};

	ticket_check_capacity(capacity);
	ticket_check_entry();
	ticket_check_writable("create items");
	ticket_warn_if_unserved();

	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&create_plan, CREATE_SQL, 3, argtypes),
					 values, nulls, false, 0);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("item " INT64_FORMAT " already exists", item_id),
				 errhint("Use ticket_ext.set_capacity() to change its capacity.")));
	ticket_spi_end(&frame);

	/* counters are loaded from the table on first use, after commit */
	PG_RETURN_VOID();
}

/*
 * The common part of set_capacity, pause and resume: join the item, lock
 * its row (waiting for other admin changes), read the values it had, run
 * the update.  Returns the item's slot.
 */
static TicketSlot *
update_item(int64 item_id, SPIPlanPtr *plan, const char *sql, Oid argtype,
			Datum value, int64 *old_capacity, bool *was_paused)
{
	TicketSlot *slot = ticket_join(item_id);
	TicketSpiFrame frame;
	Oid			lock_types[1] = {INT8OID};
	Oid			update_types[2] = {INT8OID, argtype};
	Datum		values[2] = {Int64GetDatum(item_id), value};
	bool		isnull;

	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&lock_item_plan, LOCK_ITEM_SQL, 1, lock_types),
					 values, NULL, false, 0);
	if (SPI_processed != 1)
		ticket_error_unknown_item(item_id);
	*old_capacity = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	*was_paused = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 2, &isnull));
	SPI_execute_plan(ticket_prepare(plan, sql, 2, update_types), values, NULL, false, 0);
	ticket_spi_end(&frame);
	return slot;
}

/*
 * ticket_ext.set_capacity(item_id, capacity): online.  Lowering takes
 * effect at once (below what is taken it stops sales, it never cancels
 * any); raising takes effect at commit.  Returns the previous capacity.
 */
Datum
ticket_set_capacity(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");
	int64		capacity = ticket_arg_int64(fcinfo, 1, "capacity");
	TicketSlot *slot;
	int64		old_capacity;
	bool		paused;

	ticket_check_capacity(capacity);
	ticket_check_entry();
	ticket_check_writable("change capacity");

	slot = update_item(item_id, &set_capacity_plan, SET_CAPACITY_SQL, INT8OID,
					   Int64GetDatum(capacity), &old_capacity, &paused);
	if (capacity < old_capacity)
		ticket_record_effect(slot, EFFECT_CAPACITY_LOWERED, old_capacity - capacity);
	else if (capacity > old_capacity)
		ticket_record_effect(slot, EFFECT_CAPACITY_RAISED, capacity - old_capacity);
	PG_RETURN_INT64(old_capacity);
}

/*
 * pause (stop at once, undone on abort) or resume (at commit); either may
 * be applied after the end of this transaction is visible, so it is
 * versioned: the counter ends equal to the last committed row.
 */
static void
set_paused(FunctionCallInfo fcinfo, bool pause)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");
	TicketSlot *slot;
	int64		capacity;
	bool		was_paused;

	ticket_check_entry();
	ticket_check_writable(pause ? "pause sales" : "resume sales");

	/* the pause version is taken under the row lock (see counter.c) */
	slot = update_item(item_id, &set_paused_plan, SET_PAUSED_SQL, BOOLOID,
					   BoolGetDatum(pause), &capacity, &was_paused);
	ticket_record_pause(slot, pause, was_paused);
}

Datum
ticket_pause(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, true);
	PG_RETURN_VOID();
}

Datum
ticket_resume(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, false);
	PG_RETURN_VOID();
}
