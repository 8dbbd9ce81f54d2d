/*-------------------------------------------------------------------------
 *
 * worker_connect.c
 *	  Connect one of ticket_ext's background workers to ticket_ext.database,
 *	  without a FATAL a second while that database does not exist.
 *
 * InitPostgres ends a worker whose database is missing with FATAL, and the
 * postmaster starts it again after its restart interval: one FATAL a
 * second in the log, forever.  So each worker notes in shared memory that
 * it is connecting, and clears the note once connected.  A worker that
 * finds its note still set (its previous start died connecting) connects
 * to no database instead (shared catalogs only, as PostgreSQL's logical
 * replication launcher does), says once that the database is missing (or
 * refuses connections), and looks it up in pg_database at growing
 * intervals (up to 10 s).  Once it can be connected to, the worker exits,
 * to be started again and connect.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#define MAX_TICKET_WORKERS		8
#define MISSING_CHECK_MIN_MS	1000
#define MISSING_CHECK_MAX_MS	10000

typedef struct WorkerConnectShared
{
	pg_atomic_uint32 connecting[MAX_TICKET_WORKERS];	/* 1: a start is connecting */
	pg_atomic_uint32 said_missing;	/* the missing database was logged */
} WorkerConnectShared;

static WorkerConnectShared *connect_shared = NULL;

Size
worker_connect_shmem_size(void)
{
	return MAXALIGN(sizeof(WorkerConnectShared));
}

/* Called under AddinShmemInitLock from the shmem startup hook. */
void
worker_connect_shmem_startup(void)
{
	bool		found;
	int			i;

	connect_shared = ShmemInitStruct("ticket_ext worker connect",
									 worker_connect_shmem_size(), &found);
	if (!found)
	{
		for (i = 0; i < MAX_TICKET_WORKERS; i++)
			pg_atomic_init_u32(&connect_shared->connecting[i], 0);
		pg_atomic_init_u32(&connect_shared->said_missing, 0);
	}
}

typedef enum DatabaseAvailability
{
	DB_MISSING,
	DB_NO_CONNECTIONS,			/* datallowconn = false */
	DB_AVAILABLE
} DatabaseAvailability;

/*
 * Can ticket_ext.database be connected to?  A heap scan of pg_database,
 * as autovacuum's get_database_list does: connected to no database, an
 * index scan would need a relcache this process does not have.
 */
static DatabaseAvailability
database_availability(void)
{
	DatabaseAvailability result = DB_MISSING;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), ticket_database) == 0)
		{
			result = db->datallowconn ? DB_AVAILABLE : DB_NO_CONNECTIONS;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

static void pg_attribute_noreturn()
wait_for_database(void)
{
	long		interval = MISSING_CHECK_MIN_MS;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	for (;;)
	{
		DatabaseAvailability db = database_availability();

		if (db == DB_AVAILABLE)
		{
			if (pg_atomic_exchange_u32(&connect_shared->said_missing, 0) == 1)
				ereport(LOG,
						(errmsg("ticket_ext: database \"%s\" accepts connections now; the workers connect to it",
								ticket_database)));
			proc_exit(1);		/* 1: started again, and connects */
		}
		if (pg_atomic_exchange_u32(&connect_shared->said_missing, 1) == 0)
			ereport(LOG,
					(errmsg(db == DB_MISSING
							? "ticket_ext: database \"%s\" (ticket_ext.database) does not exist; the workers wait for it"
							: "ticket_ext: database \"%s\" (ticket_ext.database) does not accept connections; the workers wait for it",
							ticket_database),
					 errhint("Create the database (or allow connections to it), or set ticket_ext.database and restart the server.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
		interval = Min(interval * 2, MISSING_CHECK_MAX_MS);
	}
}

/*
 * Connect worker number `worker` (each worker type its own number, below
 * MAX_TICKET_WORKERS) to ticket_ext.database, or wait for it to exist.
 */
void
ticket_worker_connect(int worker)
{
	pg_atomic_uint32 *connecting;

	Assert(worker >= 0 && worker < MAX_TICKET_WORKERS);
	connecting = &connect_shared->connecting[worker];
	if (pg_atomic_exchange_u32(connecting, 1) == 1)
	{
		/* the last start died connecting: the next one may connect again */
		pg_atomic_write_u32(connecting, 0);
		wait_for_database();
	}
	BackgroundWorkerInitializeConnection(ticket_database, NULL, 0);
	pg_atomic_write_u32(connecting, 0);
}
