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

PGDLLEXPORT void ticket_expiry_worker_main(Datum main_arg);

void
ticket_register_expiry_worker(void)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ticket_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ticket_expiry_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ticket_ext expiry");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ticket_ext expiry");
	RegisterBackgroundWorker(&worker);
}

/* Run fn in its own transaction; false if the extension is not installed. */
static bool
run_in_transaction(const char *activity, int64 (*fn) (void), int64 *result)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	installed = OidIsValid(ticket_items_relid(true));
	if (installed)
		*result = fn();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return installed;
}

static int64
expire_one_batch(void)
{
	return ticket_expire_batch(ticket_expiry_batch);
}

/* Load every item's counters so the first sales after a restart are fast. */
static int64
preload_all(void)
{
	return ticket_preload_items();
}

void
ticket_expiry_worker_main(Datum main_arg)
{
	bool		preloaded = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(ticket_database, NULL, 0);

	while (!ShutdownRequestPending)
	{
		int64		n = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!preloaded)
			preloaded = run_in_transaction("ticket_ext: loading counters",
										   preload_all, &n);
		if (preloaded)
		{
			/* keep going while full batches come back: a backlog drains fast */
			do
			{
				n = 0;
				run_in_transaction("ticket_ext: expiring holds",
								   expire_one_batch, &n);
				CHECK_FOR_INTERRUPTS();
			} while (n >= ticket_expiry_batch && !ShutdownRequestPending);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ticket_expiry_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(0);
}
