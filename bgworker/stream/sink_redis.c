/*-------------------------------------------------------------------------
 *
 * sink_redis.c
 *	  Redis Streams sink (hiredis): each event is an XADD with an explicit
 *	  entry id equal to its event_id, so a re-sent event is refused by
 *	  Redis as "equal or smaller than the top item" and counts as delivered.
 *
 * A batch goes out as one pipelined MULTI ... EXEC: errors Redis detects
 * while queueing (OOM, READONLY replica, NOAUTH) abort the whole batch, so
 * a later event can never land while an earlier one was refused.  The
 * position hash is written in the same MULTI, and WATCHed from a look that
 * it is still ours (position_unchanged) to the EXEC.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "redis_url.h"
#include "storage/fd.h"
#include "stream.h"

static redisContext *redis = NULL;
static RedisUrl url;
static bool position_written = false;	/* this connection wrote the hash */

static bool
redis_enabled(void)
{
	return redis_url != NULL && redis_url[0] != '\0';
}

static void
redis_disconnect(Sink *sink)
{
	if (redis != NULL)
		redisFree(redis);
	redis = NULL;
}

static struct timeval
ms_to_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* Run one command on the connection; false + error text on failure. */
static bool
command_ok(const char *what, int argc, const char **argv, char *err, int errlen)
{
	redisReply *reply = redisCommandArgv(redis, argc, argv, NULL);
	bool		ok;

	if (reply == NULL)
	{
		snprintf(err, errlen, "%s: %s", what, redis->errstr);
		return false;
	}
	ok = reply->type != REDIS_REPLY_ERROR;
	if (!ok)
		snprintf(err, errlen, "%s: %s", what, reply->str);
	freeReplyObject(reply);
	return ok;
}

/* Classify a Redis error reply: bad settings or something that passes. */
static SinkResultCode
classify(const char *msg)
{
	static const char *const config_errors[] = {
		"NOAUTH", "WRONGPASS", "NOPERM", "WRONGTYPE", "invalid password",
		"without any password configured"
	};
	int			i;

	for (i = 0; i < (int) lengthof(config_errors); i++)
		if (strstr(msg, config_errors[i]) != NULL)
			return SINK_FATAL_CONFIG;
	return SINK_RETRY;
}

/* The password from ticket_ext.redis_password_file, if set. */
static bool
read_password_file(char *err, int errlen)
{
	FILE	   *f;
	char		line[sizeof(url.password)];

	if (redis_password_file == NULL || redis_password_file[0] == '\0')
		return true;
	f = AllocateFile(redis_password_file, "r");
	if (f == NULL)
	{
		snprintf(err, errlen, "cannot read ticket_ext.redis_password_file \"%s\": %m",
				 redis_password_file);
		return false;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	FreeFile(f);
	line[strcspn(line, "\r\n")] = '\0';
	strlcpy(url.password, line, sizeof(url.password));
	explicit_bzero(line, sizeof(line));
	return true;
}

static SinkResultCode
redis_connect(Sink *sink, char *err, int errlen)
{
	char		db[16];

	redis_disconnect(sink);
	position_written = false;
	if (!redis_url_parse(redis_url, &url, err, errlen) || !read_password_file(err, errlen))
		return SINK_FATAL_CONFIG;
	redis = redisConnectWithTimeout(url.host, url.port, ms_to_tv(stream_connect_timeout_ms));
	if (redis == NULL || redis->err)
	{
		snprintf(err, errlen, "cannot connect to %s:%d: %s", url.host, url.port,
				 redis ? redis->errstr : "out of memory");
		redis_disconnect(sink);
		return SINK_RETRY;
	}
	/* options are set on every (re)connect: hiredis forgets them */
	redisSetTimeout(redis, ms_to_tv(stream_io_timeout_ms));
	redisEnableKeepAlive(redis);
	if (url.password[0] != '\0')
	{
		const char *auth_user[] = {"AUTH", url.user, url.password};
		const char *auth[] = {"AUTH", url.password};

		bool		ok = url.user[0] ? command_ok("AUTH", 3, auth_user, err, errlen)
			: command_ok("AUTH", 2, auth, err, errlen);

		explicit_bzero(url.password, sizeof(url.password));
		if (!ok)
		{
			redis_disconnect(sink);
			return classify(err);
		}
	}
	if (url.db != 0)
	{
		const char *select[] = {"SELECT", db};

		snprintf(db, sizeof(db), "%d", url.db);
		if (!command_ok("SELECT", 2, select, err, errlen))
		{
			redis_disconnect(sink);
			return SINK_FATAL_CONFIG;
		}
	}
	return SINK_OK;
}

static bool
is_duplicate(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
		strstr(r->str, "equal or smaller than the target stream top item") != NULL;
}

static void
stream_key(const StreamEvent *ev, char *key, size_t len)
{
	if (redis_stream_per_item && !ev->no_item)
		snprintf(key, len, "%s:" INT64_FORMAT, redis_stream, ev->item_id);
	else
		strlcpy(key, redis_stream, len);
}

static void
position_key(char *key, size_t len)
{
	snprintf(key, len, "%s:position", redis_stream);
}

/* "<a>-<b>" -> EventId; false if malformed */
static bool
parse_id(const char *s, EventId *id)
{
	unsigned long long a;
	unsigned int b;
	int			n = 0;

	if (s == NULL || sscanf(s, "%llu-%u%n", &a, &b, &n) != 2 || s[n] != '\0')
		return false;
	id->lsn = a;
	id->seq = b;
	return true;
}

static uint64
reply_u64(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
}

/*
 * The position hash; without one, a stream from before 1.1 (a top entry
 * and no hash) is read as "legacy": it holds everything up to its top.
 */
static SinkResultCode
redis_read_position(Sink *sink, SinkPosition *pos, char *err, int errlen)
{
	char		key[512];
	const char *argv[6];
	redisReply *reply;
	size_t		i;

	memset(pos, 0, sizeof(*pos));
	position_key(key, sizeof(key));
	argv[0] = "HGETALL";
	argv[1] = key;
	reply = redisCommandArgv(redis, 2, argv, NULL);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
	{
		snprintf(err, errlen, "HGETALL %s: %s", key,
				 reply ? reply->str : redis->errstr);
		if (reply)
			freeReplyObject(reply);
		return reply ? SINK_FATAL_CONFIG : SINK_RETRY;
	}
	for (i = 0; reply->type == REDIS_REPLY_ARRAY && i + 1 < reply->elements; i += 2)
	{
		const char *f = reply->element[i]->str;
		redisReply *v = reply->element[i + 1];

		if (f == NULL)
			continue;
		if (strcmp(f, "event_id") == 0)
			pos->known = v->type == REDIS_REPLY_STRING && parse_id(v->str, &pos->id);
		else if (strcmp(f, "origin") == 0)
			pos->origin = reply_u64(v);
		else if (strcmp(f, "xid") == 0)
			pos->xid = (uint32) reply_u64(v);
		else if (strcmp(f, "offset") == 0)
			pos->offset = reply_u64(v);
		else if (strcmp(f, "system_identifier") == 0)
			pos->sysid = reply_u64(v);
		else if (strcmp(f, "timeline") == 0)
			pos->timeline = (uint32) reply_u64(v);
		else if (strcmp(f, "confirmed") == 0)
			pos->confirmed = (XLogRecPtr) reply_u64(v);
	}
	freeReplyObject(reply);
	if (pos->known)
		return SINK_OK;
	pos->legacy = true;			/* written before 1.1, if at all */
	if (redis_stream_per_item)
		return SINK_OK;

	/* no position: a stream written before 1.1? */
	argv[0] = "XREVRANGE";
	argv[1] = redis_stream;
	argv[2] = "+";
	argv[3] = "-";
	argv[4] = "COUNT";
	argv[5] = "1";
	reply = redisCommandArgv(redis, 6, argv, NULL);
	if (reply == NULL)
	{
		snprintf(err, errlen, "XREVRANGE %s: %s", redis_stream, redis->errstr);
		return SINK_RETRY;
	}
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
		reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 1 &&
		parse_id(reply->element[0]->element[0]->str, &pos->id))
		pos->known = true;
	freeReplyObject(reply);
	return SINK_OK;
}

/*
 * Queue "HSET <position> ..." for pos, with last as its event and confirmed
 * as how far the slot may be confirmed (last NULL: pos's own).
 */
static void
append_position(const SinkPosition *pos, const EventId *last, uint32 xid, XLogRecPtr confirmed)
{
	char		key[512];
	char		id[48],
				origin[24],
				xidbuf[16],
				offset[24],
				sysid[24],
				tli[16],
				conf[24];

	position_key(key, sizeof(key));
	snprintf(id, sizeof(id), UINT64_FORMAT "-%u", last ? last->lsn : pos->id.lsn,
			 last ? last->seq : pos->id.seq);
	snprintf(origin, sizeof(origin), UINT64_FORMAT, pos->origin);
	snprintf(xidbuf, sizeof(xidbuf), "%u", last ? xid : pos->xid);
	snprintf(offset, sizeof(offset), UINT64_FORMAT, pos->offset);
	snprintf(sysid, sizeof(sysid), UINT64_FORMAT, pos->sysid);
	snprintf(tli, sizeof(tli), "%u", pos->timeline);
	snprintf(conf, sizeof(conf), UINT64_FORMAT, (uint64) (last ? confirmed : pos->confirmed));
	{
		const char *args[] = {"HSET", key, "event_id", id, "origin", origin, "xid", xidbuf,
			"offset", offset, "system_identifier", sysid, "timeline", tli, "confirmed", conf};

		redisAppendCommandArgv(redis, lengthof(args), args, NULL);
	}
}

/*
 * Before writing on top of what the sink holds: is the position hash still
 * the one this worker last wrote (or read when it placed the sink)?  A
 * FLUSHALL, a DEL of the stream's keys or another writer changed it, and
 * the next write would hide that.  WATCH makes the EXEC that follows fail
 * if it changes after this look.  Not SINK_OK: the sink is placed again
 * (pipeline.c), which sees what Redis holds now.
 */
static SinkResultCode
position_unchanged(const Sink *sink, char *err, int errlen)
{
	char		key[512];
	redisReply *watch = NULL;
	redisReply *r = NULL;
	EventId		id;
	bool		same;

	position_key(key, sizeof(key));
	redisAppendCommand(redis, "WATCH %s", key);
	redisAppendCommand(redis, "HMGET %s event_id origin", key);
	if (redisGetReply(redis, (void **) &watch) != REDIS_OK || watch == NULL ||
		redisGetReply(redis, (void **) &r) != REDIS_OK || r == NULL)
	{
		snprintf(err, errlen, "HMGET %s: %s", key, redis->errstr[0] ? redis->errstr : "no reply");
		if (watch)
			freeReplyObject(watch);
		return SINK_RETRY;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_NIL)
		same = sink->pos.legacy && !position_written;	/* a 1.0 stream: with the next write */
	else
		same = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			r->element[0]->type == REDIS_REPLY_STRING && parse_id(r->element[0]->str, &id) &&
			id.lsn == sink->pos.id.lsn && id.seq == sink->pos.id.seq &&
			reply_u64(r->element[1]) == sink->pos.origin;
	if (!same)
		snprintf(err, errlen, "the position %s is not the one this worker wrote "
				 "(FLUSHALL, DEL or another writer): looking at what Redis holds again", key);
	freeReplyObject(watch);
	freeReplyObject(r);
	return same ? SINK_OK : SINK_RETRY;
}

static SinkResultCode
redis_write_position(Sink *sink, const SinkPosition *pos, char *err, int errlen)
{
	redisReply *reply = NULL;
	SinkResultCode rc;

	/*
	 * Placed: it holds what this worker wrote (checked, then written in a
	 * MULTI that the WATCH voids if it changed meanwhile).  Placing: it
	 * was just read.
	 */
	if (sink->placed)
	{
		if ((rc = position_unchanged(sink, err, errlen)) != SINK_OK)
			return rc;
		redisAppendCommand(redis, "MULTI");
	}
	append_position(pos, NULL, 0, InvalidXLogRecPtr);
	if (sink->placed)
		redisAppendCommand(redis, "EXEC");
	/* MULTI's OK and HSET's QUEUED first, when in a MULTI */
	for (int i = 0; i < (sink->placed ? 3 : 1); i++)
	{
		if (reply)
			freeReplyObject(reply);
		reply = NULL;
		if (redisGetReply(redis, (void **) &reply) != REDIS_OK || reply == NULL)
		{
			snprintf(err, errlen, "HSET position: %s", redis->errstr[0] ? redis->errstr : "no reply");
			return SINK_RETRY;
		}
		if (reply->type == REDIS_REPLY_ERROR)
		{
			snprintf(err, errlen, "HSET position: %s", reply->str);
			freeReplyObject(reply);
			return classify(err);
		}
	}
	rc = reply->type == REDIS_REPLY_NIL ? SINK_RETRY : SINK_OK;	/* EXEC voided by WATCH */
	if (rc != SINK_OK)
		snprintf(err, errlen, "the position changed under the worker (FLUSHALL, DEL or another writer): "
				 "looking at what Redis holds again");
	freeReplyObject(reply);
	position_written = position_written || rc == SINK_OK;
	return rc;
}

static void
append_xadd(const Sink *sink, StreamEvent *ev)
{
	const char *argv[8 + 2 * lengthof(ev->field_names)];
	size_t		lens[lengthof(argv)];
	char		key[512];
	char		maxlen[24];
	char		id[48];
	char		origin[24];
	int			argc = 0;
	int			i;

	stream_key(ev, key, sizeof(key));
	snprintf(id, sizeof(id), UINT64_FORMAT "-%u", ev->id.lsn + sink->pos.offset, ev->id.seq);
	snprintf(origin, sizeof(origin), UINT64_FORMAT, sink->pos.origin);
	argv[argc++] = "XADD";
	argv[argc++] = key;
	if (redis_maxlen > 0)
	{
		snprintf(maxlen, sizeof(maxlen), "%d", redis_maxlen);
		argv[argc++] = "MAXLEN";
		argv[argc++] = "~";
		argv[argc++] = maxlen;
	}
	argv[argc++] = id;
	for (i = 0; i < ev->nfields; i++)
	{
		argv[argc++] = ev->field_names[i];
		argv[argc++] = ev->field_values[i];
	}
	argv[argc++] = "origin";
	argv[argc++] = origin;
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redisAppendCommandArgv(redis, argc, argv, lens);
}

/* A flat field of an event ("" if it has none). */
static const char *
event_field(const StreamEvent *ev, const char *name)
{
	int			i;

	for (i = 0; i < ev->nfields; i++)
		if (strcmp(ev->field_names[i], name) == 0)
			return ev->field_values[i];
	return "";
}

/* A field of a Redis stream entry's [field, value, ...] array ("" if none). */
static const char *
entry_field(const redisReply *kv, const char *name)
{
	size_t		i;

	for (i = 0; kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements; i += 2)
		if (kv->element[i]->str && strcmp(kv->element[i]->str, name) == 0)
			return kv->element[i + 1]->str ? kv->element[i + 1]->str : "";
	return "";
}

/* The id of entry i of an XRANGE reply (0-0 if malformed). */
static EventId
entry_id(const redisReply *r, size_t i)
{
	EventId		id = {0, 0};
	redisReply *e = r->element[i];

	if (e->type == REDIS_REPLY_ARRAY && e->elements >= 2 && e->element[0]->str)
		(void) parse_id(e->element[0]->str, &id);
	return id;
}

/*
 * Does Redis hold exactly these events, about to be skipped as delivered?
 * Per stream key: one XRANGE over their ids (and the key's first entry, to
 * tell an entry trimmed by MAXLEN from one never written).  Any entry in
 * that range that is not one of ours, or one of ours missing or holding
 * another transaction, means another history wrote the stream.
 */
static SinkResultCode
redis_check_delivered(Sink *sink, StreamEvent **events, int n, bool *same, char *err, int errlen)
{
	char	  **keys = palloc(sizeof(char *) * n);
	int		   *key_of = palloc(sizeof(int) * n);
	int			nkeys = 0;
	int			k;
	int			i;

	*same = true;
	for (i = 0; i < n; i++)
	{
		char		key[512];

		stream_key(events[i], key, sizeof(key));
		for (k = 0; k < nkeys && strcmp(keys[k], key) != 0; k++)
			;
		if (k == nkeys)
			keys[nkeys++] = pstrdup(key);
		key_of[i] = k;
	}
	for (k = 0; k < nkeys; k++)
	{
		int			lo = -1,
					hi = -1;
		char		from[48],
					to[48];

		for (i = 0; i < n; i++)
			if (key_of[i] == k)
			{
				if (lo < 0)
					lo = i;
				hi = i;
			}
		snprintf(from, sizeof(from), UINT64_FORMAT "-%u",
				 events[lo]->id.lsn + sink->pos.offset, events[lo]->id.seq);
		snprintf(to, sizeof(to), UINT64_FORMAT "-%u",
				 events[hi]->id.lsn + sink->pos.offset, events[hi]->id.seq);
		redisAppendCommand(redis, "XRANGE %s - + COUNT 1", keys[k]);
		redisAppendCommand(redis, "XRANGE %s %s %s", keys[k], from, to);
	}
	for (k = 0; k < nkeys; k++)
	{
		redisReply *first = NULL;
		redisReply *range = NULL;
		EventId		first_id = {0, 0};
		size_t		j = 0;

		if (redisGetReply(redis, (void **) &first) != REDIS_OK || first == NULL ||
			redisGetReply(redis, (void **) &range) != REDIS_OK || range == NULL)
		{
			snprintf(err, errlen, "XRANGE: %s", redis->errstr[0] ? redis->errstr : "no reply");
			if (first)
				freeReplyObject(first);
			return SINK_RETRY;
		}
		if (range->type == REDIS_REPLY_ERROR || first->type == REDIS_REPLY_ERROR)
		{
			snprintf(err, errlen, "XRANGE %s: %s", keys[k],
					 range->type == REDIS_REPLY_ERROR ? range->str : first->str);
			freeReplyObject(first);
			freeReplyObject(range);
			/* the other replies are read by nobody: start over */
			redis_disconnect(sink);
			return SINK_FATAL_CONFIG;
		}
		if (first->type == REDIS_REPLY_ARRAY && first->elements == 1)
			first_id = entry_id(first, 0);
		for (i = 0; i < n && *same && range->type == REDIS_REPLY_ARRAY; i++)
		{
			EventId		want;

			if (key_of[i] != k)
				continue;
			want.lsn = events[i]->id.lsn + sink->pos.offset;
			want.seq = events[i]->id.seq;
			if (j < range->elements && EVENT_ID_LT(entry_id(range, j), want))
			{
				snprintf(err, errlen, "Redis holds entry %lu-%u, which this server never wrote",
						 (unsigned long) entry_id(range, j).lsn, entry_id(range, j).seq);
				*same = false;
			}
			else if (j < range->elements && !EVENT_ID_LT(want, entry_id(range, j)))
			{
				redisReply *kv = range->element[j]->element[1];

				if (strcmp(entry_field(kv, "xid"), event_field(events[i], "xid")) != 0 ||
					strcmp(entry_field(kv, "type"), event_field(events[i], "type")) != 0 ||
					strcmp(entry_field(kv, "hold_id"), event_field(events[i], "hold_id")) != 0)
				{
					snprintf(err, errlen, "Redis entry %lu-%u is another transaction's",
							 (unsigned long) want.lsn, want.seq);
					*same = false;
				}
				j++;
			}
			else if (first_id.lsn == 0 || !EVENT_ID_LT(want, first_id))
			{
				snprintf(err, errlen, "Redis lacks entry %lu-%u", (unsigned long) want.lsn, want.seq);
				*same = false;	/* not trimmed away: never written */
			}
		}
		if (*same && range->type == REDIS_REPLY_ARRAY && j < range->elements)
		{
			snprintf(err, errlen, "Redis holds entry %lu-%u, which this server never wrote",
					 (unsigned long) entry_id(range, j).lsn, entry_id(range, j).seq);
			*same = false;
		}
		freeReplyObject(first);
		freeReplyObject(range);
	}
	return SINK_OK;
}

/* Read one reply of the pipeline; NULL (and result filled) on I/O error. */
static redisReply *
next_reply(SinkResult *result)
{
	void	   *reply = NULL;

	if (redisGetReply(redis, &reply) != REDIS_OK || reply == NULL)
	{
		result->code = SINK_RETRY;
		snprintf(result->error, sizeof(result->error), "connection: %s",
				 redis->errstr[0] ? redis->errstr : "no reply");
		return NULL;
	}
	return reply;
}

/*
 * One MULTI: the events' XADDs and the position after the last of them.
 * Errors found while queueing void it all (EXECABORT); an XADD refused
 * when it runs stops the acknowledged prefix there.
 */
static void
redis_send(Sink *sink, StreamEvent **events, int n, SinkResult *result)
{
	redisReply *reply;
	redisReply *queue_error = NULL;
	int			i;

	result->code = SINK_OK;
	result->acked = 0;
	result->code = position_unchanged(sink, result->error, sizeof(result->error));
	if (result->code != SINK_OK)
		return;
	redisAppendCommand(redis, "MULTI");
	for (i = 0; i < n; i++)
		append_xadd(sink, events[i]);
	append_position(&sink->pos, &events[n - 1]->id, events[n - 1]->xid, sink->batch_confirmed);
	redisAppendCommand(redis, "EXEC");

	/* MULTI, then one +QUEUED (or an error) per command, then EXEC */
	for (i = 0; i < n + 2; i++)
	{
		if ((reply = next_reply(result)) == NULL)
			return;
		if (reply->type == REDIS_REPLY_ERROR && queue_error == NULL)
			queue_error = reply;
		else
			freeReplyObject(reply);
	}
	if ((reply = next_reply(result)) == NULL)
	{
		if (queue_error)
			freeReplyObject(queue_error);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY)
	{
		/* EXECABORT (or nil): nothing of the batch was written */
		const char *msg = queue_error ? queue_error->str :
			reply->type == REDIS_REPLY_ERROR ? reply->str : "transaction discarded";

		result->code = classify(msg);
		snprintf(result->error, sizeof(result->error), "XADD: %s", msg);
	}
	else
	{
		for (i = 0; i < (int) reply->elements && i < n; i++)
		{
			redisReply *r = reply->element[i];

			if (r->type == REDIS_REPLY_ERROR && is_duplicate(r) && !sink->pos.legacy)
			{
				result->code = SINK_FATAL_CONFIG;
				snprintf(result->error, sizeof(result->error),
						 "history: Redis refused event %lu-%u as not above the stream's top: "
						 "another writer uses this stream, or it was changed by hand; nothing is skipped",
						 (unsigned long) events[i]->id.lsn, events[i]->id.seq);
				break;
			}
			if (r->type == REDIS_REPLY_ERROR && !is_duplicate(r))
			{
				result->code = classify(r->str);
				snprintf(result->error, sizeof(result->error), "XADD: %s", r->str);
				break;
			}
			result->acked++;
		}
	}
	if (reply->type == REDIS_REPLY_ARRAY)
		position_written = true;	/* the MULTI ran, its HSET too */
	freeReplyObject(reply);
	if (queue_error)
		freeReplyObject(queue_error);
}

static const char *
redis_slot_name(void)
{
	return stream_slot_name;
}

const SinkOps redis_sink_ops = {
	.name = "redis",
	.enabled = redis_enabled,
	.slot_name = redis_slot_name,
	.connect = redis_connect,
	.disconnect = redis_disconnect,
	.send = redis_send,
	.read_position = redis_read_position,
	.check_delivered = redis_check_delivered,
	.write_position = redis_write_position,
	.position_in_send = true,
};
