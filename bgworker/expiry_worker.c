/*-------------------------------------------------------------------------
 *
 * expiry_worker.c
 *	  Background worker "ticket_ext expiry": preloads counters after a
 *	  (re)start and returns overdue holds to the pool, in the database
 *	  named by ticket_ext.database.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ticket_expiry_worker_main(Datum main_arg);

#define PRELOAD_INTERVAL_MS		10000

typedef int64 (*TxnStep) (int64 arg);

/*
 * Run one step in its own transaction.  An error is logged and rolled
 * back, and the worker carries on with the next item: one bad item must
 * not stop expiry everywhere.  Returns false when the step did not run
 * (extension not installed, or error).
 */
static bool
run_step(const char *activity, TxnStep step, int64 arg, int64 *result)
{
	MemoryContext worker_cxt = CurrentMemoryContext;
	volatile bool ok = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		if (OidIsValid(ticket_items_relid(true)))
		{
			*result = step(arg);
			ok = true;
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(worker_cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(worker_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

static int64
step_preload(int64 unused)
{
	return ticket_preload_items();
}

static int64
step_expire(int64 item_id)
{
	return ticket_expire_item(item_id, ticket_expiry_batch);
}

static int64
step_refresh_hint(int64 item_id)
{
	ticket_refresh_expiry_hint(item_id);
	return 0;
}

static int64 *due_ids = NULL;
static uint64 due_count = 0;

/* Copy the due item ids out of the transaction's memory. */
static int64
step_collect_due(int64 unused)
{
	int64	   *ids = ticket_due_items(&due_count);

	due_ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * (due_count + 1));
	memcpy(due_ids, ids, sizeof(int64) * due_count);
	return (int64) due_count;
}

/* One round: every item with something due, drained batch by batch. */
static void
expiry_round(void)
{
	int64		n;
	uint64		i;

	if (!run_step("ticket_ext: finding due holds", step_collect_due, 0, &n))
		return;
	for (i = 0; i < due_count; i++)
	{
		do
		{
			n = 0;
			if (!run_step("ticket_ext: expiring holds", step_expire, due_ids[i], &n))
				break;
			CHECK_FOR_INTERRUPTS();
		} while (n >= ticket_expiry_batch);
		(void) run_step("ticket_ext: expiry hint", step_refresh_hint, due_ids[i], &n);
	}
	pfree(due_ids);
	due_ids = NULL;
}

/* ticket_ext.items' OID in our database, InvalidOid if not installed */
static Oid
installed_check(void)
{
	Oid			relid;

	StartTransactionCommand();
	relid = ticket_items_relid(true);
	CommitTransactionCommand();
	return relid;
}

void
ticket_expiry_worker_main(Datum main_arg)
{
	bool		preloaded = false;
	bool		said_not_installed = false;
	TimestampTz last_load = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	ticket_worker_connect(TICKET_WORKER_EXPIRY);
	/* the expiry protocol relies on fresh snapshots per statement */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	for (;;)
	{
		int64		n = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * After a (re)start, rebuild the counters before expiring: one try,
		 * best effort (what fails loads on first use).
		 */
		if (!preloaded)
		{
			if (run_step("ticket_ext: loading counters", step_preload, 0, &n))
				preloaded = true;
			else if (!OidIsValid(installed_check()))
			{
				if (!said_not_installed)
					ereport(LOG,
							(errmsg("ticket_ext: extension not installed in database \"%s\"; expiry waits for CREATE EXTENSION",
									ticket_database)));
				said_not_installed = true;
			}
			else
				preloaded = true;	/* loading failed (logged): expire anyway */
			last_load = GetCurrentTimestamp();
		}

		/*
		 * Holds expire only for items whose slot is loaded: now and then,
		 * load what is missing (items whose slot was reclaimed while idle,
		 * or that did not fit before).
		 */
		if (preloaded && TimestampDifferenceExceeds(last_load, GetCurrentTimestamp(),
													PRELOAD_INTERVAL_MS))
		{
			(void) run_step("ticket_ext: loading counters", step_preload, 0, &n);
			last_load = GetCurrentTimestamp();
		}
		if (preloaded)
			expiry_round();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ticket_expiry_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
