/*-------------------------------------------------------------------------
 *
 * stream_history.h
 *	  Which WAL history a sink's contents came from (bgworker/stream/stream_history.c).
 *
 * Every replication slot a sink worker creates gets an origin: the time
 * of its creation in microseconds since 1970, larger than the origin of
 * anything the sink held before.  Every event carries the origin of the
 * slot that decoded it; a sink stores, with its data when it can (Redis)
 * or in a file (Kinesis), the origin and id of the last event it has.
 * Comparing that with the slot tells whether the sink is at this slot's
 * history (skip what it has), fresh, behind (it was fed by a slot that is
 * gone: a restored backup, a promoted standby, a lost or dropped slot;
 * it gets a snapshot of the tables), or ahead (fed by a newer slot: this
 * server is not the one the sink follows; nothing is sent).  A sink last
 * written by another cluster (system identifier) is not this server's
 * either, whatever the origins say, until an admin says it is.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_STREAM_HISTORY_H
#define TICKET_STREAM_HISTORY_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "event.h"

/* What a sink says it holds: the last event it has, and whence. */
typedef struct SinkPosition
{
	bool		known;			/* the sink has a position at all */
	bool		legacy;			/* read off a 1.0 stream (no position kept) */
	uint64		origin;			/* origin of the slot that wrote it */
	EventId		id;				/* its last event (0-0: none yet) */
	uint32		xid;			/* that event's transaction, 0 = unknown */
	XLogRecPtr	confirmed;		/* the slot may be confirmed this far: it
								 * holds every transaction ending before
								 * (0 = unknown, a position from before) */
	uint64		offset;			/* Redis: entry id = event id + offset */
	uint64		sysid;			/* the cluster that wrote it (history_foreign) */
	uint32		timeline;
} SinkPosition;

/*
 * A slot this worker streams from, as $PGDATA/ticket_ext.<sink>.slot says.
 * Written before the slot is created with start invalid ("being
 * created"), and again once its snapshot is taken.
 */
typedef struct SlotOrigin
{
	char		slot[NAMEDATALEN];
	uint64		origin;			/* 0: a slot from before 1.1 */
	XLogRecPtr	start;			/* its consistent point */
	uint32		snapshot_events;	/* events of its creation snapshot */
} SlotOrigin;

#define SLOT_ORIGIN_COMPLETE(o)	((o)->origin == 0 || (o)->start != InvalidXLogRecPtr)

/* The id of the last event of a slot's snapshot: <start - 1>-<n - 1>. */
#define SNAPSHOT_LSN(o)		((o)->start - 1)

typedef enum HistoryVerdict
{
	HISTORY_SAME,				/* written from this slot: skip what it has */
	HISTORY_ADOPT,				/* nothing from this slot yet, but the slot's
								 * snapshot brings it up to date: adopt */
	HISTORY_SNAPSHOT,			/* needs a new slot and a snapshot */
	HISTORY_AHEAD				/* written from a newer slot: send nothing */
} HistoryVerdict;

extern bool slot_origin_load(const char *sink, SlotOrigin *origin);
extern bool slot_origin_save(const char *sink, const SlotOrigin *origin);
extern bool sink_position_legacy(const char *sink);
extern uint64 history_new_origin(const SinkPosition *pos);
extern bool history_foreign(const SinkPosition *pos);
extern HistoryVerdict history_verdict(const SinkPosition *pos, const SlotOrigin *slot,
									  bool slot_moved, bool snapshot_available);
extern SinkPosition history_adopt(const SinkPosition *pos, const SlotOrigin *slot);
extern bool history_snapshot_done(const SinkPosition *pos, const SlotOrigin *slot);
extern void history_describe(const SinkPosition *pos, char *buf, int len);
extern uint64 history_system_identifier(void);
extern uint32 history_timeline(void);

#endif							/* TICKET_STREAM_HISTORY_H */
