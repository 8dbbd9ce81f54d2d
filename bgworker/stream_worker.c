/*-------------------------------------------------------------------------
 *
 * stream_worker.c
 *	  Background worker "ticket_ext stream": streams every committed sale
 *	  event of ticket_ext.database to the enabled sinks (Redis; Kinesis),
 *	  from a replication slot it creates and owns.
 *
 * Life cycle: started by the postmaster after recovery, restarted 1 s
 * after any exit (SIGKILL, crash restart); it resumes from the slot's
 * confirmed position, and the sinks' idempotent writes absorb re-sent
 * events.  SIGHUP applies new settings.  When the extension is dropped
 * the worker closes the stream and drops its slot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "stream.h"
#include "tcop/tcopprot.h"
#include "ticket_ext.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ticket_stream_worker_main(Datum main_arg);

#define CHECK_EXTENSION_MS	2000
#define FEEDBACK_EVERY_MS	1000
#define LINGER_MS			1
#define LINGER_BELOW		64	/* messages per read that count as "short" */

static char *superuser_name = NULL;
static char *slot_in_use = NULL;	/* slot of the open stream */
static XLogRecPtr feedback_sent = InvalidXLogRecPtr;
static TimestampTz feedback_at = 0;
static bool stream_failing = false;
static int	repl_backoff_ms = 0;
static TimestampTz repl_retry_at = 0;

/* Is the extension installed in our database?  (catalog lookup) */
static bool
extension_installed(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("ticket_ext", true));
	CommitTransactionCommand();
	return installed;
}

/* Run one utility statement in a transaction of its own. */
static uint64
run_sql(const char *sql, const char *arg)
{
	uint64		n;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (arg)
		SPI_execute_with_args(sql, 1, (Oid[]) {TEXTOID},
							  (Datum[]) {CStringGetTextDatum(arg)}, NULL, false, 0);
	else
		SPI_execute(sql, false, 0);
	n = SPI_processed;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return n;
}

/*
 * After DROP EXTENSION: drop our slot, and the publication PostgreSQL 15
 * cannot tie to the extension.  True once both are gone.
 */
static bool
drop_leftovers(const char *name)
{
	bool		gone;
	ReplicationSlot *slot;
	bool		active;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	active = slot != NULL && slot->active_pid != 0;
	LWLockRelease(ReplicationSlotControlLock);
	if (slot == NULL)
		return true;
	if (active)
		return false;			/* the walsender is still letting go */

	gone = run_sql("SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
				   "  FROM pg_catalog.pg_replication_slots "
				   " WHERE slot_name = $1 AND NOT active", name) == 1;
	(void) run_sql("DROP PUBLICATION IF EXISTS ticket_ext_events", NULL);
	if (gone)
		ereport(LOG,
				(errmsg("ticket_ext: extension dropped, replication slot \"%s\" and publication ticket_ext_events removed",
						name)));
	return gone;
}

static void
close_stream(void)
{
	repl_close();
	pipeline_reset();
	if (slot_in_use)
		pfree(slot_in_use);
	slot_in_use = NULL;
	feedback_sent = InvalidXLogRecPtr;
}

static void
stream_failed(const char *error)
{
	if (!stream_failing)
		ereport(WARNING,
				(errmsg("ticket_ext: event stream interrupted, retrying: %s", error)));
	stream_failing = true;
	close_stream();
	repl_backoff_ms = repl_backoff_ms == 0 ? 200 : Min(repl_backoff_ms * 2, 10000);
	repl_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), repl_backoff_ms);
}

static bool
open_stream(void)
{
	char		err[1024];

	if (repl_retry_at != 0 && GetCurrentTimestamp() < repl_retry_at)
		return false;
	if (!repl_connect(superuser_name, err, sizeof(err)) ||
		!repl_ensure_slot(stream_slot_name, err, sizeof(err)) ||
		!repl_start(stream_slot_name, err, sizeof(err)))
	{
		stream_failed(err);
		return false;
	}
	slot_in_use = MemoryContextStrdup(TopMemoryContext, stream_slot_name);
	if (stream_failing)
		ereport(LOG, (errmsg("ticket_ext: event stream resumed")));
	stream_failing = false;
	repl_backoff_ms = 0;
	repl_retry_at = 0;
	return true;
}

/*
 * One message of the output plugin: one or more lines (JSON objects).
 * False if one cannot be read: the stream restarts rather than skip it.
 */
static bool
handle_data(MemoryContext parse_cxt, ReplMessage *msg)
{
	MemoryContext old = MemoryContextSwitchTo(parse_cxt);
	char	   *data = pnstrdup(msg->data, msg->len);
	char	   *line = data;
	bool		ok = true;

	while (ok && line != NULL && *line != '\0')
	{
		char	   *next = strchr(line, '\n');
		char	   *perr = NULL;
		StreamEvent ev;
		XLogRecPtr	end_lsn = InvalidXLogRecPtr;

		if (next)
			*next++ = '\0';
		switch (stream_parse_message(line, strlen(line), &ev, &end_lsn, &perr))
		{
			case MSG_EVENT:
				pipeline_add_event(&ev);
				break;
			case MSG_COMMIT:
				pipeline_commit(end_lsn);
				break;
			case MSG_PROGRESS:
				pipeline_idle_position(end_lsn);
				break;
			case MSG_INVALID:
				/* never skip: an unreadable event would be lost */
				stream_failed(psprintf("unreadable message at %X/%X: %s",
									   LSN_FORMAT_ARGS(msg->lsn), perr));
				ok = false;
				break;
		}
		line = next;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(parse_cxt);
	return ok;
}

/*
 * Read what the walsender has sent, up to the queue's capacity.  Returns
 * how many messages were read, or -1 if the stream broke.
 */
static int
drain_stream(MemoryContext parse_cxt)
{
	ReplMessage msg;
	char		err[1024];
	int			rc;
	int			n = 0;

	while (!pipeline_full())
	{
		rc = repl_receive(&msg, err, sizeof(err));
		if (rc == 0)
			return n;
		if (rc < 0)
		{
			stream_failed(err);
			return -1;
		}
		n++;
		if (msg.kind == REPL_KEEPALIVE)
		{
			pipeline_idle_position(msg.wal_end);
			if (msg.reply_requested)
				feedback_at = 0;	/* answer now */
			continue;
		}
		if (!handle_data(parse_cxt, &msg))
			return -1;
		SpinLockAcquire(&stream_shared->mutex);
		stream_shared->received_lsn = Max(stream_shared->received_lsn, msg.lsn);
		SpinLockRelease(&stream_shared->mutex);
	}
	return n;
}

/*
 * Tell the walsender what every sink has, at most once a second (and at
 * once when it asks).  When nothing is pending, ask it for its position:
 * its keepalive lets an idle stream confirm past other tables' WAL.
 */
static void
send_feedback(void)
{
	XLogRecPtr	confirmed = pipeline_confirmed();
	TimestampTz now = GetCurrentTimestamp();
	char		err[1024];

	if (!repl_is_connected())
		return;
	if (feedback_at != 0 && !TimestampDifferenceExceeds(feedback_at, now, FEEDBACK_EVERY_MS))
		return;
	if (!repl_send_feedback(confirmed, pipeline_idle(), err, sizeof(err)))
	{
		stream_failed(err);
		return;
	}
	feedback_sent = confirmed;
	feedback_at = now;
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->confirmed_lsn = confirmed;
	stream_shared->last_confirm_at = now;
	SpinLockRelease(&stream_shared->mutex);
}

/* WARNING when the slot holds more WAL than ticket_ext.stream_wal_warning. */
static void
check_retained_wal(void)
{
	ReplicationSlot *slot;
	XLogRecPtr	restart = InvalidXLogRecPtr;
	uint64		retained;
	bool		over;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(stream_slot_name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		restart = slot->data.restart_lsn;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (restart == InvalidXLogRecPtr)
		return;
	retained = GetXLogInsertRecPtr() - restart;
	over = retained > (uint64) stream_wal_warning_mb * 1024 * 1024;
	if (over && !stream_shared->wal_warning)
		ereport(WARNING,
				(errmsg("ticket_ext: replication slot \"%s\" retains %lu MB of WAL",
						stream_slot_name, (unsigned long) (retained / (1024 * 1024))),
				 errdetail("A sink is down or slow; events are kept until it acknowledges them."),
				 errhint("Check ticket_ext.stream_status. max_slot_wal_keep_size bounds the WAL kept, at the cost of losing the slot.")));
	else if (!over && stream_shared->wal_warning)
		ereport(LOG,
				(errmsg("ticket_ext: replication slot \"%s\" retained WAL is back under %d MB",
						stream_slot_name, stream_wal_warning_mb)));
	stream_shared->wal_warning = over;
}

static void
lookup_superuser(void)
{
	StartTransactionCommand();
	superuser_name = MemoryContextStrdup(TopMemoryContext,
										 GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false));
	CommitTransactionCommand();
}

void
ticket_stream_worker_main(Datum main_arg)
{
	MemoryContext parse_cxt;
	TimestampTz checked_extension = 0;
	TimestampTz checked_wal = 0;
	bool		installed = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(ticket_database, NULL, 0);
	pgstat_report_activity(STATE_RUNNING, "streaming ticket events");

	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->worker_pid = MyProcPid;
	SpinLockRelease(&stream_shared->mutex);

	parse_cxt = AllocSetContextCreate(TopMemoryContext, "ticket_ext stream parse",
									  ALLOCSET_DEFAULT_SIZES);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	lookup_superuser();
	pipeline_init();

	for (;;)
	{
		long		timeout = 1000;
		long		retry;
		TimestampTz now;
		int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
		int			got;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			pipeline_reload();
			if (slot_in_use && strcmp(slot_in_use, stream_slot_name) != 0)
				close_stream();
		}

		now = GetCurrentTimestamp();
		/* not installed: look at every wake-up (CREATE EXTENSION nudges us) */
		if (!installed || TimestampDifferenceExceeds(checked_extension, now, CHECK_EXTENSION_MS))
		{
			bool		was = installed;

			installed = extension_installed();
			checked_extension = now;
			if (was && !installed)
				close_stream();
		}

		if (!installed)
			(void) drop_leftovers(stream_slot_name);
		else if (!pipeline_any_enabled())
			close_stream();		/* sinks off: no consumer, nothing confirmed */
		else
		{
			if (!repl_is_connected())
				(void) open_stream();
			if (repl_is_connected() && (got = drain_stream(parse_cxt)) >= 0)
			{
				retry = pipeline_work();
				send_feedback();
				if (pipeline_replay_wanted())
				{
					close_stream();		/* reopened from the slot next round */
					continue;
				}
				if (retry >= 0)
					timeout = Min(timeout, retry);
				/*
				 * A busy stream arrives a message at a time: after a short
				 * read, let messages gather for a millisecond instead of
				 * waking up for each one (far fewer wake-ups and syscalls).
				 */
				if (got > 0 && got < LINGER_BELOW)
					timeout = Min(timeout, LINGER_MS);
				else if (!pipeline_full())
					events |= WL_SOCKET_READABLE;
			}
		}

		if (TimestampDifferenceExceeds(checked_wal, now, 1000))
		{
			check_retained_wal();
			checked_wal = now;
		}

		if (events & WL_SOCKET_READABLE)
			(void) WaitLatchOrSocket(MyLatch, events, repl_socket(), timeout,
									 PG_WAIT_EXTENSION);
		else
			(void) WaitLatch(MyLatch, events, timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
