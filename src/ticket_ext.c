/*-------------------------------------------------------------------------
 *
 * ticket_ext.c
 *	  Module load: settings, shared memory hooks, callbacks, workers.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"
#include "stream.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

int			ticket_max_items = 10000;
int			ticket_hold_ttl_s = 600;
int			ticket_max_hold_ttl_s = 86400;
int			ticket_max_per_order = 10;
int			ticket_resync_timeout_ms = 5000;
int			ticket_expiry_interval_ms = 1000;
int			ticket_expiry_batch = 1000;
char	   *ticket_database = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
ticket_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ticket_shmem_request();
	RequestAddinShmemSpace(ticket_inflight_shmem_size());
	RequestAddinShmemSpace(ticket_links_shmem_size());
	RequestAddinShmemSpace(stream_shmem_size());
	RequestAddinShmemSpace(worker_connect_shmem_size());
}

static void
ticket_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	ticket_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ticket_inflight_shmem_startup();
	ticket_links_shmem_startup();
	stream_shmem_startup();
	worker_connect_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

static void
define_settings(void)
{
	DefineCustomIntVariable("ticket_ext.hold_ttl",
							"How long a hold lasts when ticket_reserve() gets no hold_for.",
							NULL, &ticket_hold_ttl_s, 600, 1, 365 * 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.max_hold_ttl",
							"Longest hold a caller may ask for.",
							NULL, &ticket_max_hold_ttl_s, 86400, 1, 365 * 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.max_per_order",
							"Most tickets one ticket_reserve() call may take.",
							NULL, &ticket_max_per_order, 10, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.resync_timeout",
							"How long resync() waits for open transactions on an item.",
							NULL, &ticket_resync_timeout_ms, 5000, 10, 600000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.expiry_interval",
							"How often the worker expires overdue holds.",
							NULL, &ticket_expiry_interval_ms, 1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_ext.expiry_batch",
							"Most holds expired per transaction.",
							NULL, &ticket_expiry_batch, 1000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	/*
	 * Server-start settings exist only when preloaded: PostgreSQL refuses
	 * to create PGC_POSTMASTER settings in a running server.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("ticket_ext.max_items",
								"Items (per server, all databases) that shared memory can count.",
								"About 80 bytes of shared memory per item.",
								&ticket_max_items, 10000, 1, 10000000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
		DefineCustomStringVariable("ticket_ext.database",
								   "Database served by ticket_ext's background workers.",
								   NULL, &ticket_database, "postgres",
								   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	}
	stream_define_settings();
	MarkGUCPrefixReserved("ticket_ext");
}

/* Our background workers: one per cluster, connected to ticket_ext.database. */
static void
register_worker(const char *type, const char *function, int restart_secs)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = restart_secs;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ticket_ext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", type);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	define_settings();

	/*
	 * Without preloading there is no shared memory: every SQL function then
	 * fails with a hint (ticket_require_shmem).
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ticket_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ticket_shmem_startup_hook;

	ticket_xact_init();
	ticket_reclaim_init();
	register_worker("ticket_ext expiry", "ticket_expiry_worker_main", 5);
	stream_register_workers();
}
