/*-------------------------------------------------------------------------
 *
 * stream_worker.c
 *	  Background workers "ticket_ext stream <sink>", one per sink (Redis,
 *	  Kinesis): each streams every committed sale event of
 *	  ticket_ext.database to its sink, from a replication slot of its own.
 *
 * Why a process and a slot per sink: a sink that is down, slow, throttled
 * or black-holed then delays nobody else (blocking I/O in a sink costs
 * only its own worker), each sink's slot holds back WAL for that sink
 * alone, and a sink that was down catches up from its own slot without a
 * replay of the others.  The price is that WAL is decoded once per
 * enabled sink (one walsender each).
 *
 * Life cycle: started by the postmaster after recovery, restarted 1 s
 * after any exit (SIGKILL, crash restart); it resumes from the slot's
 * confirmed position, and the sinks' idempotent writes absorb re-sent
 * events.  SIGHUP applies new settings; SIGTERM ends the loop after a
 * last feedback.  When the extension is dropped the worker closes the
 * stream and drops its slot.
 *
 * The replication connection is always read or closed, never left
 * unread: a walsender that cannot write to us cannot exit either, and a
 * CHECKPOINT that must invalidate the slot (max_slot_wal_keep_size) waits
 * for that exit.  So a queue that stays full closes the stream; it is
 * reopened from the slot once the sinks have made room, and what was
 * queued already is dropped as it comes again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication.h"
#include "snapshot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "stream.h"
#include "stream_slot.h"
#include "stream_worker.h"
#include "tcop/tcopprot.h"
#include "ticket_ext.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ticket_stream_worker_main(Datum main_arg);

#define CHECK_EXTENSION_MS	2000
#define FEEDBACK_EVERY_MS	1000
#define FULL_READ_PAUSE_MS	500 /* a full queue leaves the stream unread this long */
#define HEALTHY_AFTER_MS	10000	/* a stream up this long resets the backoff */
#define LINGER_MS			1
#define LINGER_BELOW		64	/* messages per read that count as "short" */

int			stream_worker_sink = -1;		/* index in the sink list (bgw_main_arg) */
const SinkOps *stream_worker_ops = NULL;
static char *superuser_name = NULL;
static char *slot_in_use = NULL;	/* slot of the open stream */
static XLogRecPtr feedback_sent = InvalidXLogRecPtr;
static TimestampTz feedback_at = 0;
static bool stream_failing = false;
static int	repl_backoff_ms = 0;
static TimestampTz repl_retry_at = 0;
static TimestampTz stream_opened_at = 0;
static TimestampTz full_since = 0;	/* the queue is full since */
static bool closed_for_room = false;	/* closed, queue kept, until room */
static SlotOrigin slot_origin;	/* the slot streamed from, once prepared */
static bool slot_prepared = false;	/* ... on this connection */
static Oid	installation = InvalidOid;	/* items relid of the installation served */
static bool showing_conflict = false;	/* stream_state says "history conflict" */

const char *
stream_worker_slot(void)
{
	return stream_worker_ops->slot_name();
}

/*
 * The installation in our database, as its items table: InvalidOid if the
 * extension is not installed.  A new OID means DROP and CREATE EXTENSION
 * happened since we looked.
 */
static Oid
extension_installation(void)
{
	Oid			relid = InvalidOid;

	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("ticket_ext", true)))
		relid = ticket_items_relid(true);
	CommitTransactionCommand();
	return relid;
}

/* Close the replication connection; the queue and sink progress stay. */
static void
close_connection(void)
{
	repl_close();
	slot_prepared = false;
	if (slot_in_use)
		pfree(slot_in_use);
	slot_in_use = NULL;
	feedback_sent = InvalidXLogRecPtr;
	full_since = 0;
}

/* Close and forget the queue: the next stream replays from the slot. */
static void
close_stream(void)
{
	close_connection();
	pipeline_reset();
	snapshot_rewind();			/* queued snapshot events are gone too */
	closed_for_room = false;
}

static void
stream_failed(const char *error)
{
	if (note_slot_lost())
	{
		/* the main loop replaces the slot (resnapshot), at once */
		close_stream();
		return;
	}
	if (!stream_failing)
		ereport(WARNING,
				(errmsg("ticket_ext: event stream interrupted, retrying: %s", error)));
	stream_failing = true;
	close_stream();
	repl_backoff_ms = repl_backoff_ms == 0 ? 200 : Min(repl_backoff_ms * 2, 10000);
	stream_status_set_state(stream_worker_sink, STREAM_STATE_RETRYING, error);
	repl_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), repl_backoff_ms);
}

static const char *
sink_name(void)
{
	return stream_worker_ops->name;
}

/* Once the sink has the slot's whole snapshot, its spill file goes. */
static void
forget_sent_snapshot(void)
{
	static uint64 forgotten = 0;

	if (slot_prepared && slot_origin.snapshot_events > 0 && forgotten != slot_origin.origin &&
		history_snapshot_done(pipeline_position(), &slot_origin))
	{
		snapshot_discard(sink_name());
		forgotten = slot_origin.origin;
		pipeline_set_slot(&slot_origin, true, false);	/* it cannot be sent again */
	}
}

/* Wait (at most 5 s) for the walsender of our last stream to let go of the slot. */
static void
wait_slot_released(void)
{
	StreamSlotInfo info;
	int			i;

	for (i = 0; i < 250 && !ShutdownRequestPending; i++)
	{
		if (!stream_slot_read(stream_worker_slot(), &info) || info.active_pid == 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Drop our slot and start a new one with a snapshot of the tables (the
 * sink is behind what the slot can give it, the extension was
 * reinstalled, or an admin asked).  False if the slot could not be
 * dropped yet: the caller asks again.
 */
static bool
resnapshot(const char *why)
{
	char		err[1024];

	ereport(LOG,
			(errmsg("ticket_ext: %s sink: %s: a new slot and a snapshot of the tables", sink_name(), why)));
	close_stream();
	pipeline_forget_slot();
	wait_slot_released();
	if (!repl_connect(superuser_name, err, sizeof(err)) ||
		(repl_slot_exists(stream_worker_slot(), err, sizeof(err)) == 1 &&
		 !repl_drop_slot(stream_worker_slot(), err, sizeof(err))))
	{
		stream_failed(err);
		return false;
	}
	snapshot_discard(sink_name());
	return true;				/* the next open_stream creates the slot, with a snapshot */
}

/*
 * Open the stream, one step per call: connect, make sure the slot exists
 * (its creation waits for running transactions: we come back when the
 * walsender answers), queue the slot's snapshot, START_REPLICATION.  True
 * once streaming.
 */
static bool
open_stream(void)
{
	char		err[1024];
	int			rc;
	StreamSlotInfo info;

	if (!repl_creating_slot() && !slot_prepared && !repl_is_open())
	{
		if (repl_retry_at != 0 && GetCurrentTimestamp() < repl_retry_at)
			return false;
		stream_status_set_state(stream_worker_sink, STREAM_STATE_CONNECTING, NULL);
		if (!repl_connect(superuser_name, err, sizeof(err)))
		{
			stream_failed(err);
			return false;
		}
	}
	if (!slot_prepared)
	{
		rc = slot_prepare(&slot_origin, err, sizeof(err));
		if (rc == 0)
		{
			note_slot_wait(repl_backend_pid());
			return false;
		}
		if (rc < 0)
		{
			stream_failed(err);
			return false;
		}
		slot_prepared = true;
		stream_status_set_ready(stream_worker_sink, installation);
		(void) stream_slot_read(stream_worker_slot(), &info);
		pipeline_set_slot(&slot_origin, info.confirmed_flush > slot_origin.start,
						  slot_origin.snapshot_events == 0 ||
						  snapshot_spilled(sink_name(), slot_origin.origin));
		stream_status_set_origin(stream_worker_sink, slot_origin.origin);
	}

	/* the slot's snapshot goes first: the stream starts once it is queued */
	if (!snapshot_feed(sink_name(), slot_origin.origin))
	{
		stream_status_set_state(stream_worker_sink, STREAM_STATE_SNAPSHOT,
								"sending the snapshot of the tables; the stream starts after it");
		return false;
	}
	if (!stream_slot_read(stream_worker_slot(), &info))
	{
		stream_failed("the slot is gone");
		return false;
	}
	if (!repl_start(stream_worker_slot(), err, sizeof(err)))
	{
		stream_failed(err);
		return false;
	}
	pipeline_stream_started(info.confirmed_flush);
	slot_in_use = MemoryContextStrdup(TopMemoryContext, stream_worker_slot());
	stream_opened_at = GetCurrentTimestamp();
	closed_for_room = false;
	stream_status_set_state(stream_worker_sink, STREAM_STATE_STREAMING, NULL);
	return true;
}

/*
 * A stream counts as healthy once it stayed up a while: only then is the
 * backoff reset and "resumed" logged (one that fails right after
 * START_REPLICATION keeps backing off, with one WARNING).
 */
static void
note_stream_healthy(void)
{
	if (repl_backoff_ms == 0 && !stream_failing)
		return;
	if (!TimestampDifferenceExceeds(stream_opened_at, GetCurrentTimestamp(), HEALTHY_AFTER_MS))
		return;
	if (stream_failing)
		ereport(LOG, (errmsg("ticket_ext: event stream resumed")));
	stream_failing = false;
	repl_backoff_ms = 0;
	repl_retry_at = 0;
}

/*
 * The queue stayed full: close the connection (the slot keeps the
 * events) rather than leave the walsender blocked writing to us.
 */
static void
close_for_room(void)
{
	ereport(LOG,
			(errmsg("ticket_ext: event queue full (%d events): replication stream closed until the sinks catch up",
					stream_queue_max)));
	close_connection();
	closed_for_room = true;
	stream_status_set_state(stream_worker_sink, STREAM_STATE_QUEUE_FULL,
							"every queued event waits for a sink; the stream reopens from the slot when there is room");
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
		stream_status_set_received(stream_worker_sink, msg.lsn);
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
	stream_status_set_confirmed(stream_worker_sink, confirmed, now);
}

/*
 * Once, in a transaction: who connects the replication stream, and UTF-8
 * as this process's client encoding, so text parsed from the stream is
 * converted to UTF-8 for the sinks without catalog lookups (event.c).
 */
static void
worker_setup(void)
{
	StartTransactionCommand();
	superuser_name = MemoryContextStrdup(TopMemoryContext,
										 GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false));
	if (PrepareClientEncoding(PG_UTF8) == 0)
		(void) SetClientEncoding(PG_UTF8);
	CommitTransactionCommand();
}

/*
 * One round with the extension installed and a sink enabled: keep the
 * stream open (or closed for room), read it, drive the sinks, confirm.
 * Returns the wait events for this round and lowers *timeout.
 */
static int
stream_round(MemoryContext parse_cxt, long *timeout)
{
	TimestampTz now = GetCurrentTimestamp();
	int			got = 0;
	long		retry;

	if (!repl_is_connected() && (!closed_for_room || pipeline_has_room()) &&
		!open_stream() && repl_creating_slot())
	{
		*timeout = Min(*timeout, 1000);
		return WL_SOCKET_READABLE;	/* the walsender answers when the slot exists */
	}
	if (repl_is_connected())
	{
		got = drain_stream(parse_cxt);
		if (got < 0)
			return 0;			/* failed: closed, retried with backoff */
		note_stream_healthy();
	}

	/* the sinks work from the queue whether or not the stream is open */
	retry = pipeline_work();
	if (pipeline_history_conflict())
	{
		stream_status_set_state(stream_worker_sink, STREAM_STATE_HISTORY,
								pipeline_history_conflict());
		showing_conflict = true;
	}
	else if (showing_conflict)
	{
		/* resolved (placed again): say what the stream does now */
		showing_conflict = false;
		if (repl_is_connected())
			stream_status_set_state(stream_worker_sink, STREAM_STATE_STREAMING, NULL);
	}
	send_feedback();			/* may fail and close the stream */
	if (retry >= 0)
		*timeout = Min(*timeout, retry);
	if (!repl_is_connected())
		return 0;				/* never wait on a socket we no longer have */

	if (pipeline_full())
	{
		long		left;

		if (full_since == 0)
			full_since = now;
		left = FULL_READ_PAUSE_MS - (long) ((now - full_since) / 1000);
		if (left <= 0)
			close_for_room();
		else
			*timeout = Min(*timeout, left);
		return 0;
	}
	full_since = 0;

	/*
	 * A busy stream arrives a message at a time: after a short read, let
	 * messages gather for a millisecond instead of waking up for each one
	 * (far fewer wake-ups and syscalls).
	 */
	if (got > 0 && got < LINGER_BELOW)
	{
		*timeout = Min(*timeout, LINGER_MS);
		return 0;
	}
	return WL_SOCKET_READABLE;
}

void
ticket_stream_worker_main(Datum main_arg)
{
	MemoryContext parse_cxt;
	TimestampTz checked_extension = 0;
	TimestampTz checked_wal = 0;
	bool		resnapshot_asked = false;
	bool		admin_asked = false;

	stream_worker_sink = DatumGetInt32(main_arg);
	stream_worker_ops = stream_sink(stream_worker_sink);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	ticket_worker_connect(TICKET_WORKER_STREAM(stream_worker_sink));
	pgstat_report_activity(STATE_RUNNING, "streaming ticket events");
	stream_status_attach_worker(stream_worker_sink, stream_worker_slot());

	parse_cxt = AllocSetContextCreate(TopMemoryContext, "ticket_ext stream parse",
									  ALLOCSET_DEFAULT_SIZES);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	worker_setup();
	pipeline_init(stream_worker_ops, stream_worker_sink);
	stream_status_set_configured(stream_worker_sink, pipeline_enabled(), MyDatabaseId);

	while (!ShutdownRequestPending)
	{
		long		timeout = 1000;
		TimestampTz now;
		int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			pipeline_reload();
			stream_status_set_configured(stream_worker_sink, pipeline_enabled(), MyDatabaseId);
			stream_status_set_slot(stream_worker_sink, stream_worker_slot());
			if ((slot_prepared && strcmp(slot_origin.slot, stream_worker_slot()) != 0) ||
				repl_creating_slot())
				close_stream();	/* reopened with the new settings */
		}

		now = GetCurrentTimestamp();
		/* not installed: look at every wake-up (CREATE EXTENSION nudges us) */
		if (!OidIsValid(installation) ||
			TimestampDifferenceExceeds(checked_extension, now, CHECK_EXTENSION_MS))
		{
			Oid			was = installation;

			installation = extension_installation();
			checked_extension = now;
			if (OidIsValid(was) && installation != was)
			{
				close_stream();
				stream_status_set_ready(stream_worker_sink, InvalidOid);
				/* dropped and created again in between: the old slot's consumers need a snapshot */
				if (OidIsValid(installation) && pipeline_enabled())
					resnapshot_asked = true;
			}
		}

		if (!OidIsValid(installation))
		{
			stream_status_set_state(stream_worker_sink, STREAM_STATE_NOT_INSTALLED, NULL);
			drop_leftovers();
		}
		else if (!pipeline_enabled())
		{
			/*
			 * Sink off: nothing to confirm.  Its slot would pin WAL forever:
			 * drop it (a sink turned on again starts from then), but not
			 * while another sink's slot is still missing (upgrade from one
			 * shared slot: the other may be about to copy it).
			 */
			bool		others_configured;

			close_stream();
			stream_status_set_state(stream_worker_sink, STREAM_STATE_NO_SINKS, NULL);
			if (stream_status_slots_ready(MyDatabaseId, InvalidOid, &others_configured))
				(void) drop_own_slot("sink not configured");
		}
		else
		{
			XLogRecPtr	lost_at;

			if (slot_lost(&lost_at))
			{
				ereport(WARNING,
						(errmsg("ticket_ext: replication slot \"%s\" of the %s sink was invalidated at %X/%X (max_slot_wal_keep_size)",
								stream_worker_slot(), sink_name(), LSN_FORMAT_ARGS(lost_at)),
						 errdetail("Events after its confirmed position are gone from WAL."),
						 errhint("The sink gets a new slot and a snapshot of the tables; see README, \"When the slot is lost\".")));
				resnapshot("slot lost");
			}
			else if (pipeline_snapshot_wanted())
				resnapshot("the sink holds what this slot cannot continue");
			else
			{
				/* kept until done: the old walsender may not have let go yet */
				if (stream_status_take_resnapshot(stream_worker_sink))
					resnapshot_asked = admin_asked = true;
				if (resnapshot_asked && !(repl_retry_at != 0 && GetCurrentTimestamp() < repl_retry_at))
				{
					resnapshot_asked = !resnapshot("asked by ticket_ext.stream_resnapshot(), or the extension was reinstalled");
					/* only an admin makes this server the source of another cluster's sink */
					if (!resnapshot_asked && admin_asked)
						pipeline_take_over();
					admin_asked = admin_asked && resnapshot_asked;
				}
			}
			events |= stream_round(parse_cxt, &timeout);
			forget_sent_snapshot();
		}

		if (TimestampDifferenceExceeds(checked_wal, now, 1000))
		{
			check_retained_wal(repl_is_connected());
			checked_wal = now;
		}

		if (events & WL_SOCKET_READABLE)
			(void) WaitLatchOrSocket(MyLatch, events, repl_socket(), timeout,
									 PG_WAIT_EXTENSION);
		else
			(void) WaitLatch(MyLatch, events, timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/* shutdown: tell the walsender what the sinks have, then go */
	feedback_at = 0;
	send_feedback();
	close_connection();
	proc_exit(1);				/* 1: restarted after bgw_restart_time unless the server stops */
}

/* One worker per sink, restarted 1 s after any exit (writes may wait for its slot). */
void
stream_register_workers(void)
{
	int			i;

	for (i = 0; i < stream_sink_count(); i++)
	{
		BackgroundWorker worker = {0};

		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "ticket_ext");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "ticket_stream_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "ticket_ext stream %s", stream_sink(i)->name);
		snprintf(worker.bgw_type, BGW_MAXLEN, "ticket_ext stream %s", stream_sink(i)->name);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}
