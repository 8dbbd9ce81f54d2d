/*-------------------------------------------------------------------------
 *
 * stream_gate.c
 *	  No event may be committed before the streaming worker's slot can
 *	  decode it: right after CREATE EXTENSION (or a first start with a
 *	  sink configured) the worker needs a moment to create its slot, and
 *	  the first write waits for that instead of producing an event no sink
 *	  would ever see.
 *
 * Once the slot exists in this installation the check is a comparison of
 * a backend-local cache; sinks being down never blocks sales (the slot
 * keeps the events).
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "stream.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#define STREAM_GATE_TIMEOUT_MS 10000

/* the installation (items relid) for which the slot was seen ready */
static Oid	ready_for_relid = InvalidOid;

static bool
streaming_configured(void)
{
	return (redis_url != NULL && redis_url[0] != '\0') || kinesis_configured();
}

static bool
served_by_worker(void)
{
	static int	served = -1;	/* per backend: -1 unknown, 0/1 */

	if (served < 0)
	{
		char	   *db = get_database_name(MyDatabaseId);

		served = (db != NULL && ticket_database != NULL && strcmp(db, ticket_database) == 0);
	}
	return served == 1;
}

/* Does our persistent slot exist for this database? */
static bool
slot_ready(void)
{
	ReplicationSlot *slot;
	bool		ready = false;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(stream_slot_name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		ready = slot->data.database == MyDatabaseId &&
			slot->data.persistency == RS_PERSISTENT;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return ready;
}

void
ticket_stream_gate(void)
{
	Oid			relid = ticket_items_relid(false);
	TimestampTz start;
	bool		nudged = false;

	if (relid == ready_for_relid)
		return;
	if (stream_shared == NULL || !streaming_configured() || !served_by_worker() ||
		slot_ready())
	{
		ready_for_relid = relid;
		return;
	}
	start = GetCurrentTimestamp();
	while (!slot_ready())
	{
		pid_t		worker = stream_shared->worker_pid;

		if (!nudged && worker != 0)
		{
			kill(worker, SIGUSR1);	/* wake the worker: it creates the slot */
			nudged = true;
		}
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STREAM_GATE_TIMEOUT_MS))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the event stream is not ready: replication slot \"%s\" does not exist yet",
							stream_slot_name),
					 errdetail("ticket_ext writes nothing a configured sink could miss."),
					 errhint("Check ticket_ext.stream_status and the server log; the \"ticket_ext stream\" worker creates the slot.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ready_for_relid = relid;
}
