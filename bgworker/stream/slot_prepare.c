/*-------------------------------------------------------------------------
 *
 * slot_prepare.c
 *	  A sink worker's slot before it streams: there (with its origin
 *	  known), made with a snapshot of the tables, renamed by copy, copied
 *	  from the shared slot of 1.0.  See stream_history.h for origins.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "replication.h"
#include "snapshot.h"
#include "stream.h"
#include "stream_worker.h"

static uint64 creating_origin = 0;	/* origin of the slot being created */

static const char *
sink_name(void)
{
	return stream_worker_ops->name;
}

/* The slot is created, in its snapshot: take the snapshot, finish. */
static int
finish_creation(const char *name, SlotOrigin *slot_origin, char *err, int errlen)
{
	int			rc = repl_create_slot(name, err, errlen);
	XLogRecPtr	start;
	SlotOrigin	o = {0};

	if (rc != 1)
		return rc;
	start = repl_take_created_at();
	stream_status_set_state(stream_worker_sink, STREAM_STATE_SNAPSHOT,
							"taking a snapshot of the tables for the new slot");
	if (!snapshot_dump(sink_name(), creating_origin, start, &o.snapshot_events, err, errlen) ||
		!repl_end_snapshot(err, errlen))
		return -1;				/* the origin file says "being created": redone */
	strlcpy(o.slot, name, sizeof(o.slot));
	o.origin = creating_origin;
	o.start = start;
	slot_origin_save(sink_name(), &o);
	*slot_origin = o;
	ereport(LOG,
			(errmsg("ticket_ext: %s sink: slot \"%s\" starts at %X/%X (origin " UINT64_FORMAT "), after a snapshot of %u events",
					sink_name(), name, LSN_FORMAT_ARGS(start), o.origin, o.snapshot_events)));
	return 1;
}

/*
 * Create our slot, with a snapshot of the tables in the snapshot it
 * starts from.  Its origin is recorded first, marked as being created.
 */
static int
start_creation(const char *name, const SlotOrigin *before, SlotOrigin *slot_origin,
			   char *err, int errlen)
{
	SlotOrigin	o = {0};

	o.origin = history_new_origin(pipeline_position());
	if (before != NULL && o.origin <= before->origin)
		o.origin = before->origin + 1;	/* the clock went back */
	strlcpy(o.slot, name, sizeof(o.slot));
	o.start = InvalidXLogRecPtr;
	slot_origin_save(sink_name(), &o);
	snapshot_discard(sink_name());
	creating_origin = o.origin;
	return repl_create_slot(name, err, errlen) == 1 ? finish_creation(name, slot_origin, err, errlen)
		: (repl_creating_slot() ? 0 : -1);
}

/*
 * Make sure our slot exists and we know its origin (*slot_origin): 1
 * ready, 0 being created (call again when the socket is readable), -1
 * failed (err).
 */
int
slot_prepare(SlotOrigin *slot_origin, char *err, int errlen)
{
	const char *name = stream_worker_slot();
	SlotOrigin	file;
	bool		have_file;
	int			rc;

	if (repl_creating_slot())
		return finish_creation(name, slot_origin, err, errlen);
	have_file = slot_origin_load(sink_name(), &file);
	rc = repl_slot_exists(name, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 1)
	{
		if (!have_file)
		{
			/* a slot from before 1.1 */
			memset(slot_origin, 0, sizeof(*slot_origin));
			strlcpy(slot_origin->slot, name, sizeof(slot_origin->slot));
			slot_origin_save(sink_name(), slot_origin);
			return 1;
		}
		if (strcmp(file.slot, name) == 0 && SLOT_ORIGIN_COMPLETE(&file))
		{
			*slot_origin = file;
			return 1;
		}
		/* one we did not finish creating, or another's under our name */
		ereport(LOG,
				(errmsg("ticket_ext: replication slot \"%s\" was not finished by this worker: making it again", name)));
		if (!repl_drop_slot(name, err, errlen))
			return -1;
		return start_creation(name, &file, slot_origin, err, errlen);
	}

	/* renamed by the settings: the old slot becomes the new one, nothing lost */
	if (have_file && strcmp(file.slot, name) != 0 && SLOT_ORIGIN_COMPLETE(&file) &&
		repl_slot_exists(file.slot, err, errlen) == 1 &&
		repl_copy_slot(file.slot, name, err, errlen))
	{
		char		old[NAMEDATALEN];

		strlcpy(old, file.slot, sizeof(old));
		strlcpy(file.slot, name, sizeof(file.slot));
		slot_origin_save(sink_name(), &file);
		*slot_origin = file;
		(void) repl_drop_slot(old, err, errlen);
		return 1;
	}

	/*
	 * Up to 1.0 every sink shared the first sink's slot.  A sink that was
	 * delivering then starts its own slot as a copy of that one, so the
	 * upgrade loses nothing; it skips what it has.
	 */
	if (!have_file && stream_worker_sink != 0 && sink_position_legacy(sink_name()))
	{
		SlotOrigin	first;

		if ((!slot_origin_load(stream_sink(0)->name, &first) || first.origin == 0) &&
			repl_copy_slot(stream_sink(0)->slot_name(), name, err, errlen))
		{
			memset(slot_origin, 0, sizeof(*slot_origin));
			strlcpy(slot_origin->slot, name, sizeof(slot_origin->slot));
			slot_origin_save(sink_name(), slot_origin);
			return 1;
		}
	}
	return start_creation(name, have_file ? &file : NULL, slot_origin, err, errlen);
}

