/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  The event streaming worker: events, sinks, the shared pipeline and
 *	  its status in shared memory.
 *
 * Flow: replication.c receives the output plugin's JSON messages from the
 * worker's own replication slot; event.c parses them into StreamEvents;
 * pipeline.c queues them, hands batches to every enabled sink (sink_*.c)
 * with retries and backoff, and confirms to the slot only the commit LSN
 * up to which every sink has acknowledged everything.
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

/* ---------- sinks ---------- */

typedef enum SinkResultCode
{
	SINK_OK,					/* all acknowledged */
	SINK_PARTIAL,				/* a prefix acknowledged, retry the rest soon */
	SINK_RETRY,					/* transient failure: back off, retry */
	SINK_THROTTLED,				/* the sink asked us to slow down */
	SINK_FATAL_CONFIG			/* bad settings/credentials: slow retry */
} SinkResultCode;

typedef struct SinkResult
{
	SinkResultCode code;
	int			acked;			/* events acknowledged, from the start, in order */
	char		error[256];		/* never contains secrets */
} SinkResult;

typedef struct SinkOps SinkOps;

/* One sink as the pipeline drives it. */
typedef struct Sink
{
	const SinkOps *ops;
	int			index;			/* in stream_shared->sinks */
	bool		enabled;
	bool		connected;
	int			acked;			/* events acked, counted from the queue head */
	int			backoff_ms;
	TimestampTz retry_at;		/* 0 = may send now */
	bool		failing;		/* for logging state changes only */
	bool		warned;			/* a "failing" WARNING is out, no "recovered" yet */
	TimestampTz warned_at;		/* when; flapping sinks warn once a minute */
	XLogRecPtr	confirmed;		/* end of the last transaction it fully has */
	EventId		last_id;		/* the last event it acknowledged */
	bool		detached;		/* dropped from the queue; catches up by replay */
} Sink;

struct SinkOps
{
	const char *name;
	bool		(*enabled) (void);
	/* (re)connect: SINK_OK, or a failure code and the error */
	SinkResultCode (*connect) (Sink *sink, char *error, int errlen);
	void		(*disconnect) (Sink *sink);
	/* send events in order; report the acknowledged prefix */
	void		(*send) (Sink *sink, StreamEvent **events, int n, SinkResult *result);
	/* sinks that cannot drop repeats: what they deliver to (position file) */
	const char *(*position_target) (void);
};

extern const SinkOps redis_sink_ops;
extern const SinkOps kinesis_sink_ops;

/* ---------- saved positions (sink_position.c) ---------- */

extern void sink_position_save(const char *sink, const char *target, const EventId *id);
extern bool sink_position_load(const char *sink, const char *target, EventId *id);

/* ---------- the pipeline (pipeline.c) ---------- */

extern void pipeline_init(void);
extern void pipeline_reset(void);
extern void pipeline_reload(void);
extern bool pipeline_any_enabled(void);
extern bool pipeline_full(void);
extern void pipeline_add_event(const StreamEvent *event);
extern void pipeline_commit(XLogRecPtr end_lsn);
extern void pipeline_idle_position(XLogRecPtr lsn);
extern long pipeline_work(void);
extern XLogRecPtr pipeline_confirmed(void);
extern bool pipeline_idle(void);
extern bool pipeline_replay_wanted(void);

/* ---------- shared-memory status (ticket_ext.stream_status) ---------- */

typedef enum SinkState
{
	SINK_STATE_DISABLED = 0,
	SINK_STATE_CONNECTING,
	SINK_STATE_OK,
	SINK_STATE_RETRYING,
	SINK_STATE_THROTTLED,
	SINK_STATE_ERROR
} SinkState;

#define MAX_SINKS 2

/* commit -> acknowledged delay histogram: bucket i counts delays < bound[i] ms */
#define DELAY_BUCKETS 24
extern const double delay_bucket_ms[DELAY_BUCKETS];

typedef struct SinkStatus
{
	char		name[16];
	SinkState	state;
	XLogRecPtr	acked_lsn;		/* commit LSN of the last event acked */
	uint64		events_sent;
	uint64		requests;		/* sends that acknowledged something */
	uint64		retries;
	uint64		throttles;
	char		last_error[256];
	TimestampTz last_error_at;
	TimestampTz oldest_unacked_commit;	/* 0 when nothing is pending */
	uint64		delay_hist[DELAY_BUCKETS];	/* commit -> ack delays */
} SinkStatus;

typedef struct StreamShared
{
	slock_t		mutex;
	pid_t		worker_pid;
	XLogRecPtr	received_lsn;
	XLogRecPtr	confirmed_lsn;
	TimestampTz last_confirm_at;
	int			queued;
	bool		wal_warning;
	int			nsinks;
	SinkStatus	sinks[MAX_SINKS];
} StreamShared;

extern StreamShared *stream_shared;
extern Size stream_shmem_size(void);
extern void stream_shmem_startup(void);

/* ---------- settings (ticket_ext.c) ---------- */

extern char *stream_slot_name;
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
extern int	kinesis_max_record_bytes;
extern int	kinesis_records_per_item;
extern int	kinesis_max_request_bytes;

extern void stream_define_settings(void);

/* sink_kinesis.c */
extern bool kinesis_configured(void);

#endif							/* TICKET_STREAM_H */
