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
#include "ticket_errcodes.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "stream_status.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#define STREAM_GATE_TIMEOUT_MS 10000

/* the installation (items relid) for which the slot was seen ready */
static Oid	ready_for_relid = InvalidOid;

/*
 * Does every sink configured for this database have its slot?  What is
 * configured is what the sink workers published (stream_status.c): the
 * gate knows no sink and reads no sink setting.
 */
static bool
slot_ready(Oid relid, bool *configured)
{
	return stream_status_slots_ready(MyDatabaseId, relid, configured);
}

static void
not_ready_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_TICKET_STREAM_NOT_READY),
			 errmsg("the event stream is not ready: a sink's replication slot does not exist yet"),
			 errdetail("%s", detail),
			 errhint("Check ticket_ext.stream_status and the server log; each sink's \"ticket_ext stream\" worker creates its slot.")));
}

void
ticket_stream_gate(void)
{
	Oid			relid = ticket_items_relid(false);
	TimestampTz start;
	bool		configured;

	if (relid == ready_for_relid)
		return;
	if (!stream_status_available() || slot_ready(relid, &configured) || !configured)
	{
		ready_for_relid = relid;
		return;
	}

	/*
	 * Creating a logical slot waits for every transaction that has an xid:
	 * ours would wait for a slot that waits for us.
	 */
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		not_ready_error("This transaction has already written, and the slot being created waits for it to end; "
						"ticket_ext writes nothing a configured sink could miss. Retry in a new transaction.");
	stream_status_wake_workers();	/* it creates the slot */
	start = GetCurrentTimestamp();
	while (!slot_ready(relid, &configured) && configured)
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STREAM_GATE_TIMEOUT_MS))
			not_ready_error("ticket_ext writes nothing a configured sink could miss.");
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ready_for_relid = relid;
}
