/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  The event streaming worker: events, sinks, the shared pipeline and
 *	  its status in shared memory.
 *
 * Flow, in each sink's own worker process: replication.c receives the
 * output plugin's JSON messages from the sink's own replication slot;
 * event.c parses them into StreamEvents; pipeline.c queues them, hands
 * batches to the sink (sink_*.c) with retries and backoff, and confirms to
 * the slot only the commit LSN up to which the sink has everything.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_STREAM_H
#define TICKET_STREAM_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/spin.h"

#include "event.h"
#include "stream_history.h"
#include "stream_status.h"

/* ---------- sinks ---------- */

typedef enum SinkResultCode
{
	SINK_OK,					/* all acknowledged */
	SINK_PARTIAL,				/* a prefix acknowledged, retry the rest soon */
	SINK_RETRY,					/* transient failure: back off, retry */
	SINK_THROTTLED,				/* the sink asked us to slow down */
	SINK_FATAL_CONFIG,			/* bad settings/credentials: slow retry */
	SINK_PACED					/* sent what the sink's limits allow now (a
								 * prefix acknowledged): again in wait_ms,
								 * not a failure */
} SinkResultCode;

typedef struct SinkResult
{
	SinkResultCode code;
	int			acked;			/* events acknowledged, from the start, in order */
	long		wait_ms;		/* SINK_PACED: when to send again */
	int			throttled;		/* SINK_PACED: records the sink refused for rate */
	char		error[512];		/* never contains secrets */
} SinkResult;

typedef struct SinkOps SinkOps;

/* One sink as the pipeline drives it. */
typedef struct Sink
{
	const SinkOps *ops;
	int			index;			/* in the sink list (stream_sink) */
	bool		enabled;
	bool		connected;
	int			acked;			/* events acked, counted from the queue head */
	int			backoff_ms;
	TimestampTz retry_at;		/* 0 = may send now */
	bool		failing;		/* for logging state changes only */
	bool		warned;			/* a "failing" WARNING is out, no "recovered" yet */
	TimestampTz warned_at;		/* when; flapping sinks warn once a minute */
	XLogRecPtr	confirmed;		/* end of the last transaction it fully has */
	XLogRecPtr	durable;		/* ... as the sink itself records it (Redis):
								 * the slot is never confirmed past it */
	TimestampTz durable_at;		/* when it was last written on its own */
	XLogRecPtr	batch_confirmed;	/* confirmed once the batch in send is acked */
	SinkPosition pos;			/* what it has (read at connect, then kept) */
	bool		placed;			/* pos checked against the slot (history_verdict) */
	bool		verified;		/* the stream showed pos's event as ours */
} Sink;

struct SinkOps
{
	const char *name;
	bool		(*enabled) (void);
	/* its replication slot (a setting) */
	const char *(*slot_name) (void);
	/* (re)connect: SINK_OK, or a failure code and the error */
	SinkResultCode (*connect) (Sink *sink, char *error, int errlen);
	void		(*disconnect) (Sink *sink);
	/* send events in order; report the acknowledged prefix */
	void		(*send) (Sink *sink, StreamEvent **events, int n, SinkResult *result);
	/* what it holds (pos->known false: nothing) */
	SinkResultCode (*read_position) (Sink *sink, SinkPosition *pos, char *error, int errlen);
	/*
	 * Does the sink hold exactly these events (to be skipped as delivered
	 * after a replay)?  *same false: it holds others at their ids, or lacks
	 * some it should have: another history wrote it.  NULL: cannot tell.
	 */
	SinkResultCode (*check_delivered) (Sink *sink, StreamEvent **events, int n, bool *same,
									   char *error, int errlen);
	/* keep pos as what it holds (send keeps it too, where position_in_send) */
	SinkResultCode (*write_position) (Sink *sink, const SinkPosition *pos, char *error, int errlen);
	bool		position_in_send;	/* send stores the position with the data */
	/* most events per send, if not ticket_ext.stream_batch_size (optional) */
	int			(*batch_size) (void);
};

extern const SinkOps redis_sink_ops;
extern const SinkOps kinesis_sink_ops;

/* ---------- files in the data directory (state_file.c, stream_history.c) ---------- */

extern void state_file_path(char *path, size_t len, const char *name);
extern bool state_file_save(const char *name, const char *content, bool durable);
extern bool state_file_load(const char *name, char *buf, int len);
extern void state_file_remove(const char *name);
extern void sink_position_save(const char *sink, const char *target, const SinkPosition *pos);
extern bool sink_position_load(const char *sink, const char *target, SinkPosition *pos);

/* ---------- the sink list (sinks.c) ---------- */

extern int	stream_sink_count(void);
extern const SinkOps *stream_sink(int i);

/* ---------- one worker's pipeline to its sink (pipeline.c) ---------- */

extern void pipeline_init(const SinkOps *ops, int index);
extern void pipeline_reset(void);
extern void pipeline_reload(void);
extern bool pipeline_enabled(void);
extern void pipeline_set_slot(const SlotOrigin *slot, bool moved, bool snapshot_available);
extern void pipeline_stream_started(XLogRecPtr start);
extern bool pipeline_snapshot_wanted(void);
extern void pipeline_forget_slot(void);
extern void pipeline_take_over(void);
extern const char *pipeline_history_conflict(void);
extern const SinkPosition *pipeline_position(void);
extern bool pipeline_full(void);
extern bool pipeline_has_room(void);
extern void pipeline_add_event(const StreamEvent *event);
extern void pipeline_commit(XLogRecPtr end_lsn);
extern void pipeline_idle_position(XLogRecPtr lsn);
extern long pipeline_work(void);
extern XLogRecPtr pipeline_confirmed(void);
extern bool pipeline_idle(void);

/* ---------- the workers (stream_worker.c) ---------- */

extern void stream_register_workers(void);

/* ---------- settings (ticket_ext.c) ---------- */

extern char *stream_slot_name;
extern char *kinesis_slot_name;
extern char *stream_conninfo;
extern char *redis_url;
extern char *redis_password_file;
extern char *redis_stream;
extern bool redis_stream_per_item;
extern int	redis_maxlen;
extern int	stream_batch_size;
extern int	stream_queue_max;
extern int	stream_connect_timeout_ms;
extern int	stream_io_timeout_ms;
extern int	stream_backoff_min_ms;
extern int	stream_backoff_max_ms;
extern int	stream_wal_warning_mb;
extern char *kinesis_stream;
extern char *kinesis_region;
extern char *kinesis_endpoint;
extern char *aws_access_key_id;
extern char *aws_secret_access_key;
extern char *aws_credentials_file;
extern int	kinesis_max_record_bytes;
extern int	kinesis_records_per_item;
extern bool kinesis_aggregate;
extern int	kinesis_shard_records_per_second;
extern int	kinesis_shard_bytes_per_second;
extern int	kinesis_shards_refresh_ms;
extern int	kinesis_max_request_bytes;

extern void stream_define_settings(void);


#endif							/* TICKET_STREAM_H */
