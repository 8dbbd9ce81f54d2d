/*-------------------------------------------------------------------------
 *
 * guards.c
 *	  Argument checks shared by the SQL functions: one place for the
 *	  SQLSTATEs and messages listed in README.md's error table.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

/*
 * Every SQL entry point starts here: preloaded, and not in parallel mode.
 * A function marked PARALLEL SAFE by mistake (a wrapper) could otherwise
 * run ours in a parallel worker, whose transaction state is not its own.
 */
void
ticket_check_entry(void)
{
	ticket_require_shmem();
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("ticket_ext functions cannot run in parallel mode"),
				 errhint("Mark functions that call them PARALLEL UNSAFE.")));
}

/*
 * Is this backend's database the one the background workers serve
 * (ticket_ext.database)?  Elsewhere sales work, but holds do not expire
 * by themselves and no events are streamed.
 */
bool
ticket_database_served(void)
{
	static Oid	checked_db = InvalidOid;
	static bool served = false;

	if (checked_db != MyDatabaseId)
	{
		char	   *name = get_database_name(MyDatabaseId);

		served = name != NULL && strcmp(name, ticket_database) == 0;
		checked_db = MyDatabaseId;
	}
	return served;
}

/* Say once per session that this database is not served (at a sale). */
void
ticket_warn_if_unserved(void)
{
	static bool warned = false;

	if (warned || ticket_database_served())
		return;
	warned = true;
	ereport(WARNING,
			(errmsg("ticket_ext's background workers serve database \"%s\", not this one",
					ticket_database),
			 errdetail("Here holds do not expire by themselves and no events are streamed."),
			 errhint("Sell in database \"%s\", or call ticket_ext.expire_holds() here periodically (for example from pg_cron).",
					 ticket_database)));
}

/* Refuse writes before touching counters: on a standby or read-only txn. */
void
ticket_check_writable(const char *what)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s during recovery", what),
				 errdetail("This server is a hot standby; ticket_ext sells only on the primary."),
				 errhint("Connect to the primary server.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s in a read-only transaction", what)));
	ticket_stream_gate();
}

int64
ticket_arg_int64(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	return PG_GETARG_INT64(argno);
}

/* Optional text argument: NULL stays NULL, too long is an error. */
text *
ticket_arg_text(FunctionCallInfo fcinfo, int argno, const char *name, int maxlen)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		return NULL;
	t = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(t) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long (%d bytes)", name, (int) VARSIZE_ANY_EXHDR(t)),
				 errdetail("At most %d bytes are allowed.", maxlen)));
	return t;
}

void
ticket_check_capacity(int64 capacity)
{
	if (capacity < 0 || capacity > TICKET_MAX_CAPACITY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("capacity must be between 0 and " INT64_FORMAT ", not " INT64_FORMAT,
						TICKET_MAX_CAPACITY, capacity)));
}

int64
ticket_arg_hold_id(FunctionCallInfo fcinfo, int argno)
{
	int64		hold_id = ticket_arg_int64(fcinfo, argno, "hold_id");

	if (hold_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("hold " INT64_FORMAT " does not exist", hold_id)));
	return hold_id;
}

/* Wait a millisecond (on our latch) in a retry loop, interruptibly. */
void
ticket_wait_tick(void)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1L, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}
