/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  A new slot's snapshot of the tables, as events: every item
 *	  (snapshot_item: capacity, paused, how many active holds follow), its
 *	  held and sold holds (snapshot_hold: status), then one snapshot_end.
 *	  The way Debezium re-snapshots when its slot is new or lost.
 *
 * Read in the very snapshot the slot starts decoding from (the slot is
 * created with SNAPSHOT 'use' in a REPEATABLE READ transaction on the
 * replication connection), so the snapshot and the slot's events neither
 * overlap nor leave a gap.  Written to a spill file
 * ($PGDATA/ticket_ext.<sink>.snapshot) and fed to the queue from there
 * before the stream starts: the transaction never waits for a sink, a
 * table of any size never sits in memory, and a worker that restarts
 * before the sink has it all sends the rest again from the file.
 *
 * Ids: <slot start - 1>-<n>, below every event the slot decodes and in
 * order, so consumers and the pipeline treat the snapshot like one
 * transaction that committed just before the slot began; its last event
 * (snapshot_end) says "last" and how many there were.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "event_fields.h"
#include "event_text.h"
#include "libpq-fe.h"
#include "postmaster/interrupt.h"
#include "replication.h"
#include "snapshot.h"
#include "storage/fd.h"
#include "stream.h"
#include "utils/json.h"
#include "utils/memutils.h"

#define SNAPSHOT_SQL \
	"SELECT 0 AS kind, i.item_id, NULL::bigint, NULL::integer, NULL::text, NULL::text, " \
	"       i.capacity, i.paused, " \
	"       (SELECT count(*) FROM ticket_ext.holds h " \
	"         WHERE h.item_id = i.item_id AND h.ended_at IS NULL), " \
	"       array_to_string(ARRAY(SELECT jsonb_array_elements_text(to_jsonb(i) -> 'pool_ids')), ','), " \
	"       (to_jsonb(i) ->> 'holder_limit')::integer " \
	"  FROM ticket_ext.items i " \
	"UNION ALL " \
	"SELECT 1, h.item_id, h.hold_id, h.qty, h.holder, h.status, NULL, NULL, NULL, NULL, NULL " \
	"  FROM ticket_ext.holds h WHERE h.ended_at IS NULL " \
	" ORDER BY 2, 1, 3"

#define SNAPSHOT_TIME_SQL \
	"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

typedef struct Dump
{
	FILE	   *f;
	XLogRecPtr	lsn;			/* event ids: <lsn>-<n> */
	char		lsn_text[32];	/* the slot's start, as "lsn" */
	char		time[40];		/* commit_time of every snapshot event */
	uint32		n;
	int64		holds;
	int64		items;
} Dump;

static void
spill_name(char *name, size_t len, const char *sink, bool tmp)
{
	snprintf(name, len, "%s.snapshot%s", sink, tmp ? ".tmp" : "");
}

/* ,"<field>": */
static void
key(StringInfo out, EventField f)
{
	appendStringInfo(out, ",\"%s\":", event_field_names[f]);
}

/* a column as a JSON number, or null */
static void
number(StringInfo out, PGresult *res, int col)
{
	appendStringInfoString(out, PQgetisnull(res, 0, col) ? "null" : PQgetvalue(res, 0, col));
}

/* The fields every snapshot event starts with. */
static void
begin_event(StringInfo out, Dump *d, const char *type)
{
	appendStringInfo(out, "{\"%s\":\"" UINT64_FORMAT "-%u\"", event_field_names[EVF_EVENT_ID],
					 (uint64) d->lsn, d->n);
	key(out, EVF_V);
	appendStringInfo(out, "%d", EVENT_FORMAT_VERSION);
	key(out, EVF_TYPE);
	appendStringInfo(out, "\"%s\"", type);
}

static void
end_event(StringInfo out, Dump *d)
{
	key(out, EVF_COMMIT_TIME);
	appendStringInfo(out, "\"%s\"", d->time);
	key(out, EVF_LSN);
	appendStringInfo(out, "\"%s\"", d->lsn_text);
	key(out, EVF_XID);
	appendStringInfoString(out, "null");
}

static bool
write_line(Dump *d, StringInfo line)
{
	appendStringInfoChar(line, '\n');
	if (fwrite(line->data, 1, line->len, d->f) != (size_t) line->len)
		return false;
	d->n++;
	return true;
}

/* One row of SNAPSHOT_SQL: a snapshot_item or snapshot_hold event. */
static bool
dump_row(PGresult *res, void *arg)
{
	Dump	   *d = arg;
	StringInfoData line;
	bool		item = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
	bool		ok;

	if (ShutdownRequestPending)
		return false;
	initStringInfo(&line);
	begin_event(&line, d, item ? "snapshot_item" : "snapshot_hold");
	key(&line, EVF_ITEM_ID);
	number(&line, res, 1);
	key(&line, EVF_HOLD_ID);
	number(&line, res, 2);
	key(&line, EVF_QTY);
	number(&line, res, 3);
	key(&line, EVF_HOLDER);
	if (PQgetisnull(res, 0, 4))
		appendStringInfoString(&line, "null");
	else
		event_append_text(&line, PQgetvalue(res, 0, 4));
	end_event(&line, d);
	if (item)
	{
		key(&line, EVF_CAPACITY);
		number(&line, res, 6);
		key(&line, EVF_PAUSED);
		appendStringInfoString(&line, strcmp(PQgetvalue(res, 0, 7), "t") == 0 ? "true" : "false");
		key(&line, EVF_HOLDS);
		number(&line, res, 8);
		/* pools and holder limit (1.1; a 1.0 schema has neither: "", null) */
		key(&line, EVF_POOLS);
		event_append_text(&line, PQgetvalue(res, 0, 9));
		key(&line, EVF_HOLDER_LIMIT);
		number(&line, res, 10);
		d->items++;
	}
	else
	{
		key(&line, EVF_STATUS);
		escape_json(&line, PQgetvalue(res, 0, 5));
		d->holds++;
	}
	appendStringInfoChar(&line, '}');
	ok = write_line(d, &line);
	pfree(line.data);
	return ok;
}

static bool
take_time(PGresult *res, void *arg)
{
	strlcpy(((Dump *) arg)->time, PQgetvalue(res, 0, 0), sizeof(((Dump *) arg)->time));
	return true;
}

/*
 * Inside the transaction of the slot just created at start: write the
 * snapshot to the sink's spill file; *events = how many (at least 1, the
 * snapshot_end).  False (err) on failure: the caller drops the slot.
 */
bool
snapshot_dump(const char *sink, uint64 origin, XLogRecPtr start, uint32 *events,
			  char *err, int errlen)
{
	char		name[64];
	char		tmp[64];
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	Dump		d = {0};
	StringInfoData line;
	bool		ok;

	spill_name(name, sizeof(name), sink, false);
	spill_name(tmp, sizeof(tmp), sink, true);
	state_file_path(path, sizeof(path), name);
	state_file_path(tmppath, sizeof(tmppath), tmp);
	d.lsn = start - 1;
	snprintf(d.lsn_text, sizeof(d.lsn_text), "%X/%X", LSN_FORMAT_ARGS(start));
	if (!repl_snapshot_rows(SNAPSHOT_TIME_SQL, take_time, &d, err, errlen))
		return false;
	d.f = AllocateFile(tmppath, PG_BINARY_W);
	if (d.f == NULL)
	{
		snprintf(err, errlen, "could not create \"%s\": %m", tmppath);
		return false;
	}
	fprintf(d.f, "origin " UINT64_FORMAT "\n", origin);
	ok = repl_snapshot_rows(SNAPSHOT_SQL, dump_row, &d, err, errlen);
	if (ok)
	{
		initStringInfo(&line);
		begin_event(&line, &d, "snapshot_end");
		key(&line, EVF_ITEM_ID);
		appendStringInfoString(&line, "null");
		end_event(&line, &d);
		key(&line, EVF_HOLDS);
		appendStringInfo(&line, INT64_FORMAT, d.holds);
		key(&line, EVF_ITEMS);
		appendStringInfo(&line, INT64_FORMAT, d.items);
		key(&line, EVF_LAST);
		appendStringInfoString(&line, "true");
		key(&line, EVF_TX_EVENTS);
		appendStringInfo(&line, "%u", d.n + 1);
		appendStringInfoChar(&line, '}');
		ok = write_line(&d, &line);
		if (!ok)
			snprintf(err, errlen, "could not write \"%s\": %m", tmppath);
		pfree(line.data);
	}
	if (FreeFile(d.f) != 0 && ok)
	{
		snprintf(err, errlen, "could not write \"%s\": %m", tmppath);
		ok = false;
	}
	if (ok && rename(tmppath, path) != 0)
	{
		snprintf(err, errlen, "could not rename \"%s\": %m", tmppath);
		ok = false;
	}
	if (!ok)
		(void) unlink(tmppath);
	*events = d.n;
	return ok;
}

/* ---------- feeding the spill file to the queue ---------- */

static FILE *feed = NULL;
static uint64 feed_origin = 0;
static bool feed_done = false;
static StringInfoData feed_line;

static void
feed_close(void)
{
	if (feed)
		fclose(feed);
	feed = NULL;
	feed_done = false;
}

/* Is there a spill file of that origin's snapshot? */
bool
snapshot_spilled(const char *sink, uint64 origin)
{
	char		name[64];
	char		buf[64];
	unsigned long long o;

	spill_name(name, sizeof(name), sink, false);
	return state_file_load(name, buf, sizeof(buf)) &&
		sscanf(buf, "origin %llu", &o) == 1 && o == origin;
}

/* The spill file is not needed any more (sent, or its slot is gone). */
void
snapshot_discard(const char *sink)
{
	char		name[64];

	feed_close();
	spill_name(name, sizeof(name), sink, false);
	state_file_remove(name);
}

/* Start feeding again from the beginning (the queue was cleared). */
void
snapshot_rewind(void)
{
	feed_close();
}

/*
 * Queue the next events of the spill file of origin, while the queue has
 * room.  True once every event is queued (or there is no file).
 */
bool
snapshot_feed(const char *sink, uint64 origin)
{
	char		name[64];
	char		path[MAXPGPATH];
	char	   *perr;
	unsigned long long o;
	int			c;

	spill_name(name, sizeof(name), sink, false);
	if (feed_done && feed_origin == origin)
		return true;
	if (feed == NULL || feed_origin != origin)
	{
		feed_close();
		feed_origin = origin;
		state_file_path(path, sizeof(path), name);
		if (feed_line.data == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			initStringInfo(&feed_line);
			MemoryContextSwitchTo(old);
		}
		/*
		 * Plain fopen, not AllocateFile: the file stays open across the
		 * worker's transactions, whose ends close what AllocateFile opened.
		 */
		feed = fopen(path, PG_BINARY_R);
		if (feed == NULL || fscanf(feed, "origin %llu\n", &o) != 1 || o != origin)
		{
			feed_close();
			feed_done = true;	/* nothing (more) to send for this origin */
			return true;
		}
	}
	while (!pipeline_full())
	{
		StreamEvent ev;
		XLogRecPtr	end_lsn;

		resetStringInfo(&feed_line);
		while ((c = fgetc(feed)) != EOF && c != '\n')
			appendStringInfoChar(&feed_line, (char) c);
		if (feed_line.len == 0)
		{
			feed_close();
			feed_done = true;
			feed_origin = origin;
			return true;
		}
		perr = NULL;
		if (stream_parse_message(feed_line.data, feed_line.len, &ev, &end_lsn, &perr) != MSG_EVENT)
		{
			snapshot_discard(sink);	/* the next start takes a new one */
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("ticket_ext: unreadable snapshot event in \"%s\": %s",
							name, perr ? perr : "not an event")));
		}
		pipeline_add_event(&ev);
	}
	return false;
}
