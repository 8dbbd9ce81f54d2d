/*
 * event.h
 *	  One decoded event of the output plugin, and parsing it
 *	  (bgworker/stream/event.c).  Frontend-safe: test/fuzz builds it alone.
 */
#ifndef TICKET_EVENT_H
#define TICKET_EVENT_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

/* Event ids order events: commit LSN, then position in the transaction. */
typedef struct EventId
{
	uint64		lsn;
	uint32		seq;
} EventId;

#define EVENT_ID_LT(a, b) ((a).lsn < (b).lsn || ((a).lsn == (b).lsn && (a).seq < (b).seq))

#include "event_fields.h"

typedef struct StreamEvent
{
	EventId		id;
	int64		item_id;
	bool		no_item;		/* snapshot_end: of no item (item_id 0) */
	uint32		xid;			/* its transaction, 0 for snapshot events */
	TimestampTz commit_time;
	char	   *json;			/* the output plugin's JSON object */
	int			json_len;
	/* flat fields for sinks that want them (Redis): names and values */
	int			nfields;
	const char *field_names[NUM_EVENT_FIELDS];
	char	   *field_values[NUM_EVENT_FIELDS];
} StreamEvent;

typedef enum StreamMessageKind
{
	MSG_EVENT,
	MSG_COMMIT,					/* end of a transaction that had events */
	MSG_PROGRESS,				/* a transaction without events */
	MSG_INVALID
} StreamMessageKind;

/* parse one line of output plugin output (json is NUL-terminated) */
extern StreamMessageKind stream_parse_message(char *json, int len,
											  StreamEvent *event,
											  XLogRecPtr *end_lsn,
											  char **error);

#endif
