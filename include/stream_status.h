/*-------------------------------------------------------------------------
 *
 * stream_status.h
 *	  The streaming workers' state in shared memory (bgworker/stream/stream_status.c
 *	  owns it): per sink, its worker's identity, its stream's state and
 *	  its counters.  Everyone else goes through these functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_STREAM_STATUS_H
#define TICKET_STREAM_STATUS_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

typedef enum SinkState
{
	SINK_STATE_DISABLED = 0,
	SINK_STATE_CONNECTING,
	SINK_STATE_OK,
	SINK_STATE_RETRYING,
	SINK_STATE_THROTTLED,
	SINK_STATE_ERROR
} SinkState;

/* A sink worker's replication stream (ticket_ext.stream_state). */
typedef enum StreamState
{
	STREAM_STATE_STOPPED = 0,	/* no worker attached */
	STREAM_STATE_NOT_INSTALLED, /* the extension is not in the database */
	STREAM_STATE_NO_SINKS,		/* no sink configured: nothing streamed */
	STREAM_STATE_CONNECTING,	/* opening the replication connection */
	STREAM_STATE_CREATING_SLOT, /* waiting for older transactions to end */
	STREAM_STATE_STREAMING,
	STREAM_STATE_QUEUE_FULL,	/* stream closed until the sinks make room */
	STREAM_STATE_RETRYING,		/* the stream failed; reopened with backoff */
	STREAM_STATE_SLOT_LOST,		/* max_slot_wal_keep_size invalidated the slot */
	STREAM_STATE_SNAPSHOT,		/* sending a new slot's snapshot of the tables */
	STREAM_STATE_HISTORY		/* the sink follows a newer history than ours */
} StreamState;

#define MAX_SINKS 2

/* commit -> acknowledged delay histogram: bucket i counts delays < bound[i] ms */
#define DELAY_BUCKETS 24
extern const double delay_bucket_ms[DELAY_BUCKETS];

extern Size stream_shmem_size(void);
extern void stream_shmem_startup(void);
extern bool stream_status_available(void);

/* a sink's worker (one process per sink), by sink index */
extern void stream_status_attach_worker(int sink, const char *slot);
extern void stream_status_set_slot(int sink, const char *slot);
extern void stream_status_wake_workers(void);
extern void stream_status_set_configured(int sink, bool configured, Oid dboid);
extern void stream_status_set_ready(int sink, Oid installation);
extern bool stream_status_slots_ready(Oid db, Oid relid, bool *configured);
extern void stream_status_set_origin(int sink, uint64 origin);
extern bool stream_status_take_resnapshot(int sink);
extern void stream_status_set_state(int sink, StreamState state, const char *detail);
extern void stream_status_set_received(int sink, XLogRecPtr lsn);
extern void stream_status_set_confirmed(int sink, XLogRecPtr lsn, TimestampTz at);
extern void stream_status_set_queued(int sink, int queued);

/* its sink */
extern void sink_status_register(int sink, const char *name);
extern void sink_status_set_state(int sink, SinkState state, const char *error);
extern void sink_status_note_retry(int sink, bool throttled);
extern void sink_status_note_acked(int sink, int n, XLogRecPtr lsn,
								   const uint64 *delay_hist);
extern void sink_status_set_oldest_unacked(int sink, TimestampTz commit);

#endif							/* TICKET_STREAM_STATUS_H */
