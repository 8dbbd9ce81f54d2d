/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  The core shared by every sink: a bounded queue of decoded events,
 *	  per-sink progress, batching, retries with capped exponential backoff
 *	  and jitter, and the one rule for the replication slot: confirm only
 *	  the end of a transaction whose events every enabled sink has
 *	  acknowledged.
 *
 * Batching comes for free: the worker drains whatever the walsender has
 * sent before each round of sends, so an idle stream sends one event at a
 * time (low latency) and a busy one sends full batches.
 *
 * Sinks do not hold each other up: when the queue is full and one sink is
 * failing while the others have everything, the failing sink is detached
 * (its backlog leaves memory; the slot, confirmed no further than that
 * sink's position, keeps it).  Once the sink answers again the stream
 * restarts from the slot; every sink skips what it already acknowledged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "event_queue.h"
#include "stream.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"


static const SinkOps *const all_sinks[] = {&redis_sink_ops, &kinesis_sink_ops};
#define NUM_SINKS lengthof(all_sinks)

static Sink sinks[NUM_SINKS];
static MemoryContext send_cxt = NULL;	/* reset after every sink call */
static bool replay_wanted = false;

#define QUEUE_AT(i) (*event_queue_at(i))

static void advance_sink(Sink *s, int n);

static void
status_update(Sink *s, SinkState state, const char *error)
{
	SinkStatus *st = &stream_shared->sinks[s->index];

	SpinLockAcquire(&stream_shared->mutex);
	st->state = state;
	if (error != NULL)
	{
		strlcpy(st->last_error, error, sizeof(st->last_error));
		st->last_error_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&stream_shared->mutex);
}

void
pipeline_init(void)
{
	int			i;

	event_queue_init();
	send_cxt = AllocSetContextCreate(TopMemoryContext, "ticket_ext sink call",
									 ALLOCSET_DEFAULT_SIZES);
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->nsinks = NUM_SINKS;
	for (i = 0; i < (int) NUM_SINKS; i++)
		strlcpy(stream_shared->sinks[i].name, all_sinks[i]->name,
				sizeof(stream_shared->sinks[i].name));
	SpinLockRelease(&stream_shared->mutex);
	for (i = 0; i < (int) NUM_SINKS; i++)
	{
		sinks[i].ops = all_sinks[i];
		sinks[i].index = i;
	}
	pipeline_reload();
}

/* Settings changed: sinks reconnect with the new ones, on or off. */
void
pipeline_reload(void)
{
	int			i;

	for (i = 0; i < (int) NUM_SINKS; i++)
	{
		Sink	   *s = &sinks[i];
		bool		was = s->enabled;

		if (s->connected)
			s->ops->disconnect(s);
		s->connected = false;
		s->enabled = s->ops->enabled();
		s->retry_at = 0;
		s->backoff_ms = 0;
		if (s->enabled && !was)
		{
			/* a newly enabled sink starts from now, or after its saved position */
			s->acked = event_queue_length();
			s->confirmed = pipeline_confirmed();
			s->detached = false;
			if (s->ops->position_target &&
				sink_position_load(s->ops->name, s->ops->position_target(), &s->last_id))
				ereport(LOG,
						(errmsg("ticket_ext: %s sink resumes after event %X/%X-%u",
								s->ops->name, LSN_FORMAT_ARGS(s->last_id.lsn), s->last_id.seq)));
		}
		status_update(s, s->enabled ? SINK_STATE_CONNECTING : SINK_STATE_DISABLED, NULL);
	}
}

bool
pipeline_any_enabled(void)
{
	int			i;

	for (i = 0; i < (int) NUM_SINKS; i++)
		if (sinks[i].enabled)
			return true;
	return false;
}

/* The soft limit: stop reading (one message may still add a batch). */
bool
pipeline_full(void)
{
	return event_queue_length() >= stream_queue_max;
}

/* Forget queued events (the stream restarts from the slot's position). */
void
pipeline_reset(void)
{
	int			i;

	event_queue_clear();
	for (i = 0; i < (int) NUM_SINKS; i++)
		sinks[i].acked = 0;
}

void
pipeline_add_event(const StreamEvent *event)
{
	event_queue_push(event);
}

/* Sinks that have every queued event are complete up to lsn. */
static void
advance_caught_up(XLogRecPtr lsn)
{
	int			i;

	for (i = 0; i < (int) NUM_SINKS; i++)
	{
		Sink	   *s = &sinks[i];

		if (s->enabled && !s->detached && s->acked >= event_queue_length() && lsn > s->confirmed)
			s->confirmed = lsn;
	}
}

/* Its commit marker: the transaction's events are all in the queue. */
void
pipeline_commit(XLogRecPtr end_lsn)
{
	if (event_queue_length() > 0)
		QUEUE_AT(event_queue_length() - 1).txn_end = end_lsn;
	advance_caught_up(end_lsn);	/* sinks that had its events already */
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

/* What every enabled sink has: the position the slot may confirm. */
XLogRecPtr
pipeline_confirmed(void)
{
	XLogRecPtr	min = InvalidXLogRecPtr;
	bool		any = false;
	int			i;

	for (i = 0; i < (int) NUM_SINKS; i++)
		if (sinks[i].enabled && (!any || sinks[i].confirmed < min))
		{
			min = sinks[i].confirmed;
			any = true;
		}
	return min;
}

/* A detached sink answers again: restart the stream from the slot. */
bool
pipeline_replay_wanted(void)
{
	bool		wanted = replay_wanted;

	replay_wanted = false;
	return wanted;
}

/* Drop the events every attached sink acknowledged. */
static void
pop_acknowledged(void)
{
	int			done = event_queue_length();
	bool		any = false;
	int			i;

	for (i = 0; i < (int) NUM_SINKS; i++)
		if (sinks[i].enabled && !sinks[i].detached)
		{
			done = Min(done, sinks[i].acked);
			any = true;
		}
	if (!any)
		done = 0;
	event_queue_pop(done);
	for (i = 0; i < (int) NUM_SINKS; i++)
		sinks[i].acked = Max(sinks[i].acked - done, 0);
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
	SinkStatus *st = &stream_shared->sinks[s->index];

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
	SpinLockAcquire(&stream_shared->mutex);
	st->retries++;
	if (code == SINK_THROTTLED)
		st->throttles++;
	SpinLockRelease(&stream_shared->mutex);
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
	SinkStatus *st = &stream_shared->sinks[s->index];
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
	SpinLockAcquire(&stream_shared->mutex);
	st->events_sent += acked;
	st->requests++;
	st->acked_lsn = last->id.lsn;
	st->state = SINK_STATE_OK;
	for (i = 0; i < DELAY_BUCKETS; i++)
		st->delay_hist[i] += hist[i];
	SpinLockRelease(&stream_shared->mutex);
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

/*
 * The queue is full and waits for s alone, which is failing: let go of
 * its backlog so the other sinks go on.
 */
static void
maybe_detach(Sink *s, TimestampTz now)
{
	int			i;

	if (s->detached || !pipeline_full() || s->retry_at <= now || s->acked >= event_queue_length())
		return;
	for (i = 0; i < (int) NUM_SINKS; i++)
		if (&sinks[i] != s && sinks[i].enabled && !sinks[i].detached &&
			sinks[i].acked < event_queue_length())
			return;				/* another sink still has work here */
	s->detached = true;
	ereport(WARNING,
			(errmsg("ticket_ext: %s sink detached from the live stream; it will catch up from the slot when it answers",
					s->ops->name)));
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

/* A detached sink: once it answers again, ask for a replay from the slot. */
static void
probe_detached(Sink *s, TimestampTz now)
{
	char		error[256];
	SinkResultCode rc;

	if (s->retry_at > now)
		return;
	rc = connect_sink(s, error, sizeof(error));
	if (rc != SINK_OK)
	{
		note_failure(s, rc, error);
		return;
	}
	s->connected = true;
	s->detached = false;
	replay_wanted = true;
	ereport(LOG,
			(errmsg("ticket_ext: %s sink answers again; replaying from the slot", s->ops->name)));
}

/* One sink: connect if needed, send the next batch, account for it. */
static void
work_sink(Sink *s, TimestampTz now)
{
	StreamEvent *batch[1024];
	SinkResult	result;
	int			n;
	int			i;
	char		error[256];

	if (!s->enabled)
		return;
	if (s->detached)
	{
		probe_detached(s, now);
		return;
	}
	if (s->retry_at != 0 && now < s->retry_at)
	{
		maybe_detach(s, now);
		return;
	}
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

		s->ops->send(s, batch, n, &result);
		MemoryContextSwitchTo(old);
		MemoryContextReset(send_cxt);
	}
	if (result.acked > 0)
		note_progress(s, Min(result.acked, n));
	if (result.code != SINK_OK)
		note_failure(s, result.code, result.error);
}

/*
 * Send what is queued to every sink that may send now.  Returns how long
 * (ms) until a sink may send again: 0 = at once, -1 = nothing to send.
 */
long
pipeline_work(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait = -1;
	int			i;

	for (i = 0; i < (int) NUM_SINKS; i++)
		work_sink(&sinks[i], now);
	pop_acknowledged();

	now = GetCurrentTimestamp();
	for (i = 0; i < (int) NUM_SINKS; i++)
	{
		Sink	   *s = &sinks[i];
		SinkStatus *st = &stream_shared->sinks[i];
		TimestampTz oldest = 0;

		if (s->enabled && s->detached && s->retry_at > now)
		{
			long		ms = (long) ((s->retry_at - now) / 1000) + 1;

			wait = (wait < 0) ? ms : Min(wait, ms);
		}
		else if (s->enabled && !s->detached && s->acked < event_queue_length())
		{
			long		ms = 0;		/* more to send right away */

			oldest = QUEUE_AT(s->acked).event->commit_time;
			if (s->retry_at > now)
				ms = (long) ((s->retry_at - now) / 1000) + 1;
			wait = (wait < 0) ? ms : Min(wait, ms);
		}
		SpinLockAcquire(&stream_shared->mutex);
		st->oldest_unacked_commit = oldest;
		SpinLockRelease(&stream_shared->mutex);
	}
	SpinLockAcquire(&stream_shared->mutex);
	stream_shared->queued = event_queue_length();
	SpinLockRelease(&stream_shared->mutex);
	return wait;
}
