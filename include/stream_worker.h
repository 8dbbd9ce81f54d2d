/*
 * stream_worker.h
 *	  A sink worker's identity (bgworker/stream/stream_worker.c) and the care of
 *	  its slot (bgworker/stream/worker_slot.c).
 */
#ifndef TICKET_STREAM_WORKER_H
#define TICKET_STREAM_WORKER_H

#include "stream.h"

extern int	stream_worker_sink;			/* this worker's sink, index in the sink list */
extern const SinkOps *stream_worker_ops;
extern const char *stream_worker_slot(void);

extern int	slot_prepare(SlotOrigin *slot_origin, char *err, int errlen);
extern bool drop_own_slot(const char *why);
extern void drop_leftovers(void);
extern bool slot_lost(XLogRecPtr *at);
extern bool note_slot_lost(void);
extern void note_slot_wait(int walsender_pid);
extern void check_retained_wal(bool streaming);

#endif
