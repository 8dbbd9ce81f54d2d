/*-------------------------------------------------------------------------
 *
 * event.c
 *	  Parsing the output plugin's JSON messages into StreamEvents, with
 *	  PostgreSQL's own JSON parser (common/jsonapi.h).
 *
 * Messages are flat JSON objects of strings, numbers and nulls (see
 * bgworker/stream/output_plugin.c).  Anything else is refused, never guessed at.
 * Only frontend-safe calls are used here, so test/fuzz can run this file
 * outside the server.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "event.h"
#include "event_fields.h"
#include "json_lex.h"
#include "mb/pg_wchar.h"

#define EVENT_FIELD_NAME(id, name) name,
const char *const event_field_names[NUM_EVENT_FIELDS] = {
	EVENT_FIELD_LIST(EVENT_FIELD_NAME)
};

typedef struct ParseState
{
	StreamEvent *event;
	int			depth;
	int			field;			/* index into event_field_names, -1 = unknown */
	bool		bad;
	const char *why;
	char	   *type;
	char	   *values[NUM_EVENT_FIELDS];
} ParseState;

static void
obj_start(void *arg)
{
	ParseState *st = arg;

	if (++st->depth > 1)
	{
		st->bad = true;
		st->why = "nested object";
	}
}

static void
obj_end(void *arg)
{
	((ParseState *) arg)->depth--;
}

static void
array_start(void *arg)
{
	ParseState *st = arg;

	st->bad = true;
	st->why = "array";
}

static void
field_start(void *arg, char *fname, bool isnull)
{
	ParseState *st = arg;
	int			i;

	st->field = -1;
	for (i = 0; i < (int) NUM_EVENT_FIELDS; i++)
		if (strcmp(fname, event_field_names[i]) == 0)
			st->field = i;
	pfree(fname);
}

static void
scalar(void *arg, char *token, JsonTokenType type)
{
	ParseState *st = arg;

	if (st->depth != 1)
	{
		st->bad = true;
		st->why = "not an object";
	}
	else if (st->field < 0)
		;						/* fields we do not know are ignored */
	else if ((type == JSON_TOKEN_TRUE || type == JSON_TOKEN_FALSE) &&
			 st->field != EVF_LAST && st->field != EVF_PAUSED)
	{
		st->bad = true;
		st->why = "boolean value";
	}
	else
	{
		char	  **value = &st->values[st->field];

		/* a repeated key: the last wins, and null forgets an earlier value */
		if (*value)
			pfree(*value);
		*value = (type == JSON_TOKEN_NULL) ? NULL : token;
		if (*value)
			return;				/* the value keeps the token */
	}
	if (token)
		pfree(token);
}

/* "<lsn>-<seq>" with both parts decimal */
static bool
parse_event_id(const char *s, EventId *id)
{
	char	   *end;
	unsigned long long lsn;
	unsigned long seq;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	lsn = strtoull(s, &end, 10);
	if (errno != 0 || *end != '-' || end[1] < '0' || end[1] > '9')
		return false;
	seq = strtoul(end + 1, &end, 10);
	if (errno != 0 || *end != '\0' || seq > PG_UINT32_MAX)
		return false;
	id->lsn = (uint64) lsn;
	id->seq = (uint32) seq;
	return true;
}

static bool
parse_int64(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64) v;
	return true;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
static int64
days_from_civil(int y, int m, int d)
{
	int			era;
	unsigned	yoe;
	unsigned	doy;
	unsigned	doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned) (y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int64) era * 146097 + (int64) doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" -> TimestampTz; 0 if malformed */
static TimestampTz
parse_commit_time(const char *s)
{
	int			y, mo, d, h, mi, sec, usec;
	char		z;

	if (s == NULL ||
		sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &y, &mo, &d, &h, &mi, &sec, &usec, &z) != 8 ||
		z != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
		sec > 60 || usec < 0)
		return 0;
	return ((days_from_civil(y, mo, d) - days_from_civil(2000, 1, 1)) * 86400 +
			h * 3600 + mi * 60 + sec) * USECS_PER_SEC + usec;
}

/*
 * A parsed string in UTF-8.  The output is ASCII in a database that is not
 * UTF-8 (text as \u escapes), and the server's JSON parser turns escapes
 * into the database's encoding: back to UTF-8 for the sinks.  The worker
 * set its client encoding to UTF-8 (stream_worker.c), so this conversion
 * needs no catalog lookup, outside any transaction.
 */
static char *
to_utf8(char *value)
{
#ifndef FRONTEND
	if (GetDatabaseEncoding() != PG_UTF8)
	{
		char	   *utf8 = pg_server_to_client(value, strlen(value));

		if (utf8 != value)
		{
			pfree(value);
			return utf8;
		}
	}
#endif
	return value;
}

/* an xid (decimal), 0 when absent or malformed */
static uint32
parse_xid(const char *s)
{
	int64		v;

	return parse_int64(s, &v) && v > 0 && v <= PG_UINT32_MAX ? (uint32) v : 0;
}

/* Free the values the caller did not take over; pass kind through. */
static StreamMessageKind
finish(ParseState *st, StreamMessageKind kind)
{
	int			i;

	for (i = 0; i < (int) NUM_EVENT_FIELDS; i++)
		if (st->values[i])
			pfree(st->values[i]);
	return kind;
}

/* "X/Y" (hex) -> LSN; false if malformed */
static bool
parse_lsn(const char *s, XLogRecPtr *lsn)
{
	unsigned int hi,
				lo;
	int			n = 0;

	if (s == NULL || sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
		return false;
	*lsn = ((uint64) hi << 32) | lo;
	return true;
}

/*
 * Parse one line (a JSON object).  For MSG_EVENT the event is filled in
 * (strings are palloc'd in the current memory context, json is kept by
 * reference); for MSG_COMMIT and MSG_PROGRESS, *end_lsn is the position
 * the stream is complete up to.
 */
StreamMessageKind
stream_parse_message(char *json, int len, StreamEvent *event,
					 XLogRecPtr *end_lsn, char **error)
{
	ParseState	st = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex;
	JsonParseErrorType rc;
	const char *type;
	int			i;

	st.event = event;
	st.field = -1;
	sem.semstate = &st;
	sem.object_start = obj_start;
	sem.object_end = obj_end;
	sem.array_start = array_start;
	sem.object_field_start = field_start;
	sem.scalar = scalar;

	lex = makeJsonLexContextCstringLen(json, len, PG_UTF8, true);
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
		*error = psprintf("invalid JSON near byte %d (parse error %d)",
						  (int) (lex->token_start - lex->input), (int) rc);
	free_json_lex(lex);
	if (rc != JSON_SUCCESS)
		return finish(&st, MSG_INVALID);
	if (st.bad)
	{
		*error = psprintf("unexpected message shape: %s", st.why);
		return finish(&st, MSG_INVALID);
	}
	type = st.values[EVF_TYPE];
	if (type == NULL)
	{
		*error = pstrdup("message without \"type\"");
		return finish(&st, MSG_INVALID);
	}
	if (strcmp(type, "commit") == 0 || strcmp(type, "progress") == 0)
	{
		if (!parse_lsn(st.values[EVF_END_LSN], end_lsn))
		{
			*error = pstrdup("commit or progress message without a valid end_lsn");
			return finish(&st, MSG_INVALID);
		}
		return finish(&st, type[0] == 'c' ? MSG_COMMIT : MSG_PROGRESS);
	}

	memset(event, 0, sizeof(StreamEvent));
	/* the end of a snapshot is the one event of no item */
	if (!parse_event_id(st.values[EVF_EVENT_ID], &event->id) ||
		(!parse_int64(st.values[EVF_ITEM_ID], &event->item_id) &&
		 !(strcmp(type, "snapshot_end") == 0 && st.values[EVF_ITEM_ID] == NULL)))
	{
		*error = pstrdup("event without a valid event_id or item_id");
		return finish(&st, MSG_INVALID);
	}
	event->no_item = st.values[EVF_ITEM_ID] == NULL;
	event->xid = parse_xid(st.values[EVF_XID]);
	event->commit_time = parse_commit_time(st.values[EVF_COMMIT_TIME]);
	event->json = json;
	event->json_len = len;
	for (i = 0; i < (int) NUM_EVENT_FIELDS; i++)
	{
		/*
		 * These always, "" for null; the others only when they have a
		 * value (so a NULL holder and '' stay distinct); end_lsn and origin
		 * never (origin is the sink's to add).
		 */
		bool		always = (i == EVF_EVENT_ID || i == EVF_TYPE || i == EVF_ITEM_ID ||
							  i == EVF_HOLD_ID || i == EVF_QTY || i == EVF_COMMIT_TIME ||
							  i == EVF_LSN || i == EVF_XID);

		if (i == EVF_END_LSN || i == EVF_ORIGIN || (!always && st.values[i] == NULL))
			continue;
		event->field_names[event->nfields] = event_field_names[i];
		event->field_values[event->nfields] = st.values[i] ? to_utf8(st.values[i]) : pstrdup("");
		event->nfields++;
		st.values[i] = NULL;	/* now the event's */
	}
	return finish(&st, MSG_EVENT);
}
