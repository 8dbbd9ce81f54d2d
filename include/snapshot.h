/*
 * snapshot.h
 *	  A new slot's snapshot of the tables as events (bgworker/stream/snapshot.c).
 */
#ifndef TICKET_SNAPSHOT_H
#define TICKET_SNAPSHOT_H

#include "postgres.h"
#include "access/xlogdefs.h"

extern bool snapshot_dump(const char *sink, uint64 origin, XLogRecPtr start,
						  uint32 *events, char *err, int errlen);
extern bool snapshot_spilled(const char *sink, uint64 origin);
extern void snapshot_discard(const char *sink);
extern void snapshot_rewind(void);
extern bool snapshot_feed(const char *sink, uint64 origin);

#endif
