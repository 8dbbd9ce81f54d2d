/*-------------------------------------------------------------------------
 *
 * slot_reclaim.c
 *	  Giving back the shared-memory slots of items, installations and
 *	  databases that are gone, so they do not fill the slot table until
 *	  the next restart.
 *
 * Two ways: when DROP EXTENSION (or DROP DATABASE) commits, the slots it
 * made useless are killed right away (object access hook, then the commit
 * callback); and when the table is full, a scan kills slots of dropped
 * databases, of items no longer in this database's table and of earlier
 * installations.  Only a slot nobody has joined is killed (shmem.c), so
 * no transaction loses its counter; a slot is only a cache, and one killed
 * by mistake is reloaded from the tables on its next use.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static object_access_hook_type prev_object_access_hook = NULL;

/* what this transaction dropped, reclaimed when it commits */
#define MAX_PENDING_DBS 8
static Oid	dropped_items_relid = InvalidOid;
static SubTransactionId dropped_in = InvalidSubTransactionId;	/* undone with it */
static Oid	dropped_dbs[MAX_PENDING_DBS];
static int	ndropped_dbs = 0;

static SPIPlanPtr existing_plan = NULL;

#define EXISTING_SQL \
	"SELECT item_id FROM ticket_ext.items " \
	" WHERE item_id OPERATOR(pg_catalog.=) ANY ($1)"

static void
reclaim_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access != OAT_DROP)
		return;
	if (classId == RelationRelationId && subId == 0 &&
		ticket_is_items_table(objectId))
	{
		dropped_items_relid = objectId;
		dropped_in = GetCurrentSubTransactionId();
	}
	else if (classId == DatabaseRelationId && ndropped_dbs < MAX_PENDING_DBS)
		dropped_dbs[ndropped_dbs++] = objectId;
}

/* Kill every idle slot for which dead(dboid, item_id, slot) holds. */
static int
kill_where(bool (*dead) (Oid, int64, TicketSlot *, void *), void *arg)
{
	uint32		cursor = 0;
	TicketSlot *slot;
	Oid			dboid;
	int64		item_id;
	int			n = 0;

	while ((slot = ticket_slot_next(&cursor, &dboid, &item_id)) != NULL)
		if (dead(dboid, item_id, slot, arg) && ticket_slot_kill(slot, dboid, item_id))
			n++;
	return n;
}

static bool
of_installation(Oid dboid, int64 item_id, TicketSlot *slot, void *arg)
{
	Oid			relid = *(Oid *) arg;

	return dboid == MyDatabaseId &&
		(slot->items_relid == relid || !OidIsValid(slot->items_relid));
}

static bool
of_database(Oid dboid, int64 item_id, TicketSlot *slot, void *arg)
{
	return dboid == *(Oid *) arg;
}

static void
reclaim_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (event == XACT_EVENT_COMMIT && ticket_shared != NULL)
	{
		if (OidIsValid(dropped_items_relid))
			(void) kill_where(of_installation, &dropped_items_relid);
		for (i = 0; i < ndropped_dbs; i++)
			(void) kill_where(of_database, &dropped_dbs[i]);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		dropped_items_relid = InvalidOid;
		ndropped_dbs = 0;
	}
}

/* A DROP EXTENSION rolled back to a savepoint dropped nothing. */
static void
reclaim_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (!OidIsValid(dropped_items_relid) || dropped_in != mySubid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		dropped_items_relid = InvalidOid;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		dropped_in = parentSubid;
}

void
ticket_reclaim_init(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = reclaim_object_access;
	RegisterXactCallback(reclaim_xact_callback, NULL);
	RegisterSubXactCallback(reclaim_subxact_callback, NULL);
}

/* state for the scan of a full table */
typedef struct DeadScan
{
	Oid			relid;			/* this database's installation */
	int64	   *live;			/* this database's items that exist, sorted */
	int			nlive;
} DeadScan;

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y;
}

static bool
is_dead(Oid dboid, int64 item_id, TicketSlot *slot, void *arg)
{
	DeadScan   *scan = arg;

	if (SLOT_STATE(pg_atomic_read_u32(&slot->state)) == SLOT_UNLOADED)
		return true;			/* counts nothing yet */
	if (dboid != MyDatabaseId)
		return !SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (slot->items_relid != scan->relid)
		return true;			/* an earlier installation's */
	return bsearch(&item_id, scan->live, scan->nlive, sizeof(int64), cmp_int64) == NULL;
}

/* This database's loaded items that still exist. */
static void
find_live_items(DeadScan *scan)
{
	uint32		cursor = 0;
	TicketSlot *slot;
	Oid			dboid;
	int64		item_id;
	int			n = 0;
	Datum	   *ids = palloc(sizeof(Datum) * ticket_shared->nslots);
	ArrayType  *arr;
	TicketSpiFrame frame;
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1];
	bool		isnull;
	uint64		i;
	MemoryContext caller = CurrentMemoryContext;

	while ((slot = ticket_slot_next(&cursor, &dboid, &item_id)) != NULL)
		if (dboid == MyDatabaseId)
			ids[n++] = Int64GetDatum(item_id);
	arr = construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	values[0] = PointerGetDatum(arr);

	ticket_spi_begin(&frame);
	SPI_execute_plan(ticket_prepare(&existing_plan, EXISTING_SQL, 1, argtypes),
					 values, NULL, true, 0);
	scan->live = MemoryContextAlloc(caller, sizeof(int64) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
		scan->live[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1, &isnull));
	scan->nlive = (int) SPI_processed;
	ticket_spi_end(&frame);
	qsort(scan->live, scan->nlive, sizeof(int64), cmp_int64);
	pfree(ids);
}

/*
 * The slot table is full: kill the slots of dropped databases, of items
 * no longer in this database's table, of earlier installations, and the
 * never-loaded ones.  Returns how many it freed.
 */
int
ticket_reclaim_dead_slots(void)
{
	DeadScan	scan = {0};

	scan.relid = ticket_items_relid(true);
	if (OidIsValid(scan.relid))
		find_live_items(&scan);
	return kill_where(is_dead, &scan);
}
