/*-------------------------------------------------------------------------
 *
 * output_plugin.c
 *	  Logical decoding output plugin "ticket_ext": one JSON object per
 *	  committed state change of ticket_ext.holds and ticket_ext.items.
 *
 *	  {"event_id":"23456789-0","v":2,"type":"reserved","item_id":1,"hold_id":7,
 *	   "qty":2,"holder":"alice","commit_time":"2026-11-25T09:40:00.123456Z",
 *	   "lsn":"0/165A3F8","xid":745,"last":true,"tx_events":1}
 *
 * event_id = "<commit LSN as a decimal integer>-<index of the event in its
 * transaction>": the same change always gets the same id, ids grow in
 * commit order, and "<a>-<b>" is also a valid Redis stream entry id.  "v"
 * is the format version (2 since extension 1.1).  The last event of a
 * transaction says so ("last":true) and how many events the transaction
 * had ("tx_events"), so a consumer can tell when it has a whole
 * transaction: events are written one change late for that, never a
 * whole transaction at once.
 *
 * The text is JSON in UTF-8 whatever the database encoding: in a database
 * that is not UTF-8, text is converted and written with \u escapes, so the
 * output is plain ASCII (valid in the database encoding, as a textual
 * plugin's output must be, and the same characters once parsed).
 *
 * Only committed transactions are decoded (no streaming of in-progress
 * ones), so aborted transactions and rolled-back savepoints produce no
 * event.  Usable directly: pg_recvlogical -P ticket_ext.  Options for the
 * streaming worker: "commit-markers" (a {"type":"commit"} line after each
 * transaction with events), "progress-interval-ms" (a {"type":"progress"}
 * line, at most that often, for transactions without events, so an idle
 * stream can confirm its position) and "batch" (several newline-separated
 * lines per message, at most about 64 kB, so a transaction's events and
 * its commit marker usually travel in one message: fewer sends, fewer
 * wake-ups; never one giant message for a large transaction).
 *
 *-------------------------------------------------------------------------
 */
#include "ticket_ext.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "event_fields.h"
#include "event_text.h"
#include "utils/lsyscache.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/rel.h"

PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

#define BATCH_FLUSH_BYTES 65536

typedef struct PluginState
{
	MemoryContext cxt;			/* reset after every change */
	bool		commit_markers;
	bool		batch;
	int			progress_interval_ms;
	TimestampTz last_progress;
	uint32		txn_events;		/* events emitted in the current txn */
	StringInfoData held;		/* the txn's latest event, without its closing
								 * brace: written once we know whether it is
								 * the last */
	StringInfoData pending;		/* batch: lines not yet written */
} PluginState;

static bool
option_bool(DefElem *elem)
{
	bool		value = true;

	if (elem->arg != NULL && !parse_bool(strVal(elem->arg), &value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" needs a boolean value", elem->defname)));
	return value;
}

static void
te_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	PluginState *state = palloc0(sizeof(PluginState));
	ListCell   *lc;

	state->cxt = AllocSetContextCreate(ctx->context, "ticket_ext output",
									   ALLOCSET_DEFAULT_SIZES);
	foreach(lc, ctx->output_plugin_options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "commit-markers") == 0)
			state->commit_markers = option_bool(elem);
		else if (strcmp(elem->defname, "batch") == 0)
			state->batch = option_bool(elem);
		else if (strcmp(elem->defname, "progress-interval-ms") == 0)
			state->progress_interval_ms = elem->arg ? pg_strtoint32(strVal(elem->arg)) : 1000;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is not known to ticket_ext", elem->defname),
					 errhint("Known options: batch, commit-markers, progress-interval-ms.")));
	}
	initStringInfo(&state->pending);
	initStringInfo(&state->held);
	ctx->output_plugin_private = state;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	/* decode whole committed transactions only */
	ctx->streaming = false;
	ctx->twophase = false;
}

static void
te_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	PluginState *state = ctx->output_plugin_private;

	state->txn_events = 0;
	resetStringInfo(&state->held);
}

/* ISO 8601 in UTC with microseconds, e.g. 2026-11-25T09:40:00.123456Z */
static void
append_iso8601(StringInfo out, TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
	{
		appendStringInfoString(out, "null");
		return;
	}
	appendStringInfo(out, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* A column by name: NULL-aware, NULL Datum when absent. */
static Datum
column(HeapTuple tuple, TupleDesc desc, const char *name, bool *isnull)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return heap_getattr(tuple, i + 1, desc, isnull);
	}
	*isnull = true;
	return (Datum) 0;
}

/* an integer column (int4 or int8) of tup, or null (also when tup is NULL) */
static void
append_int_value(StringInfo out, HeapTuple tup, TupleDesc desc, const char *name,
				 bool is_int4)
{
	bool		isnull = true;
	Datum		d = tup ? column(tup, desc, name, &isnull) : (Datum) 0;

	if (isnull)
		appendStringInfoString(out, "null");
	else if (is_int4)
		appendStringInfo(out, "%d", DatumGetInt32(d));
	else
		appendStringInfo(out, INT64_FORMAT, DatumGetInt64(d));
}

/* Send the batched lines as one message. */
static void
flush_pending(LogicalDecodingContext *ctx)
{
	PluginState *state = ctx->output_plugin_private;

	if (state->pending.len == 0)
		return;
	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, state->pending.data, state->pending.len);
	OutputPluginWrite(ctx, true);
	resetStringInfo(&state->pending);
}

/* One line of output: its own message, or batched. */
static void
write_line(LogicalDecodingContext *ctx, StringInfo line)
{
	PluginState *state = ctx->output_plugin_private;

	if (!state->batch)
	{
		OutputPluginPrepareWrite(ctx, true);
		appendBinaryStringInfo(ctx->out, line->data, line->len);
		OutputPluginWrite(ctx, true);
		return;
	}
	if (state->pending.len > 0)
		appendStringInfoChar(&state->pending, '\n');
	appendBinaryStringInfo(&state->pending, line->data, line->len);
	if (state->pending.len >= BATCH_FLUSH_BYTES)
		flush_pending(ctx);
}

/* ,"<name>": (the first field without the comma) */
static void
append_key(StringInfo out, EventField f)
{
	if (f != EVF_EVENT_ID)
		appendStringInfoChar(out, ',');
	appendStringInfo(out, "\"%s\":", event_field_names[f]);
}

/*
 * Write the transaction's held event, closed: with "last" and the
 * transaction's event count when it is the last one.
 */
static void
write_held(LogicalDecodingContext *ctx, bool last)
{
	PluginState *state = ctx->output_plugin_private;

	if (state->held.len == 0)
		return;
	if (last)
	{
		append_key(&state->held, EVF_LAST);
		appendStringInfoString(&state->held, "true");
		append_key(&state->held, EVF_TX_EVENTS);
		appendStringInfo(&state->held, "%u", state->txn_events);
	}
	appendStringInfoChar(&state->held, '}');
	write_line(ctx, &state->held);
	resetStringInfo(&state->held);
}

/*
 * One event; hold (may be NULL) carries hold_id, qty and holder.  It is
 * held until the next event or the commit (see write_held).
 */
static void
emit_event(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, const char *type,
		   int64 item_id, HeapTuple hold, TupleDesc hold_desc, int64 capacity)
{
	PluginState *state = ctx->output_plugin_private;
	StringInfo	out = &state->held;
	bool		isnull;
	Datum		holder;

	write_held(ctx, false);
	appendStringInfoChar(out, '{');
	append_key(out, EVF_EVENT_ID);
	appendStringInfo(out, "\"" UINT64_FORMAT "-%u\"", (uint64) txn->final_lsn, state->txn_events);
	append_key(out, EVF_V);
	appendStringInfo(out, "%d", EVENT_FORMAT_VERSION);
	append_key(out, EVF_TYPE);
	appendStringInfo(out, "\"%s\"", type);
	append_key(out, EVF_ITEM_ID);
	appendStringInfo(out, INT64_FORMAT, item_id);
	append_key(out, EVF_HOLD_ID);
	append_int_value(out, hold, hold_desc, "hold_id", false);
	append_key(out, EVF_QTY);
	append_int_value(out, hold, hold_desc, "qty", true);
	append_key(out, EVF_HOLDER);
	isnull = true;
	holder = hold ? column(hold, hold_desc, "holder", &isnull) : (Datum) 0;
	if (isnull)
		appendStringInfoString(out, "null");
	else
	{
		char	   *chars = TextDatumGetCString(holder);

		/* decoding runs in a transaction: the conversion may look up its function */
		event_append_text(out, (char *) pg_server_to_any(chars, strlen(chars), PG_UTF8));
	}
	append_key(out, EVF_COMMIT_TIME);
	append_iso8601(out, txn->xact_time.commit_time);
	append_key(out, EVF_LSN);
	appendStringInfo(out, "\"%X/%X\"", LSN_FORMAT_ARGS(txn->final_lsn));
	append_key(out, EVF_XID);
	appendStringInfo(out, "%u", txn->xid);
	if (capacity >= 0)
	{
		append_key(out, EVF_CAPACITY);
		appendStringInfo(out, INT64_FORMAT, capacity);
	}
	state->txn_events++;
}

static char *
text_column(HeapTuple tup, TupleDesc desc, const char *name)
{
	bool		isnull;
	Datum		d = column(tup, desc, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static void
hold_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			ReorderBufferChange *change, TupleDesc desc)
{
	HeapTuple	tup;
	char	   *status;
	const char *type = NULL;
	bool		isnull;
	int64		item_id;

	if (change->action == REORDER_BUFFER_CHANGE_DELETE ||
		change->data.tp.newtuple == NULL)
		return;
	tup = &change->data.tp.newtuple->tuple;
	status = text_column(tup, desc, "status");
	item_id = DatumGetInt64(column(tup, desc, "item_id", &isnull));

	if (change->action == REORDER_BUFFER_CHANGE_INSERT)
		type = "reserved";
	else if (status == NULL)
		return;
	else if (strcmp(status, "sold") == 0)
		type = "confirmed";
	else if (strcmp(status, "released") == 0)
		type = "released";
	else if (strcmp(status, "expired") == 0)
		type = "expired";
	if (type != NULL)
		emit_event(ctx, txn, type, item_id, tup, desc, -1);
}

/* An items row's pool_ids as "1,2" ("" for none; NULL before 1.1). */
static char *
pool_list(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d = column(tup, desc, "pool_ids", &isnull);
	StringInfoData out;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), INT8OID, 8, FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &n);
	initStringInfo(&out);
	for (i = 0; i < n; i++)
		appendStringInfo(&out, "%s" INT64_FORMAT, i > 0 ? "," : "",
						 DatumGetInt64(elems[i]));
	return out.data;
}

/*
 * set_pools and set_holder_limit (1.1): a "pools" event, so a consumer
 * knows which counters the item's reservations also take from, and a
 * "holder_limit" event.
 */
static void
links_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int64 item_id,
			 HeapTuple oldtup, HeapTuple newtup, TupleDesc desc)
{
	PluginState *state = ctx->output_plugin_private;
	char	   *old_pools = pool_list(oldtup, desc);
	char	   *new_pools = pool_list(newtup, desc);
	bool		old_null;
	bool		new_null;
	int32		old_limit = DatumGetInt32(column(oldtup, desc, "holder_limit", &old_null));
	int32		new_limit = DatumGetInt32(column(newtup, desc, "holder_limit", &new_null));

	if (new_pools != NULL && (old_pools == NULL || strcmp(old_pools, new_pools) != 0))
	{
		emit_event(ctx, txn, "pools", item_id, NULL, NULL, -1);
		append_key(&state->held, EVF_POOLS);
		event_append_text(&state->held, new_pools);
	}
	if (old_null != new_null || (!new_null && old_limit != new_limit))
	{
		emit_event(ctx, txn, "holder_limit", item_id, NULL, NULL, -1);
		append_key(&state->held, EVF_HOLDER_LIMIT);
		if (new_null)
			appendStringInfoString(&state->held, "null");
		else
			appendStringInfo(&state->held, "%d", new_limit);
	}
}

static void
item_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			ReorderBufferChange *change, TupleDesc desc)
{
	HeapTuple	newtup;
	HeapTuple	oldtup = NULL;
	bool		isnull;
	int64		item_id;
	int64		capacity;
	bool		paused;

	if (change->action == REORDER_BUFFER_CHANGE_DELETE ||
		change->data.tp.newtuple == NULL)
		return;
	newtup = &change->data.tp.newtuple->tuple;
	if (change->data.tp.oldtuple != NULL)
		oldtup = &change->data.tp.oldtuple->tuple;	/* REPLICA IDENTITY FULL */
	item_id = DatumGetInt64(column(newtup, desc, "item_id", &isnull));
	capacity = DatumGetInt64(column(newtup, desc, "capacity", &isnull));
	paused = DatumGetBool(column(newtup, desc, "paused", &isnull));

	if (oldtup == NULL ||
		DatumGetInt64(column(oldtup, desc, "capacity", &isnull)) != capacity)
		emit_event(ctx, txn, "capacity", item_id, NULL, NULL, capacity);
	if (oldtup != NULL &&
		DatumGetBool(column(oldtup, desc, "paused", &isnull)) != paused)
		emit_event(ctx, txn, paused ? "paused" : "resumed", item_id, NULL, NULL, -1);
	if (oldtup != NULL)
		links_change(ctx, txn, item_id, oldtup, newtup, desc);
}

static void
te_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		  Relation rel, ReorderBufferChange *change)
{
	PluginState *state = ctx->output_plugin_private;
	MemoryContext old;
	char	   *nspname;
	const char *relname = RelationGetRelationName(rel);

	old = MemoryContextSwitchTo(state->cxt);
	nspname = get_namespace_name(RelationGetNamespace(rel));
	if (nspname != NULL && strcmp(nspname, TICKET_SCHEMA) == 0)
	{
		if (strcmp(relname, TICKET_HOLDS_TABLE) == 0)
			hold_change(ctx, txn, change, RelationGetDescr(rel));
		else if (strcmp(relname, TICKET_ITEMS_TABLE) == 0)
			item_change(ctx, txn, change, RelationGetDescr(rel));
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->cxt);
}

static void
te_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	PluginState *state = ctx->output_plugin_private;
	StringInfoData line;

	write_held(ctx, true);
	initStringInfo(&line);
	if (state->txn_events > 0 && state->commit_markers)
	{
		appendStringInfo(&line,
						 "{\"type\":\"commit\",\"lsn\":\"%X/%X\",\"end_lsn\":\"%X/%X\",\"xid\":%u,\"events\":%u}",
						 LSN_FORMAT_ARGS(commit_lsn), LSN_FORMAT_ARGS(txn->end_lsn),
						 txn->xid, state->txn_events);
		write_line(ctx, &line);
	}
	else if (state->txn_events == 0 && state->progress_interval_ms > 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (TimestampDifferenceExceeds(state->last_progress, now,
									   state->progress_interval_ms))
		{
			appendStringInfo(&line, "{\"type\":\"progress\",\"end_lsn\":\"%X/%X\"}",
							 LSN_FORMAT_ARGS(txn->end_lsn));
			write_line(ctx, &line);
			state->last_progress = now;
		}
	}
	flush_pending(ctx);			/* a transaction never waits for the next one */
	pfree(line.data);
}

/* TRUNCATE of our tables is not an event (and not something to do). */
static void
te_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
			Relation relations[], ReorderBufferChange *change)
{
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = te_startup;
	cb->begin_cb = te_begin;
	cb->change_cb = te_change;
	cb->truncate_cb = te_truncate;
	cb->commit_cb = te_commit;
}
