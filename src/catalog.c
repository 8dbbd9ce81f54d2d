/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Where ticket_ext's tables are, who owns them, and running our fixed
 *	  SQL against them as that owner.
 *
 * The SQL functions are not SECURITY DEFINER: they switch to the tables'
 * owner only around their own prepared statements, like PostgreSQL's
 * foreign-key triggers do (SECURITY_LOCAL_USERID_CHANGE), so callers need
 * EXECUTE on the function and no privilege on the tables.  Every statement
 * names its objects schema-qualified, so search_path cannot redirect it.
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* Cached per backend; reset by any relcache invalidation that may matter. */
static Oid	cached_items_relid = InvalidOid;
static Oid	cached_holds_relid = InvalidOid;
static Oid	cached_seq_relid = InvalidOid;
static Oid	cached_owner = InvalidOid;
static bool callback_registered = false;

static void
catalog_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_items_relid ||
		relid == cached_holds_relid || relid == cached_seq_relid)
	{
		cached_items_relid = InvalidOid;
		cached_holds_relid = InvalidOid;
		cached_seq_relid = InvalidOid;
		cached_owner = InvalidOid;
	}
}

static void
catalog_lookup(bool missing_ok)
{
	Oid			nsp;
	Oid			relid;
	HeapTuple	tup;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(catalog_invalidate, (Datum) 0);
		callback_registered = true;
	}

	nsp = get_namespace_oid(TICKET_SCHEMA, true);
	relid = OidIsValid(nsp) ? get_relname_relid(TICKET_ITEMS_TABLE, nsp) : InvalidOid;
	if (!OidIsValid(relid))
	{
		if (missing_ok)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension ticket_ext is not installed in this database"),
				 errhint("Run CREATE EXTENSION ticket_ext.")));
	}

	cached_holds_relid = get_relname_relid(TICKET_HOLDS_TABLE, nsp);
	cached_seq_relid = get_relname_relid(TICKET_HOLD_SEQ, nsp);
	if (!OidIsValid(cached_holds_relid) || !OidIsValid(cached_seq_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension ticket_ext is damaged: ticket_ext.%s or ticket_ext.%s is missing",
						TICKET_HOLDS_TABLE, TICKET_HOLD_SEQ),
				 errhint("Reinstall the extension.")));

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	cached_owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	cached_items_relid = relid;
}

/* OID of ticket_ext.items in this database (identifies the installation). */
Oid
ticket_items_relid(bool missing_ok)
{
	if (!OidIsValid(cached_items_relid))
		catalog_lookup(missing_ok);
	return cached_items_relid;
}

/* Is relid ticket_ext.items?  (Never fails: used while objects are dropped.) */
bool
ticket_is_items_table(Oid relid)
{
	char	   *name = get_rel_name(relid);

	return name != NULL && strcmp(name, TICKET_ITEMS_TABLE) == 0 &&
		get_rel_namespace(relid) == get_namespace_oid(TICKET_SCHEMA, true);
}

Oid
ticket_holds_relid(void)
{
	(void) ticket_items_relid(false);
	return cached_holds_relid;
}

Oid
ticket_hold_seq_relid(void)
{
	(void) ticket_items_relid(false);
	return cached_seq_relid;
}

/*
 * Connect to SPI and act as the tables' owner; frame (on the caller's
 * stack) saves what to restore.  An error between begin and end needs no
 * cleanup: (sub)transaction abort restores the user and SPI.
 */
void
ticket_spi_begin(TicketSpiFrame *frame)
{
	ticket_as_owner_begin(frame);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "ticket_ext: SPI_connect failed");
}

void
ticket_spi_end(TicketSpiFrame *frame)
{
	SPI_finish();
	ticket_as_owner_end(frame);
}

/* Act as the tables' owner (the hot-path insert: triggers run as on SPI). */
void
ticket_as_owner_begin(TicketSpiFrame *frame)
{
	(void) ticket_items_relid(false);
	GetUserIdAndSecContext(&frame->save_userid, &frame->save_sec_context);
	SetUserIdAndSecContext(cached_owner,
						   frame->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
ticket_as_owner_end(TicketSpiFrame *frame)
{
	SetUserIdAndSecContext(frame->save_userid, frame->save_sec_context);
}

/* Prepare once per backend; the plan cache replans after DDL by itself. */
SPIPlanPtr
ticket_prepare(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "ticket_ext: SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

/*
 * A transaction-level lock of ours on key, waited for like any heavyweight
 * lock (deadlock detector, lock_timeout).  pg_locks shows it as an
 * advisory lock with objsubid lock_class (PostgreSQL's own advisory locks
 * use 1 and 2, so they never collide).
 */
void
ticket_lock_key(uint16 lock_class, uint64 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 lock_class);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	/* a prepared transaction would keep it: PREPARE is refused (xact.c) */
	ticket_xact_note_locks();
}

/* Release it before the end of the transaction. */
void
ticket_unlock_key(uint16 lock_class, uint64 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 lock_class);
	(void) LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Does the installed schema have pools and holder limits (1.1)?  The
 * library serves a database still at 1.0 until ALTER EXTENSION UPDATE.
 */
bool
ticket_schema_has_pools(void)
{
	return get_attnum(ticket_items_relid(false), "pool_ids") != InvalidAttrNumber;
}
