/*-------------------------------------------------------------------------
 *
 * reserve.c
 *	  The app-facing SQL functions: ticket_reserve, ticket_confirm,
 *	  ticket_release, ticket_available.
 *
 * ticket_reserve takes tickets from the item's shared counter (and its
 * pools' counters: pools.c) with one compare-and-swap each and writes the
 * hold row in the caller's transaction;
 * xact.c gives the tickets back if that transaction or savepoint aborts.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"
#include "ticket_errcodes.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
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

#define INSERT_IDEM_SQL \
	"INSERT INTO ticket_ext.holds (item_id, qty, holder, idempotency_key, created_at, expires_at) " \
	"VALUES ($1, $2, $3, $4, $5, $6) " \
	"ON CONFLICT (item_id, idempotency_key) WHERE idempotency_key IS NOT NULL " \
	"DO NOTHING RETURNING hold_id"
#define FIND_IDEM_SQL \
	"SELECT hold_id, qty, holder FROM ticket_ext.holds " \
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
	"SELECT status, expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(), holder " \
	"  FROM ticket_ext.holds WHERE hold_id OPERATOR(pg_catalog.=) $1"

/* A confirm/release whose hold keeps changing under it gives up after this. */
#define HOLD_UPDATE_TRIES		3

/*
 * The hold's duration in microseconds: hold_for, or ticket_ext.hold_ttl
 * when NULL.  A duration, not calendar arithmetic: a day is 24 hours and
 * a month 30 days (as interval comparison counts them), so the limit that
 * is checked is the time the hold lasts, whatever the months, days and
 * time zone ('1200 months -35999 days' is one day).
 */
static int64
hold_duration(FunctionCallInfo fcinfo, int argno)
{
	Interval   *itv;
	int64		usecs;
	int64		days;

	/* the setting obeys the same limit as the argument (no silent cap) */
	if (PG_ARGISNULL(argno))
	{
		if (ticket_hold_ttl_s > ticket_max_hold_ttl_s)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ticket_ext.hold_ttl (%d seconds) is above ticket_ext.max_hold_ttl (%d seconds)",
							ticket_hold_ttl_s, ticket_max_hold_ttl_s),
					 errhint("Lower ticket_ext.hold_ttl or pass hold_for.")));
		return (int64) ticket_hold_ttl_s * USECS_PER_SEC;
	}
	itv = PG_GETARG_INTERVAL_P(argno);
	if (pg_mul_s64_overflow((int64) itv->month, DAYS_PER_MONTH, &days) ||
		pg_add_s64_overflow(days, (int64) itv->day, &days) ||
		pg_mul_s64_overflow(days, USECS_PER_DAY, &usecs) ||
		pg_add_s64_overflow(usecs, itv->time, &usecs) ||
		usecs <= 0 || usecs > (int64) ticket_max_hold_ttl_s * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hold_for must be positive and at most %d seconds",
						ticket_max_hold_ttl_s),
				 errhint("The limit is ticket_ext.max_hold_ttl.")));
	return usecs;
}

/* Is a hold's holder (a C string or NULL) the given one (NULL: none)? */
static bool
holder_matches(const char *held_by, text *holder)
{
	if (held_by == NULL || holder == NULL)
		return held_by == NULL && holder == NULL;
	return strlen(held_by) == VARSIZE_ANY_EXHDR(holder) &&
		memcmp(held_by, VARDATA_ANY(holder), VARSIZE_ANY_EXHDR(holder)) == 0;
}

/*
 * An existing hold for (item, idempotency key) seen by snapshot (NULL: the
 * statement's own), or 0.  A key names one order of one item: the same
 * call again gets that hold back (whatever became of it since); another
 * quantity or another holder is another order, refused.
 */
static int64
find_idempotent_hold(int64 item_id, text *key, int32 qty, text *holder,
					 Snapshot snapshot)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(item_id), PointerGetDatum(key)};
	SPIPlanPtr	plan = ticket_prepare(&find_idem_plan, FIND_IDEM_SQL, 2, argtypes);
	int64		hold_id = 0;
	bool		isnull;

	if (snapshot != NULL)
		SPI_execute_snapshot(plan, values, NULL, snapshot, InvalidSnapshot,
							 true, false, 1);
	else
		SPI_execute_plan(plan, values, NULL, false, 1);
	if (SPI_processed == 1)
	{
		int32		held_qty;
		char	   *held_by;

		hold_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
		held_qty = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
		held_by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
		/* another holder's order: say nothing about it */
		if (!holder_matches(held_by, holder))
			ereport(ERROR,
					(errcode(ERRCODE_TICKET_IDEMPOTENCY_KEY_REUSED),
					 errmsg("idempotency key was already used for another order"),
					 errhint("Use a new idempotency key for a different order.")));
		if (held_qty != qty)
			ereport(ERROR,
					(errcode(ERRCODE_TICKET_IDEMPOTENCY_KEY_REUSED),
					 errmsg("idempotency key was already used for hold " INT64_FORMAT
							" with qty %d, not %d", hold_id, held_qty, qty),
					 errhint("Use a new idempotency key for a different order.")));
	}
	return hold_id;
}

/*
 * Calls with the same (item, idempotency key) run one at a time: this lock
 * (held to the end of the transaction) makes a retry wait for a first call
 * that has not committed yet, instead of finding no hold and answering
 * "sold out" or "paused" for an order that did get its tickets.  Then the
 * hold of a call that committed meanwhile: a REPEATABLE READ snapshot
 * cannot see it, which is a serialization failure (retry the transaction).
 */
static int64
serialize_idempotent_call(int64 item_id, text *key, int32 qty, text *holder)
{
	int64		hold_id;

	ticket_lock_key(TICKET_LOCK_IDEMPOTENCY_KEY,
					hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
										VARSIZE_ANY_EXHDR(key), (uint64) item_id));

	hold_id = find_idempotent_hold(item_id, key, qty, holder, NULL);
	if (hold_id == 0 && IsolationUsesXactSnapshot() &&
		find_idempotent_hold(item_id, key, qty, holder, GetLatestSnapshot()) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent reservation with the same idempotency key"),
				 errhint("Retry the transaction: it will return that reservation.")));
	return hold_id;
}

/*
 * Insert a hold with an idempotency key (inside an SPI frame; the key's
 * lock is held, so no other call can have inserted it meanwhile).
 */
static int64
insert_idempotent_hold(int64 item_id, int32 qty, text *holder, text *key,
					   TimestampTz created_at, TimestampTz expires_at)
{
	Oid			argtypes[6] = {INT8OID, INT4OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	values[0] = Int64GetDatum(item_id);
	values[1] = Int32GetDatum(qty);
	values[2] = PointerGetDatum(holder);
	nulls[2] = holder ? ' ' : 'n';
	values[3] = PointerGetDatum(key);
	values[4] = TimestampTzGetDatum(created_at);
	values[5] = TimestampTzGetDatum(expires_at);
	SPI_execute_plan(ticket_prepare(&insert_idem_plan, INSERT_IDEM_SQL, 6, argtypes),
					 values, nulls, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent reservation with the same idempotency key"),
				 errhint("Retry the transaction.")));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
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
	int64		hold_for;
	TicketDraw	draw;
	TicketSpiFrame frame;
	int64		hold_id = 0;
	TimestampTz created_at;
	TimestampTz expires_at;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("qty must not be NULL")));
	qty = PG_GETARG_INT32(1);
	ticket_check_entry();
	ticket_check_writable("reserve tickets");
	ticket_warn_if_unserved();

	/* a retried call with the same key gets the same hold back */
	if (key != NULL)
	{
		ticket_spi_begin(&frame);
		hold_id = serialize_idempotent_call(item_id, key, qty, holder);
	}

	if (hold_id == 0)
	{
		/* limits apply to new holds: a retry gets its hold even if they changed */
		if (qty <= 0 || qty > ticket_max_per_order)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("qty must be between 1 and %d, not %d", ticket_max_per_order, qty),
					 errhint("The upper limit is ticket_ext.max_per_order.")));
		hold_for = hold_duration(fcinfo, 3);
		if (holder != NULL)
		{
			bool		limited;
			bool		frozen;

			/* wait for the holder's other calls before joining (holder_limit.c) */
			ticket_peek_draw(item_id, &limited, &frozen);
			if (limited && VARSIZE_ANY_EXHDR(holder) > 0)
				ticket_lock_holder(holder);
		}
		ticket_join_draw(item_id, &draw);
		ticket_check_draw_paused(&draw);
		ticket_check_holder_limits(&draw, holder, qty);

		/* a hold lasts hold_for from the moment its tickets are taken */
		created_at = GetCurrentTimestamp();
		expires_at = created_at + hold_for;	/* at most a year: no overflow */
		ticket_check_draw_installation(&draw);
		if (!ticket_take_all(draw.slots, draw.n, qty, expires_at))
		{
			if (key != NULL)
				ticket_spi_end(&frame);
			PG_RETURN_NULL();	/* sold out: the normal answer under load */
		}

		if (key == NULL)
		{
			ticket_as_owner_begin(&frame);
			hold_id = ticket_insert_hold(item_id, qty, holder, created_at, expires_at);
			ticket_as_owner_end(&frame);
		}
		else
			hold_id = insert_idempotent_hold(item_id, qty, holder, key,
											 created_at, expires_at);
		/* and the row went into that installation's table (abort undoes all) */
		ticket_check_draw_installation(&draw);
		/* tell the expiry worker; row first, so it cannot miss the hold */
		counter_note_expiry(draw.slots[0], expires_at);
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

typedef enum HoldState
{
	HOLD_MISSING,
	HOLD_HELD,					/* and not past its expiry */
	HOLD_TIMED_OUT,				/* held, past its expiry */
	HOLD_SOLD,
	HOLD_RELEASED,
	HOLD_EXPIRED
} HoldState;

/*
 * A hold's state as committed now (the latest snapshot, not the one the
 * failed UPDATE used: the reserving transaction may have committed since),
 * and its holder (palloc'd, NULL for none) when holder_out is given.
 */
static HoldState
hold_state(int64 hold_id, char **holder_out)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(hold_id)};
	bool		isnull;
	char	   *status;

	SPI_execute_snapshot(ticket_prepare(&hold_state_plan, HOLD_STATE_SQL, 1, argtypes),
						 values, NULL, GetLatestSnapshot(), InvalidSnapshot,
						 true, false, 1);
	if (SPI_processed == 0)
		return HOLD_MISSING;
	if (holder_out != NULL)
		*holder_out = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(status, "sold") == 0)
		return HOLD_SOLD;
	if (strcmp(status, "released") == 0)
		return HOLD_RELEASED;
	if (strcmp(status, "expired") == 0)
		return HOLD_EXPIRED;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
									  &isnull)) ? HOLD_TIMED_OUT : HOLD_HELD;
}

/*
 * The UPDATE of a confirm/release found no row although the hold is in a
 * state it accepts: its transaction committed after the UPDATE's snapshot
 * was taken.  READ COMMITTED retries with a new snapshot; a transaction
 * snapshot never sees it, which is a serialization failure.
 */
static void
retry_or_fail(int64 hold_id, const char *action, int attempt)
{
	if (IsolationUsesXactSnapshot() || attempt + 1 >= HOLD_UPDATE_TRIES)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not %s hold " INT64_FORMAT ": it was reserved or changed by a concurrent transaction",
						action, hold_id),
				 errhint("Retry the transaction.")));
}

static void pg_attribute_noreturn()
error_hold_state(int64 hold_id, const char *action, HoldState state)
{
	if (state == HOLD_MISSING)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("hold " INT64_FORMAT " does not exist", hold_id)));
	if (state == HOLD_RELEASED)
		ereport(ERROR,
				(errcode(ERRCODE_TICKET_HOLD_RELEASED),
				 errmsg("cannot %s hold " INT64_FORMAT ": it was released", action, hold_id),
				 errhint("Reserve again with ticket_reserve() and a new idempotency key.")));
	ereport(ERROR,
			(errcode(ERRCODE_TICKET_HOLD_EXPIRED),
			 errmsg("cannot %s hold " INT64_FORMAT ": it has expired", action, hold_id),
			 errhint("Reserve again with ticket_reserve() and a new idempotency key.")));
}

/*
 * ticket_confirm/ticket_release(hold_id, holder): the hold must be the
 * holder's.  A hold's holder never changes, so checking it before the
 * UPDATE is as good as checking it in it.
 */
static void
check_holder(FunctionCallInfo fcinfo, int64 hold_id, const char *action)
{
	text	   *holder;
	char	   *held_by = NULL;
	HoldState	state;

	if (PG_NARGS() < 2)
		return;
	holder = ticket_arg_text(fcinfo, 1, "holder", TICKET_MAX_HOLDER_LEN);
	if (holder == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("holder must not be NULL"),
				 errhint("Call ticket_%s(hold_id) to %s without checking the holder.",
						 action, action)));
	/* a hold this very statement reserved (ticket_confirm(ticket_reserve(...))) */
	CommandCounterIncrement();
	state = hold_state(hold_id, &held_by);
	/* missing or someone else's: one answer, so a guessed id tells nothing */
	if (state == HOLD_MISSING || !holder_matches(held_by, holder))
		ereport(ERROR,
				(errcode(ERRCODE_TICKET_WRONG_HOLDER),
				 errmsg("cannot %s hold " INT64_FORMAT ": it does not exist or is not this holder's",
						action, hold_id)));
}

/*
 * ticket_confirm(hold_id [, holder]) -> true when the hold became a sale,
 * false when it was already sold (confirming twice is a no-op).
 */
Datum
ticket_confirm(PG_FUNCTION_ARGS)
{
	int64		hold_id = ticket_arg_hold_id(fcinfo, 0);
	TicketSpiFrame frame;
	bool		confirmed = false;
	int			attempt;

	ticket_check_entry();
	ticket_check_writable("confirm tickets");
	ticket_spi_begin(&frame);
	check_holder(fcinfo, hold_id, "confirm");
	for (attempt = 0;; attempt++)
	{
		HoldState	state;

		if (exec_on_hold(&confirm_plan, CONFIRM_SQL, hold_id) == 1)
		{
			confirmed = true;
			break;
		}
		state = hold_state(hold_id, NULL);
		if (state == HOLD_SOLD)
			break;
		if (state != HOLD_HELD)
			error_hold_state(hold_id, "confirm", state);
		retry_or_fail(hold_id, "confirm", attempt);
	}
	ticket_spi_end(&frame);
	PG_RETURN_BOOL(confirmed);
}

/*
 * ticket_release(hold_id [, holder]): give a held or sold hold's tickets
 * back.  They return to the pool when this transaction commits.
 */
Datum
ticket_release(PG_FUNCTION_ARGS)
{
	int64		hold_id = ticket_arg_hold_id(fcinfo, 0);
	TicketSpiFrame frame;
	bool		isnull;
	int64		item_id;
	int32		qty;
	int			attempt;

	ticket_check_entry();
	ticket_check_writable("release tickets");
	ticket_spi_begin(&frame);
	check_holder(fcinfo, hold_id, "release");
	for (attempt = 0; exec_on_hold(&release_plan, RELEASE_SQL, hold_id) != 1; attempt++)
	{
		HoldState	state = hold_state(hold_id, NULL);

		if (state != HOLD_HELD && state != HOLD_TIMED_OUT && state != HOLD_SOLD)
			error_hold_state(hold_id, "release", state);
		retry_or_fail(hold_id, "release", attempt);
	}
	item_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	qty = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 2, &isnull));
	ticket_spi_end(&frame);

	ticket_return_draw(item_id, qty);
	PG_RETURN_VOID();
}

/* ticket_available(item_id): tickets left, from shared memory. */
Datum
ticket_available(PG_FUNCTION_ARGS)
{
	int64		item_id = ticket_arg_int64(fcinfo, 0, "item_id");

	ticket_check_entry();
	PG_RETURN_INT64(ticket_item_available(item_id));
}
