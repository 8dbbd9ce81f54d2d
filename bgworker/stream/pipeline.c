/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  What a sink worker runs between its replication stream and its one
 *	  sink: a bounded queue of decoded events, the sink's progress,
 *	  batching, retries with capped exponential backoff and jitter, and the
 *	  one rule for the slot: confirm only the end of a transaction whose
 *	  events the sink has acknowledged.
 *
 * Batching comes for free: the worker drains whatever the walsender has
 * sent before each send, so an idle stream sends one event at a time (low
 * latency) and a busy one sends full batches.
 *
 * Every sink has a worker, a slot and a pipeline of its own (see
 * stream_worker.c), so a sink that is down, slow or black-holed holds up
 * nobody else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "event_queue.h"
#include "stream.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"


static Sink sink;				/* this worker's sink */
static MemoryContext send_cxt = NULL;	/* reset after every sink call */

#define QUEUE_AT(i) (*event_queue_at(i))

/*
 * Newest event and commit queued since the stream last started from the
 * slot: a stream reopened without a reset re-sends them, they are dropped.
 */
static EventId last_queued_id;
static XLogRecPtr last_queued_commit = InvalidXLogRecPtr;

static void advance_sink(Sink *s, int n);
static void load_origin(Sink *s);

static void
status_update(Sink *s, SinkState state, const char *error)
{
	sink_status_set_state(s->index, state, error);
}

/* This worker drives the sink ops (index i of stream_sink_list). */
void
pipeline_init(const SinkOps *ops, int index)
{
	event_queue_init();
	send_cxt = AllocSetContextCreate(TopMemoryContext, "ticket_ext sink call",
									 ALLOCSET_DEFAULT_SIZES);
	sink.ops = ops;
	sink.index = index;
	sink_status_register(index, ops->name);
	pipeline_reload();
}

/* Settings changed: the sink reconnects with the new ones, on or off. */
void
pipeline_reload(void)
{
	Sink	   *s = &sink;
	bool		was = s->enabled;

	if (s->connected)
		s->ops->disconnect(s);
	s->connected = false;
	s->enabled = s->ops->enabled();
	s->retry_at = 0;
	s->backoff_ms = 0;
	if (s->enabled && !was)
	{
		/* skip what it has: the saved position, where the sink keeps none */
		memset(&s->last_id, 0, sizeof(s->last_id));
		if (s->ops->position_target &&
			sink_position_load(s->ops->name, s->ops->position_target(), &s->last_id))
			ereport(LOG,
					(errmsg("ticket_ext: %s sink resumes after event %X/%X-%u",
							s->ops->name, LSN_FORMAT_ARGS(s->last_id.lsn), s->last_id.seq)));
	}
	load_origin(s);
	status_update(s, s->enabled ? SINK_STATE_CONNECTING : SINK_STATE_DISABLED, NULL);
}

/* The slot's origin file: "<sink>-slot" with the slot name as target. */
static void
save_origin(Sink *s)
{
	EventId		origin = {s->slot_origin, s->adopted ? 1 : 0};
	char		name[32];

	snprintf(name, sizeof(name), "%s-slot", s->ops->name);
	sink_position_save(name, s->ops->slot_name(), &origin);
}

static void
load_origin(Sink *s)
{
	EventId		origin;
	char		name[32];

	snprintf(name, sizeof(name), "%s-slot", s->ops->name);
	s->slot_origin = InvalidXLogRecPtr;
	s->adopted = true;			/* a slot of unknown origin: as before */
	if (sink_position_load(name, s->ops->slot_name(), &origin))
	{
		s->slot_origin = origin.lsn;
		s->adopted = origin.seq != 0;
	}
}

/* This worker just created the sink's slot, starting at origin. */
void
pipeline_slot_created(XLogRecPtr origin)
{
	sink.slot_origin = origin;
	sink.adopted = false;
	save_origin(&sink);
}

/* Does the sink resume after a saved position (it delivered before)? */
bool
pipeline_has_position(void)
{
	return sink.last_id.lsn != 0;
}

bool
pipeline_enabled(void)
{
	return sink.enabled;
}

/* The soft limit: stop reading (one message may still add a batch). */
bool
pipeline_full(void)
{
	return event_queue_length() >= stream_queue_max;
}

/* Room enough to reopen a stream closed because the queue was full. */
bool
pipeline_has_room(void)
{
	return event_queue_length() < stream_queue_max / 2;
}

/* Forget queued events (the stream restarts from the slot's position). */
void
pipeline_reset(void)
{
	event_queue_clear();
	sink.acked = 0;
	memset(&last_queued_id, 0, sizeof(last_queued_id));
	last_queued_commit = InvalidXLogRecPtr;
}

void
pipeline_add_event(const StreamEvent *event)
{
	/* already queued (a reopened stream starts again at the slot) */
	if (last_queued_id.lsn != 0 && !EVENT_ID_LT(last_queued_id, event->id))
		return;
	last_queued_id = event->id;
	event_queue_push(event);
}

/* The sink has every queued event: it is complete up to lsn. */
static void
advance_caught_up(XLogRecPtr lsn)
{
	if (sink.enabled && sink.acked >= event_queue_length() && lsn > sink.confirmed)
		sink.confirmed = lsn;
}

/* Its commit marker: the transaction's events are all in the queue. */
void
pipeline_commit(XLogRecPtr end_lsn)
{
	if (end_lsn <= last_queued_commit)
		return;					/* seen before the stream was reopened */
	last_queued_commit = end_lsn;
	if (event_queue_length() > 0)
		QUEUE_AT(event_queue_length() - 1).txn_end = end_lsn;
	advance_caught_up(end_lsn);	/* the sink had its events already */
}

/* No event pending before lsn (progress message or keepalive). */
void
pipeline_idle_position(XLogRecPtr lsn)
{
	if (event_queue_length() == 0)
		advance_caught_up(lsn);
}

/* Nothing queued: everything received is acknowledged. */
bool
pipeline_idle(void)
{
	return event_queue_length() == 0;
}

/* What the sink has: the position the slot may confirm. */
XLogRecPtr
pipeline_confirmed(void)
{
	return sink.confirmed;
}

/* Drop the events the sink acknowledged. */
static void
pop_acknowledged(void)
{
	event_queue_pop(sink.acked);
	sink.acked = 0;
}

static void
schedule_retry(Sink *s, SinkResultCode code)
{
	int			base;

	if (code == SINK_FATAL_CONFIG)
		base = stream_backoff_max_ms;	/* bad settings: retry slowly */
	else
		base = s->backoff_ms == 0 ? stream_backoff_min_ms
			: Min(s->backoff_ms * 2, stream_backoff_max_ms);
	s->backoff_ms = base;
	/* jitter: up to half again, so many workers do not retry in step */
	s->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											  base + (int) pg_prng_uint64_range(&pg_global_prng_state, 0, base / 2));
}

static void
note_failure(Sink *s, SinkResultCode code, const char *error)
{
	/* log state changes, not retries; a flapping sink once a minute */
	if (!s->failing && !s->warned &&
		TimestampDifferenceExceeds(s->warned_at, GetCurrentTimestamp(), 60000))
	{
		ereport(WARNING,
				(errmsg("ticket_ext: %s sink failing, retrying with backoff: %s",
						s->ops->name, error)));
		s->warned = true;
		s->warned_at = GetCurrentTimestamp();
	}
	s->failing = true;
	sink_status_note_retry(s->index, code == SINK_THROTTLED);
	status_update(s, code == SINK_FATAL_CONFIG ? SINK_STATE_ERROR :
				  code == SINK_THROTTLED ? SINK_STATE_THROTTLED : SINK_STATE_RETRYING,
				  error);
	if (code != SINK_THROTTLED && code != SINK_PARTIAL && s->connected)
	{
		s->ops->disconnect(s);
		s->connected = false;
	}
	schedule_retry(s, code);
}

/* Histogram bucket of a commit -> ack delay. */
static int
delay_bucket(TimestampTz commit, TimestampTz now)
{
	double		ms = (double) (now - commit) / 1000.0;
	int			b;

	for (b = 0; b < DELAY_BUCKETS - 1; b++)
		if (ms < delay_bucket_ms[b])
			break;
	return b;
}

static void
note_progress(Sink *s, int acked)
{
	StreamEvent *last = QUEUE_AT(s->acked + acked - 1).event;
	TimestampTz now = GetCurrentTimestamp();
	uint64		hist[DELAY_BUCKETS] = {0};
	int			i;

	for (i = 0; i < acked; i++)
	{
		TimestampTz commit = QUEUE_AT(s->acked + i).event->commit_time;

		if (commit != 0)
			hist[delay_bucket(commit, now)]++;
	}
	if (s->warned)
		ereport(LOG,
				(errmsg("ticket_ext: %s sink recovered", s->ops->name)));
	s->warned = false;
	s->failing = false;
	s->backoff_ms = 0;
	s->retry_at = 0;
	advance_sink(s, acked);
	if (s->ops->position_target)
		sink_position_save(s->ops->name, s->ops->position_target(), &s->last_id);
	sink_status_note_acked(s->index, acked, last->id.lsn, hist);
}

/* The sink has the next n queued events: move its position past them. */
static void
advance_sink(Sink *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		QueuedEvent *q = &QUEUE_AT(s->acked + i);

		if (q->txn_end != InvalidXLogRecPtr && q->txn_end > s->confirmed)
			s->confirmed = q->txn_end;
		/* skipping a replay passes older events: the position never goes back */
		if (EVENT_ID_LT(s->last_id, q->event->id))
			s->last_id = q->event->id;
	}
	s->acked += n;
}

/* After a replay, skip what the sink acknowledged before. */
static void
skip_known(Sink *s)
{
	int			n = 0;

	while (s->acked + n < event_queue_length() &&
		   !EVENT_ID_LT(s->last_id, QUEUE_AT(s->acked + n).event->id))
		n++;
	if (n > 0)
		advance_sink(s, n);
}

/* Connect a sink in the per-call memory context. */
static SinkResultCode
connect_sink(Sink *s, char *error, int errlen)
{
	MemoryContext old = MemoryContextSwitchTo(send_cxt);
	SinkResultCode rc = s->ops->connect(s, error, errlen);

	MemoryContextSwitchTo(old);
	MemoryContextReset(send_cxt);
	return rc;
}

/* Connect, send the next batch, account for it. */
static void
work_sink(Sink *s, TimestampTz now)
{
	StreamEvent *batch[1024];
	SinkResult	result;
	int			n;
	int			i;
	char		error[256];

	if (!s->enabled || (s->retry_at != 0 && now < s->retry_at))
		return;
	/* connect even with nothing to send: the status shows bad settings early */
	if (!s->connected)
	{
		SinkResultCode rc;

		status_update(s, SINK_STATE_CONNECTING, NULL);
		rc = connect_sink(s, error, sizeof(error));
		if (rc != SINK_OK)
		{
			note_failure(s, rc, error);
			return;
		}
		s->connected = true;
		status_update(s, SINK_STATE_OK, NULL);
	}
	skip_known(s);
	if (s->acked >= event_queue_length())
		return;
	n = Min(Min(event_queue_length() - s->acked, stream_batch_size), (int) lengthof(batch));
	for (i = 0; i < n; i++)
		batch[i] = QUEUE_AT(s->acked + i).event;
	memset(&result, 0, sizeof(result));
	{
		/* whatever a sink allocates for one call is gone after it */
		MemoryContext old = MemoryContextSwitchTo(send_cxt);

		bool		was_adopted = s->adopted;

		s->ops->send(s, batch, n, &result);
		MemoryContextSwitchTo(old);
		MemoryContextReset(send_cxt);
		if (s->adopted && !was_adopted)
			save_origin(s);		/* the sink took a write from this slot */
	}
	if (result.acked > 0)
		note_progress(s, Min(result.acked, n));
	if (result.code != SINK_OK)
		note_failure(s, result.code, result.error);
}

/*
 * Send what is queued, if the sink may send now.  Returns how long (ms)
 * until it may send again: 0 = at once, -1 = nothing to send.
 */
long
pipeline_work(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait = -1;
	TimestampTz oldest = 0;

	work_sink(&sink, now);
	pop_acknowledged();

	now = GetCurrentTimestamp();
	if (sink.enabled && event_queue_length() > 0)
	{
		wait = 0;				/* more to send right away */
		oldest = QUEUE_AT(0).event->commit_time;
		if (sink.retry_at > now)
			wait = (long) ((sink.retry_at - now) / 1000) + 1;
	}
	sink_status_set_oldest_unacked(sink.index, oldest);
	stream_status_set_queued(sink.index, event_queue_length());
	return wait;
}
