/*
 * stream_slot.h
 *	  What shared memory says of a replication slot (bgworker/stream/stream_slot.c):
 *	  the one lookup the gate, the worker and the status view share.
 */
#ifndef TICKET_STREAM_SLOT_H
#define TICKET_STREAM_SLOT_H

#include "postgres.h"
#include "access/xlogdefs.h"

typedef struct StreamSlotInfo
{
	Oid			database;
	bool		persistent;		/* false while CREATE_REPLICATION_SLOT runs */
	int			active_pid;		/* 0 = no walsender uses it */
	XLogRecPtr	restart_lsn;
	XLogRecPtr	confirmed_flush;
	XLogRecPtr	invalidated_at; /* valid once max_slot_wal_keep_size took its WAL */
} StreamSlotInfo;

/* false if no slot of that name exists */
extern bool stream_slot_read(const char *name, StreamSlotInfo *info);

#endif
