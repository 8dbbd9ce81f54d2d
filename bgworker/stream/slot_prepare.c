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
#include "stream_slot.h"
#include "stream_worker.h"

static uint64 creating_origin = 0;	/* origin of the slot being created */

static const char *
sink_name(void)
{
	return stream_worker_ops->name;
}

/*
 * The slot's origin file could not be written (state_file_save logged
 * why).  Nothing goes on without it: a restart would take the sink for
 * another history's.
 */
static int
origin_not_saved(char *err, int errlen)
{
	snprintf(err, errlen, "could not write $PGDATA/ticket_ext.%s.slot (see the server log): "
			 "the %s sink waits until it can", sink_name(), sink_name());
	return -1;
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
	if (!slot_origin_save(sink_name(), &o))
		return origin_not_saved(err, errlen);	/* still "being created": redone */
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
	if (!slot_origin_save(sink_name(), &o))
		return origin_not_saved(err, errlen);
	snapshot_discard(sink_name());
	creating_origin = o.origin;
	return repl_create_slot(name, err, errlen) == 1 ? finish_creation(name, slot_origin, err, errlen)
		: (repl_creating_slot() ? 0 : -1);
}

/* Is name the slot setting of another sink? */
static bool
slot_of_another_sink(const char *name)
{
	int			i;

	for (i = 0; i < stream_sink_count(); i++)
		if (i != stream_worker_sink && strcmp(stream_sink(i)->slot_name(), name) == 0)
			return true;
	return false;
}

/*
 * The slot was renamed in the settings: copy the old one (file->slot) to
 * name, then drop it.  1 done (file updated), 0 there is no old slot to
 * copy, -1 failed (err; tried again, never a new slot meanwhile: the old
 * one would be left behind, holding WAL).
 */
static int
rename_slot(SlotOrigin *file, const char *name, char *err, int errlen)
{
	char		old[NAMEDATALEN];
	StreamSlotInfo info;
	int			rc;

	strlcpy(old, file->slot, sizeof(old));
	rc = repl_slot_exists(old, err, errlen);
	if (rc <= 0)
		return rc;
	if (stream_slot_read(old, &info) && info.active_pid != 0)
	{
		/* our last stream's walsender may not have let go yet */
		snprintf(err, errlen, "replication slot \"%s\" (renamed to \"%s\") is still in use by pid %d",
				 old, name, info.active_pid);
		return -1;
	}
	rc = SLOT_ORIGIN_COMPLETE(file) ? repl_copy_slot(old, name, err, errlen) : 0;
	if (rc < 0)
		return rc;
	if (rc == 0)
	{
		/* unfinished, or lost (invalidated): nothing in it to keep */
		return repl_drop_slot(old, err, errlen) ? 0 : -1;
	}
	strlcpy(file->slot, name, sizeof(file->slot));
	if (!slot_origin_save(sink_name(), file))
	{
		/* the file still names the old slot: the copy goes, tried again */
		(void) repl_drop_slot(name, err, errlen);
		strlcpy(file->slot, old, sizeof(file->slot));
		return origin_not_saved(err, errlen);
	}
	if (!repl_drop_slot(old, err, errlen))
		ereport(WARNING,
				(errmsg("ticket_ext: could not drop replication slot \"%s\" after copying it to \"%s\": %s",
						old, name, err),
				 errhint("Drop it by hand: it holds WAL back.")));
	return 1;
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
			/*
			 * A slot from before 1.1: then only the first sink had one.  Any
			 * other, or another sink's slot, is not ours to take.
			 */
			if (stream_worker_sink != 0 || slot_of_another_sink(name))
			{
				snprintf(err, errlen,
						 "replication slot \"%s\" exists and is not this worker's (the %s sink never made it): "
						 "set ticket_ext.%s_slot to another name, or drop that slot",
						 name, sink_name(), stream_worker_sink == 0 ? "stream" : sink_name());
				return -1;
			}
			memset(slot_origin, 0, sizeof(*slot_origin));
			strlcpy(slot_origin->slot, name, sizeof(slot_origin->slot));
			return slot_origin_save(sink_name(), slot_origin) ? 1 : origin_not_saved(err, errlen);
		}
		if (strcmp(file.slot, name) == 0 && SLOT_ORIGIN_COMPLETE(&file))
		{
			*slot_origin = file;
			return 1;
		}
		if (strcmp(file.slot, name) != 0)
		{
			/* another consumer's: never ours to drop */
			snprintf(err, errlen,
					 "replication slot \"%s\" exists and is not this worker's (the %s sink streams from \"%s\"): "
					 "set ticket_ext.stream_slot to another name, or drop that slot",
					 name, sink_name(), file.slot);
			return -1;
		}
		/* one we did not finish creating */
		ereport(LOG,
				(errmsg("ticket_ext: replication slot \"%s\" was not finished by this worker: making it again", name)));
		if (!repl_drop_slot(name, err, errlen))
			return -1;
		return start_creation(name, &file, slot_origin, err, errlen);
	}

	/* renamed by the settings: the old slot becomes the new one, nothing lost */
	if (have_file && strcmp(file.slot, name) != 0)
	{
		rc = rename_slot(&file, name, err, errlen);
		if (rc != 0)
		{
			*slot_origin = file;
			return rc;
		}
		/* no old slot to keep: a new one, with a snapshot */
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
			repl_copy_slot(stream_sink(0)->slot_name(), name, err, errlen) == 1)
		{
			memset(slot_origin, 0, sizeof(*slot_origin));
			strlcpy(slot_origin->slot, name, sizeof(slot_origin->slot));
			if (slot_origin_save(sink_name(), slot_origin))
				return 1;
			(void) repl_drop_slot(name, err, errlen);	/* copied again next time */
			return origin_not_saved(err, errlen);
		}
	}
	return start_creation(name, have_file ? &file : NULL, slot_origin, err, errlen);
}

