/*-------------------------------------------------------------------------
 *
 * event_queue.h
 *	  The streaming worker's queue of decoded events (event_queue.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_EVENT_QUEUE_H
#define TICKET_EVENT_QUEUE_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "event.h"

/* A queued event: the event (one allocation) and its transaction's end. */
typedef struct QueuedEvent
{
	StreamEvent *event;
	XLogRecPtr	txn_end;		/* set on the last event of its transaction */
} QueuedEvent;

extern void event_queue_init(void);
extern int	event_queue_length(void);
extern QueuedEvent *event_queue_at(int i);
extern void event_queue_push(const StreamEvent *event);
extern void event_queue_pop(int n);
extern void event_queue_clear(void);

#endif							/* TICKET_EVENT_QUEUE_H */
