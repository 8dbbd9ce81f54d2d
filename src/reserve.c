/*-------------------------------------------------------------------------
 *
 * reserve.c
 *	  The app-facing SQL functions: ticket_reserve, ticket_confirm,
 *	  ticket_release, ticket_available.
 *
 * ticket_reserve takes tickets from the item's shared counter with one
 * compare-and-swap and writes the hold row in the caller's transaction;
 * xact.c gives the tickets back if that transaction or savepoint aborts.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ticket_reserve);
PG_FUNCTION_INFO_V1(ticket_confirm);
PG_FUNCTION_INFO_V1(ticket_release);
PG_FUNCTION_INFO_V1(ticket_available);

static SPIPlanPtr insert_idem_plan = NULL;
static SPIPlanPtr find_idem_plan = NULL;
static SPIPlanPtr confirm_plan = NULL;
static SPIPlanPtr release_plan = NULL;
static SPIPlanPtr hold_state_plan = NULL;

#define INSERT_COLUMNS \
	"INSERT INTO ticket_ext.holds (item_id, qty, holder, idempotency_key, expires_at) " \
	"VALUES ($1, $2, $3, $4, pg_catalog.now() OPERATOR(pg_catalog.+) $5) "
#define INSERT_IDEM_SQL INSERT_COLUMNS \
	"ON CONFLICT (item_id, idempotency_key) WHERE idempotency_key IS NOT NULL " \
	"DO NOTHING RETURNING hold_id, expires_at"
#define FIND_IDEM_SQL \
	"SELECT hold_id, qty FROM ticket_ext.holds " \
	" WHERE item_id OPERATOR(pg_catalog.=) $1 " \
	"   AND idempotency_key OPERATOR(pg_catalog.=) $2"
#define CONFIRM_SQL \
	"UPDATE ticket_ext.holds SET status = 'sold', confirmed_at = pg_catalog.clock_timestamp() " \
	" WHERE hold_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'held' " \
	"   AND expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() " \
	"RETURNING item_id"
#define RELEASE_SQL \
	"UPDATE ticket_ext.holds SET status = 'released', ended_at = pg_catalog.clock_timestamp() " \
	" WHERE hold_id OPERATOR(pg_catalog.=) $1 " \
	"   AND status OPERATOR(pg_catalog.=) ANY ('{held,sold}'::pg_catalog.text[]) " \
	"RETURNING item_id, qty"
#define HOLD_STATE_SQL \
	"SELECT status, expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() " \
	"  FROM ticket_ext.holds WHERE hold_id OPERATOR(pg_catalog.=) $1"

/* The hold's duration: hold_for, or ticket_ext.hold_ttl when NULL. */
static Datum
hold_interval(FunctionCallInfo fcinfo, int argno)
{
	Interval   *itv;
	Interval	limit = {0};
	Interval	zero = {0};

	limit.time = (int64) ticket_max_hold_ttl_s * USECS_PER_SEC;
	if (PG_ARGISNULL(argno))
	{
		itv = palloc0(sizeof(Interval));
		itv->time = (int64) Min(ticket_hold_ttl_s, ticket_max_hold_ttl_s) * USECS_PER_SEC;
		return IntervalPGetDatum(itv);
	}
	itv = PG_GETARG_INTERVAL_P(argno);
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(itv),
										  IntervalPGetDatum(&zero))) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(itv),
										  IntervalPGetDatum(&limit))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold_for must be positive and at most %d seconds",
						ticket_max_hold_ttl_s),
				 errhint("The limit is ticket_ext.max_hold_ttl.")));
	return IntervalPGetDatum(itv);
}

/* An existing hold for (item, idempotency key), or 0. */
static int64
find_idempotent_hold(int64 item_id, text *key, int32 qty)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(item_id), PointerGetDatum(key)};
	int64		hold_id = 0;
	bool		isnull;

	SPI_execute_plan(ticket_prepare(&find_idem_plan, FIND_IDEM_SQL, 2, argtypes),
					 values, NULL, false, 1);
	if (SPI_processed == 1)
	{
		int32		held_qty;

		hold_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
		held_qty = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
		if (held_qty != qty)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key was already used for hold " INT64_FORMAT
							" with qty %d, not %d", hold_id, held_qty, qty),
					 errhint("Use a new idempotency key for a different order.")));
	}
	return hold_id;
}

/*
 * Insert a hold with an idempotency key (inside an SPI frame).  If a
 * concurrent call with the same key committed first, give the tickets
 * back and return that call's hold.
 */
static int64
insert_idempotent_hold(TicketSlot *slot, int64 item_id, int32 qty, text *holder,
					   text *key, Datum hold_for, TimestampTz *expires_at)
{
	Oid			argtypes[5] = {INT8OID, INT4OID, TEXTOID, TEXTOID, INTERVALOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int64		hold_id;
	bool		isnull;

	values[0] = Int64GetDatum(item_id);
	values[1] = Int32GetDatum(qty);
	values[2] = PointerGetDatum(holder);
	nulls[2] = holder ? ' ' : 'n';
	values[3] = PointerGetDatum(key);
	values[4] = hold_for;
	SPI_execute_plan(ticket_prepare(&insert_idem_plan, INSERT_IDEM_SQL, 5, argtypes),
					 values, nulls, false, 1);
	if (SPI_processed == 1)
	{
		*expires_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 2, &isnull));
		return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	}

	ticket_undo_last_take(slot, qty);
	hold_id = find_idempotent_hold(item_id, key, qty);
	if (hold_id == 0)
		elog(ERROR, "ticket_ext: idempotency key conflict without a visible hold");
	return hold_id;
}

/*
 * ticket_reserve(item_id, qty, holder, hold_for, idempotency_key)
 *	  -> hold id, or NULL when fewer than qty tickets are left.
 */
Datum
ticket_reserve(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");
	int32		qty;
	text	   *holder = ticket_arg_text(fcinfo, 2, "holder", TICKET_MAX_HOLDER_LEN);
	text	   *key = ticket_arg_text(fcinfo, 4, "idempotency_key",
									  TICKET_MAX_IDEMPOTENCY_KEY_LEN);
	Datum		hold_for;
	TicketSlot *slot;
	TicketSpiFrame frame;
	int64		hold_id = 0;
	TimestampTz expires_at = DT_NOEND;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("qty must not be NULL")));
	qty = PG_GETARG_INT32(1);
	if (qty <= 0 || qty > ticket_max_per_order)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("qty must be between 1 and %d, not %d", ticket_max_per_order, qty),
				 errhint("The upper limit is ticket_ext.max_per_order.")));
	hold_for = hold_interval(fcinfo, 3);
	ticket_require_shmem();
	ticket_check_writable("reserve tickets");

	slot = ticket_slot_ready(item_id);

	/* a retried call with the same key gets the same hold back */
	if (key != NULL)
	{
		ticket_spi_begin(&frame);
		hold_id = find_idempotent_hold(item_id, key, qty);
	}

	if (hold_id == 0)
	{
		if (pg_atomic_read_u32(&slot->paused))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("sales of item " INT64_FORMAT " are paused", item_id),
					 errhint("An administrator can resume them with ticket_ext.resume().")));

		ticket_join_item(slot);
		if (!counter_try_take(slot, qty))
		{
			if (key != NULL)
				ticket_spi_end(&frame);
			PG_RETURN_NULL();	/* sold out: the normal answer under load */
		}
		ticket_record_effect(slot, EFFECT_TAKEN, qty);

		if (key == NULL)
			hold_id = ticket_insert_hold(item_id, qty, holder, hold_for, &expires_at);
		else
			hold_id = insert_idempotent_hold(slot, item_id, qty, holder, key,
											 hold_for, &expires_at);
		/* tell the expiry worker; row first, so it cannot miss the hold */
		counter_note_expiry(slot, expires_at);
	}
	if (key != NULL)
		ticket_spi_end(&frame);
	PG_RETURN_INT64(hold_id);
}

/* Run a one-parameter statement on a hold (inside an SPI frame). */
static uint64
exec_on_hold(SPIPlanPtr *plan, const char *sql, int64 hold_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(hold_id)};

	SPI_execute_plan(ticket_prepare(plan, sql, 1, argtypes), values, NULL, false, 1);
	return SPI_processed;
}

/* Why a hold could not be confirmed or released: raise the right error. */
static void
explain_hold_state(int64 hold_id, const char *action, bool *already_sold)
{
	bool		isnull;
	char	   *status;
	bool		timed_out;

	*already_sold = false;
	if (exec_on_hold(&hold_state_plan, HOLD_STATE_SQL, hold_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("hold " INT64_FORMAT " does not exist", hold_id)));
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	timed_out = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 2, &isnull));
	if (strcmp(status, "sold") == 0)
	{
		*already_sold = true;
		return;
	}
	if (strcmp(status, "released") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s hold " INT64_FORMAT ": it was released", action, hold_id)));
	if (strcmp(status, "expired") == 0 || timed_out)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s hold " INT64_FORMAT ": it has expired", action, hold_id),
				 errhint("Reserve again with ticket_reserve().")));
	elog(ERROR, "ticket_ext: hold " INT64_FORMAT " is in unexpected state \"%s\"",
		 hold_id, status);
}

/*
 * ticket_confirm(hold_id) -> true when the hold became a sale, false when
 * it was already sold (confirming twice is a no-op).
 */
Datum
ticket_confirm(PG_FUNCTION_ARGS)
{
	int64		hold_id = ticket_arg_hold_id(fcinfo, 0);
	TicketSpiFrame frame;
	bool		confirmed;

	ticket_require_shmem();
	ticket_check_writable("confirm tickets");
	ticket_spi_begin(&frame);
	confirmed = exec_on_hold(&confirm_plan, CONFIRM_SQL, hold_id) == 1;
	if (!confirmed)
	{
		bool		already_sold;

		explain_hold_state(hold_id, "confirm", &already_sold);
	}
	ticket_spi_end(&frame);
	PG_RETURN_BOOL(confirmed);
}

/*
 * ticket_release(hold_id): give a held or sold hold's tickets back.  They
 * return to the pool when this transaction commits.
 */
Datum
ticket_release(PG_FUNCTION_ARGS)
{
	int64		hold_id = ticket_arg_hold_id(fcinfo, 0);
	TicketSpiFrame frame;
	bool		isnull;
	int64		item_id;
	int32		qty;
	TicketSlot *slot;

	ticket_require_shmem();
	ticket_check_writable("release tickets");
	ticket_spi_begin(&frame);
	if (exec_on_hold(&release_plan, RELEASE_SQL, hold_id) != 1)
	{
		bool		already_sold;

		explain_hold_state(hold_id, "release", &already_sold);
		elog(ERROR, "ticket_ext: hold " INT64_FORMAT " could not be released", hold_id);
	}
	item_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	qty = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 2, &isnull));
	ticket_spi_end(&frame);

	slot = ticket_slot_ready(item_id);
	ticket_join_item(slot);
	ticket_record_effect(slot, EFFECT_RETURN_AT_COMMIT, qty);
	PG_RETURN_VOID();
}

/* ticket_available(item_id): tickets left, from shared memory. */
Datum
ticket_available(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");

	ticket_require_shmem();
	PG_RETURN_INT64(ticket_item_available(item_id));
}
