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
 * Before anything is sent, the sink's position (what it holds, and from
 * which slot) is placed against the worker's slot (stream_history.c):
 * the sink skips what it has, starts on the slot, waits for a snapshot,
 * or refuses a slot older than what it holds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "event_queue.h"
#include "stream.h"
#include "stream_slot.h"
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

/* the slot the worker streams from, once it knows it */
static SlotOrigin slot;
static bool slot_known = false;
static bool slot_moved = false;
static bool slot_snapshot_available = false;
static XLogRecPtr replay_start = InvalidXLogRecPtr;	/* the stream replays all from here */
static bool snapshot_wanted = false;
static char conflict[512] = "";	/* the sink follows another slot or cluster: why */
static bool take_over = false;	/* an admin made this server the sink's source */

#define MAX_SEND_BATCH 8192			/* events per send, at most */

static void advance_sink(Sink *s, int n);
static void note_failure(Sink *s, SinkResultCode code, const char *error);

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

	if (s->connected)
		s->ops->disconnect(s);
	s->connected = false;
	s->placed = false;			/* another target may hold something else */
	s->enabled = s->ops->enabled();
	s->retry_at = 0;
	s->backoff_ms = 0;
	status_update(s, s->enabled ? SINK_STATE_CONNECTING : SINK_STATE_DISABLED, NULL);
}

/*
 * The slot the worker streams from: moved = confirmed past its start
 * (the sink acknowledged part of it once), snapshot_available = its
 * creation snapshot can still be sent.  The sink is placed against it
 * again before it sends.
 */
void
pipeline_set_slot(const SlotOrigin *origin, bool moved, bool snapshot_available)
{
	slot = *origin;
	slot_known = true;
	slot_moved = moved;
	slot_snapshot_available = snapshot_available;
	snapshot_wanted = false;
	sink.placed = false;
}

/*
 * The stream starts again at start (the slot's confirmed position).  With
 * nothing queued, it replays everything from there: the transaction of
 * the sink's position shows up again if it is not before start.
 */
void
pipeline_stream_started(XLogRecPtr start)
{
	replay_start = (event_queue_length() == 0 && last_queued_id.lsn == 0)
		? start : InvalidXLogRecPtr;
}

/* The worker drops the slot (to make a new one): nothing to place against. */
void
pipeline_forget_slot(void)
{
	slot_known = false;
	snapshot_wanted = false;
	sink.placed = false;
	conflict[0] = '\0';
}

/*
 * ticket_ext.stream_resnapshot(): the sink takes this server's new slot
 * even if another cluster (system identifier) wrote it last.
 */
void
pipeline_take_over(void)
{
	take_over = true;
}

/* Does the sink need a new slot with a snapshot (the worker makes it)? */
bool
pipeline_snapshot_wanted(void)
{
	return snapshot_wanted;
}

/* Is the sink fed by a newer slot than ours?  (the error says so) */
const char *
pipeline_history_conflict(void)
{
	return conflict[0] ? conflict : NULL;
}

/* What the sink holds, as last read or acknowledged. */
const SinkPosition *
pipeline_position(void)
{
	return &sink.pos;
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
	/*
	 * A sink that records its position confirms the slot only as far as it
	 * has recorded: one that later loses writes (Redis without AOF, a
	 * failover to a lagging replica) is then caught holding less than the
	 * slot was confirmed to (place_sink).
	 */
	if (sink.ops->position_in_send)
		return Min(sink.confirmed, sink.durable);
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

/*
 * The sink sent what its own limits allow (Kinesis's shard pace): not a
 * failure, no backoff; again in wait_ms.  Records refused for rate anyway
 * count as throttles, and the status says so until the next success.
 */
static void
note_paced(Sink *s, const SinkResult *result)
{
	s->retry_at = result->wait_ms > 0
		? TimestampTzPlusMilliseconds(GetCurrentTimestamp(), result->wait_ms) : 0;
	if (result->throttled > 0)
	{
		sink_status_note_retry(s->index, true);
		status_update(s, SINK_STATE_THROTTLED, result->error);
	}
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
	char		error[512];
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
	s->verified = true;			/* what it has now came from this stream */
	advance_sink(s, acked);
	if (!s->ops->position_in_send)
		(void) s->ops->write_position(s, &s->pos, error, sizeof(error));
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
		if (EVENT_ID_LT(s->pos.id, q->event->id))
		{
			s->pos.id = q->event->id;
			s->pos.xid = q->event->xid;
		}
	}
	s->acked += n;
}

/*
 * Is ev, just past the sink's position, proof that the sink's last event
 * came from another history under this very slot?  The stream replays
 * from the slot's confirmed position; when that is not beyond the sink's
 * last transaction, the replay must show it, with the same xid, before
 * anything later.  (A copy of a running server's files, slot included,
 * restored and run: the only fork a new origin does not reveal.)
 */
static bool
forked(Sink *s, const StreamEvent *ev)
{
	if (s->verified || s->pos.xid == 0 || replay_start == InvalidXLogRecPtr ||
		s->pos.id.lsn < replay_start)
		return false;
	if (ev->id.lsn == s->pos.id.lsn && ev->xid == s->pos.xid)
		return false;			/* pos's own transaction, later events */
	return true;
}

static void
history_forked(Sink *s, const StreamEvent *ev, const char *why)
{
	char		held[160];

	history_describe(&s->pos, held, sizeof(held));
	ereport(WARNING,
			(errmsg("ticket_ext: the %s sink holds %s, which this server's WAL history does not have (%s, at event %lu-%u)",
					s->ops->name, held, why, (unsigned long) ev->id.lsn, ev->id.seq),
			 errdetail("This server was restored from a copy of its files taken while it ran, or its history was otherwise replaced."),
			 errhint("The sink is brought up to date with a snapshot of the tables.")));
	snapshot_wanted = true;
}

/*
 * After a replay, skip what the sink acknowledged before: the events up
 * to its position, once the sink confirms it holds exactly those (where it
 * can tell); false if the sink may not send now.
 */
static bool
skip_known(Sink *s)
{
	StreamEvent *batch[1024];

	for (;;)
	{
		int			n = 0;
		bool		beyond = false;

		while (s->acked + n < event_queue_length() && n < (int) lengthof(batch))
		{
			StreamEvent *ev = QUEUE_AT(s->acked + n).event;

			if (EVENT_ID_LT(s->pos.id, ev->id))
			{
				if (forked(s, ev))
				{
					history_forked(s, ev, "its last transaction is not in the replay");
					return false;
				}
				s->verified = true;
				beyond = true;
				break;
			}
			if (ev->id.lsn == s->pos.id.lsn && ev->id.seq == s->pos.id.seq)
			{
				if (s->pos.xid != 0 && ev->xid != s->pos.xid)
				{
					history_forked(s, ev, "another transaction at its last event's position");
					return false;
				}
				s->verified = true;
			}
			batch[n++] = ev;
		}
		if (n == 0)
			return true;
		if (s->ops->check_delivered != NULL)
		{
			bool		same = true;
			char		error[512];
			SinkResultCode rc;
			MemoryContext old = MemoryContextSwitchTo(send_cxt);

			rc = s->ops->check_delivered(s, batch, n, &same, error, sizeof(error));
			MemoryContextSwitchTo(old);
			MemoryContextReset(send_cxt);
			if (rc != SINK_OK)
			{
				note_failure(s, rc, error);
				return false;
			}
			if (!same)
			{
				history_forked(s, batch[0], error);
				return false;
			}
		}
		advance_sink(s, n);
		if (beyond || s->acked >= event_queue_length())
			return true;
	}
}

/* The slot's confirmed position, as shared memory says now. */
static XLogRecPtr
slot_confirmed_now(void)
{
	StreamSlotInfo info;

	return stream_slot_read(slot.slot, &info) ? info.confirmed_flush : InvalidXLogRecPtr;
}

/*
 * Place the sink's position against the slot (once per connection or
 * slot): false while it may not send (a snapshot is wanted, it is ahead
 * of us, or its position could not be read or written).
 */
static bool
place_sink(Sink *s)
{
	SinkPosition pos;
	SinkResultCode rc;
	char		error[512];
	char		held[160];
	bool		had_some;
	bool		foreign;

	if (s->placed)
		return true;
	if (!slot_known || snapshot_wanted)
		return false;
	conflict[0] = '\0';			/* placing decides again */
	rc = s->ops->read_position(s, &pos, error, sizeof(error));
	if (rc != SINK_OK)
	{
		note_failure(s, rc, error);
		return false;
	}
	/* this process saw the sink take events of this slot (its snapshot, maybe) */
	had_some = s->pos.known && s->pos.origin == slot.origin &&
		(s->pos.id.lsn != 0 || s->pos.id.seq != 0);
	foreign = history_foreign(&pos) && !take_over;
	take_over = false;			/* an admin's word is for one placing */
	if (foreign)
	{
		history_describe(&pos, held, sizeof(held));
		s->pos = pos;
		snprintf(error, sizeof(error),
				 "history: the sink holds %s, written by another cluster (this one is system " UINT64_FORMAT "); "
				 "nothing is sent (to make this server its source: SELECT ticket_ext.stream_resnapshot('%s'))",
				 held, history_system_identifier(), s->ops->name);
		strlcpy(conflict, error, sizeof(conflict));
		note_failure(s, SINK_FATAL_CONFIG, error);
		return false;
	}
	if (had_some && (!pos.known || pos.origin != slot.origin))
	{
		/* emptied (FLUSHALL) or rewritten since: the queue no longer has it all */
		history_describe(&pos, held, sizeof(held));
		ereport(LOG,
				(errmsg("ticket_ext: the %s sink holds %s, not what this worker wrote to it: taking a snapshot",
						s->ops->name, held)));
		s->pos = pos;
		snapshot_wanted = true;
		return false;
	}
	switch (history_verdict(&pos, &slot, slot_moved, slot_snapshot_available))
	{
		case HISTORY_SAME:
			if (s->ops->position_in_send && pos.confirmed != InvalidXLogRecPtr &&
				slot_confirmed_now() > pos.confirmed)
			{
				history_describe(&pos, held, sizeof(held));
				ereport(WARNING,
						(errmsg("ticket_ext: the %s sink holds %s, less than it acknowledged: the slot was confirmed to %X/%X, it holds everything up to %X/%X only",
								s->ops->name, held, LSN_FORMAT_ARGS(slot_confirmed_now()),
								LSN_FORMAT_ARGS(pos.confirmed)),
						 errdetail("The sink lost acknowledged writes (no append-only file, or a failover to a replica that lagged)."),
						 errhint("It is brought up to date with a snapshot of the tables.")));
				s->pos = pos;
				snapshot_wanted = true;
				return false;
			}
			/* still what we saw it take (a reconnect), or to be checked */
			s->verified = s->verified && s->pos.origin == pos.origin &&
				s->pos.id.lsn == pos.id.lsn && s->pos.id.seq == pos.id.seq;
			s->pos = pos;
			if (s->pos.sysid == 0)
			{
				/* written before the identifier was kept: ours from now on */
				s->pos.sysid = history_system_identifier();
				s->pos.timeline = history_timeline();
			}
			s->durable = pos.confirmed != InvalidXLogRecPtr ? Max(pos.confirmed, s->durable)
				: s->confirmed;	/* a position from before: as then */
			break;
		case HISTORY_ADOPT:
			s->pos = history_adopt(&pos, &slot);
			s->pos.confirmed = slot_confirmed_now();	/* it has all it needs before */
			if (pos.known)
			{
				history_describe(&pos, held, sizeof(held));
				ereport(LOG,
						(errmsg("ticket_ext: the %s sink holds %s; it continues with slot \"%s\" (origin " UINT64_FORMAT ") and its snapshot",
								s->ops->name, held, slot.slot, slot.origin)));
			}
			rc = s->ops->write_position(s, &s->pos, error, sizeof(error));
			if (rc != SINK_OK)
			{
				note_failure(s, rc, error);
				return false;
			}
			s->verified = true;	/* nothing of this slot's to check */
			/* what it holds of this slot starts here (not where the last slot was) */
			s->confirmed = Max(s->confirmed, s->pos.confirmed);
			s->durable = s->confirmed;
			break;
		case HISTORY_SNAPSHOT:
			history_describe(&pos, held, sizeof(held));
			ereport(LOG,
					(errmsg("ticket_ext: the %s sink holds %s, which slot \"%s\" (origin " UINT64_FORMAT ") cannot continue: taking a snapshot",
							s->ops->name, held, slot.slot, slot.origin)));
			s->pos = pos;
			snapshot_wanted = true;
			return false;
		case HISTORY_AHEAD:
			history_describe(&pos, held, sizeof(held));
			s->pos = pos;
			snprintf(error, sizeof(error),
					 "history: the sink holds %s, newer than this server's slot (origin " UINT64_FORMAT "); "
					 "nothing is sent (to make this server its source: SELECT ticket_ext.stream_resnapshot('%s'))",
					 held, slot.origin, s->ops->name);
			strlcpy(conflict, error, sizeof(conflict));
			note_failure(s, SINK_FATAL_CONFIG, error);
			return false;
	}
	s->placed = true;
	if (!s->failing)
		status_update(s, SINK_STATE_OK, NULL);	/* a failing one: once a write works */
	return true;
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
	StreamEvent *batch[MAX_SEND_BATCH];
	SinkResult	result;
	int			n;
	int			i;
	char		error[512];

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
		s->placed = false;		/* what it holds may have changed meanwhile */
	}
	if (!place_sink(s) || !skip_known(s))
		return;
	if (s->acked >= event_queue_length())
		return;
	n = Min(Min(event_queue_length() - s->acked,
				s->ops->batch_size ? s->ops->batch_size() : stream_batch_size), (int) lengthof(batch));
	s->batch_confirmed = s->confirmed;
	for (i = 0; i < n; i++)
	{
		batch[i] = QUEUE_AT(s->acked + i).event;
		if (QUEUE_AT(s->acked + i).txn_end > s->batch_confirmed)
			s->batch_confirmed = QUEUE_AT(s->acked + i).txn_end;
	}
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
	if (result.acked >= n && s->batch_confirmed > s->durable)
		s->durable = s->batch_confirmed;	/* the sink wrote it with the batch */
	if (result.code == SINK_PACED)
		note_paced(s, &result);
	else if (result.code != SINK_OK)
		note_failure(s, result.code, result.error);
}

/*
 * Nothing pending and the stream moved on past other tables' WAL: a sink
 * that records its position records that too (once a second), so the
 * slot may be confirmed that far.
 */
static void
record_idle_progress(Sink *s)
{
	char		error[512];
	TimestampTz now = GetCurrentTimestamp();

	if (!s->ops->position_in_send || !s->enabled || !s->connected || !s->placed ||
		s->confirmed <= s->durable || s->acked < event_queue_length() ||
		!TimestampDifferenceExceeds(s->durable_at, now, 1000))
		return;
	s->durable_at = now;
	s->pos.confirmed = s->confirmed;
	if (s->ops->write_position(s, &s->pos, error, sizeof(error)) == SINK_OK)
		s->durable = s->confirmed;
	else
		note_failure(s, SINK_RETRY, error);
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
	record_idle_progress(&sink);

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
