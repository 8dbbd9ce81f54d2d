/*-------------------------------------------------------------------------
 *
 * event_queue.c
 *	  The streaming worker's queue of decoded events: a ring buffer that
 *	  grows as needed, each event one allocation in its own memory
 *	  context, which is reset whenever the queue empties so the worker's
 *	  memory stays flat however many events pass through.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "event_queue.h"
#include "utils/memutils.h"

static QueuedEvent *queue = NULL;	/* ring buffer */
static int	queue_cap = 0;
static int	queue_head = 0;
static int	queue_len = 0;
static MemoryContext queue_cxt = NULL;

#define QUEUE_AT(i) (queue[(queue_head + (i)) % queue_cap])

void
event_queue_init(void)
{
	queue_cxt = AllocSetContextCreate(TopMemoryContext, "ticket_ext stream queue",
									  ALLOCSET_DEFAULT_SIZES);
	queue_cap = 1024;			/* grows as needed, up to about stream_queue_max */
	queue = MemoryContextAllocZero(TopMemoryContext, sizeof(QueuedEvent) * queue_cap);
	queue_head = queue_len = 0;
}

int
event_queue_length(void)
{
	return queue_len;
}

/* The i-th queued event, 0 = the oldest. */
QueuedEvent *
event_queue_at(int i)
{
	Assert(i >= 0 && i < queue_len);
	return &QUEUE_AT(i);
}

/* Make room for one more event: the ring grows past the soft limit. */
static void
ensure_room(void)
{
	QueuedEvent *bigger;
	int			i;

	if (queue_len < queue_cap)
		return;
	bigger = MemoryContextAllocZero(TopMemoryContext, sizeof(QueuedEvent) * queue_cap * 2);
	for (i = 0; i < queue_len; i++)
		bigger[i] = QUEUE_AT(i);
	pfree(queue);
	queue = bigger;
	queue_head = 0;
	queue_cap *= 2;
}

/* Copy an event into a single allocation, so popping it frees it whole. */
static StreamEvent *
copy_event(const StreamEvent *src)
{
	Size		size = MAXALIGN(sizeof(StreamEvent)) + src->json_len + 1;
	StreamEvent *dst;
	char	   *p;
	int			i;

	for (i = 0; i < src->nfields; i++)
		size += strlen(src->field_values[i]) + 1;
	dst = MemoryContextAlloc(queue_cxt, size);
	memcpy(dst, src, sizeof(StreamEvent));
	p = (char *) dst + MAXALIGN(sizeof(StreamEvent));
	memcpy(p, src->json, src->json_len);
	p[src->json_len] = '\0';
	dst->json = p;
	p += src->json_len + 1;
	for (i = 0; i < src->nfields; i++)
	{
		size_t		n = strlen(src->field_values[i]) + 1;

		memcpy(p, src->field_values[i], n);
		dst->field_values[i] = p;
		p += n;
	}
	return dst;
}

void
event_queue_push(const StreamEvent *event)
{
	QueuedEvent *q;

	ensure_room();
	q = &QUEUE_AT(queue_len);
	q->event = copy_event(event);
	q->txn_end = InvalidXLogRecPtr;
	queue_len++;
}

/* Drop the n oldest events. */
void
event_queue_pop(int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		QueuedEvent *q = &QUEUE_AT(0);

		pfree(q->event);
		q->event = NULL;
		queue_head = (queue_head + 1) % queue_cap;
		queue_len--;
	}
	if (queue_len == 0)
		MemoryContextReset(queue_cxt);	/* keep the worker's memory flat */
}

/* Forget every queued event. */
void
event_queue_clear(void)
{
	event_queue_pop(queue_len);
	queue_head = 0;
}
