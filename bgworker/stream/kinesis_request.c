/*-------------------------------------------------------------------------
 *
 * kinesis_request.c
 *	  One PutRecords request of the Kinesis sink (sink_kinesis.c): which
 *	  events go in it, as plain JSON records or KPL aggregated records, each
 *	  within its shard's pace (kinesis_shards.c); and, from the answer,
 *	  the acknowledged prefix and the events stored beyond it ("landed":
 *	  remembered so they are not sent again).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "common/base64.h"
#include "kinesis.h"
#include "kinesis_request.h"
#include "stream.h"
#include "utils/json.h"
#include "utils/timestamp.h"

/* events stored by Kinesis beyond an acknowledged prefix */
#define MAX_LANDED MAX_EVENTS_PER_CALL
static EventId landed[MAX_LANDED];
static int	nlanded = 0;
static char landed_for[1024];	/* the target they landed in */


/* Landed records are of one stream: another one starts with none. */
void
kinesis_landed_reset(const char *target)
{
	if (strcmp(landed_for, target) != 0)
	{
		nlanded = 0;
		strlcpy(landed_for, target, sizeof(landed_for));
	}
}

/* Forget landed records the pipeline has now acknowledged (id <= upto). */
static void
forget_landed(const EventId *upto)
{
	int			keep = 0;
	int			i;

	for (i = 0; i < nlanded; i++)
		if (EVENT_ID_LT(*upto, landed[i]))
			landed[keep++] = landed[i];
	nlanded = keep;
}

static bool
was_landed(const EventId *id)
{
	int			i;

	for (i = 0; i < nlanded; i++)
		if (landed[i].lsn == id->lsn && landed[i].seq == id->seq)
			return true;
	return false;
}


/* The event's JSON with the origin of its slot added (palloc'd). */
static char *
with_origin(const StreamEvent *ev, uint64 origin, int *len)
{
	int			body = ev->json_len;
	char	   *out;

	while (body > 0 && ev->json[body - 1] != '}')
		body--;					/* the object's closing brace */
	out = psprintf("%.*s,\"origin\":" UINT64_FORMAT "}", body > 0 ? body - 1 : 0, ev->json, origin);
	*len = strlen(out);
	return out;
}

/* The partition key of an event: its item (snapshot ends have none). */
static void
partition_key(const StreamEvent *ev, char *key, size_t len)
{
	if (ev->no_item)
		strlcpy(key, "snapshot", len);
	else
		snprintf(key, len, INT64_FORMAT, ev->item_id);
}

/* Append one record (data base64-encoded) to the request body. */
static void
append_record(StringInfo body, bool first, const char *data, int datalen, const char *key)
{
	int			b64len = pg_b64_enc_len(datalen);

	if (!first)
		appendStringInfoChar(body, ',');
	appendStringInfoString(body, "{\"Data\":\"");
	enlargeStringInfo(body, b64len + 1);
	body->len += pg_b64_encode(data, datalen, body->data + body->len, b64len);
	body->data[body->len] = '\0';
	appendStringInfo(body, "\",\"PartitionKey\":\"%s\"}", key);
}

/*
 * With kinesis_aggregate: the pending events of event i's item from i on,
 * in order, as one KPL aggregated record (*out, *outlen), within the record
 * and request limits and the shard's room (budget: bytes with the key);
 * rec[] marks them with recno.  data is event i's payload.  Returns 1, 0
 * if the record does not fit in this request (others before it: rec[]
 * cleared), or -1 (err).
 */
static int
aggregate_item(StringInfo body, StreamEvent **events, int n, int i,
			   char *data, int datalen, const char *key, uint64 origin, int budget,
			   int *rec, int recno, bool others_before,
			   char **out, int *outlen, char *err, int errlen)
{
	const StreamEvent *ev = events[i];
	KplAggregate agg;
	const char *md5err = NULL;
	int			j;

	kpl_begin(&agg, key);
	for (j = i; j < n; j++)
	{
		char	   *more = data;
		int			morelen = datalen;
		int			b64len;

		if (events[j]->item_id != ev->item_id || events[j]->no_item != ev->no_item ||
			was_landed(&events[j]->id))
			continue;
		if (j != i)
			more = with_origin(events[j], origin, &morelen);
		b64len = pg_b64_enc_len(kpl_size_with(&agg, morelen));
		if (agg.count > 0 &&
			(b64len + strlen(key) > (size_t) kinesis_max_record_bytes ||
			 body->len + b64len + 64 > kinesis_max_request_bytes ||
			 kpl_size_with(&agg, morelen) + (int) strlen(key) > budget))
			break;
		kpl_add(&agg, more, morelen);
		rec[j] = recno;
	}
	if (others_before && body->len + pg_b64_enc_len(kpl_size_with(&agg, 0)) + 64 > kinesis_max_request_bytes)
	{
		for (j = i; j < n; j++)
			if (rec[j] == recno)
				rec[j] = -1;
		pfree(agg.pb.data);
		return 0;
	}
	if (!kpl_finish(&agg, out, outlen, &md5err))
	{
		snprintf(err, errlen, "could not compute an MD5 for a KPL record: %s", md5err);
		return -1;
	}
	return 1;
}

/*
 * How many bytes an aggregated record of event i's item would like from its
 * shard before it goes: its pending events (estimated at event i's size),
 * up to AGGREGATE_MIN_BYTES.  A paced shard then gets a few records of
 * that size a second, not a record per event.
 */
#define AGGREGATE_MIN_BYTES (64 * 1024)

/* Event i's item's pending events from i on (not landed), at most most. */
static int
pending_of_item(StreamEvent **events, int n, int i, int most)
{
	int			count = 0;
	int			j;

	for (j = i; j < n && count < most; j++)
		if (events[j]->item_id == events[i]->item_id && events[j]->no_item == events[i]->no_item &&
			!was_landed(&events[j]->id))
			count++;
	return count;
}

static int
aggregate_wants(StreamEvent **events, int n, int i, int record_bytes)
{
	/* + its protobuf framing each; + magic, MD5, key table */
	int			most = AGGREGATE_MIN_BYTES / (record_bytes + 8) + 1;
	int64		want = (int64) pending_of_item(events, n, i, most) * (record_bytes + 8);

	return (int) Min(want + 64, AGGREGATE_MIN_BYTES);
}

/* How many records event i's item would send in this call (unaggregated). */
static int
records_wanted(StreamEvent **events, int n, int i)
{
	return pending_of_item(events, n, i, kinesis_records_per_item);
}

/*
 * Build one request from events[0..n): each item's earliest pending events,
 * at most kinesis_records_per_item records of them (1 by default: a later
 * event of an item never goes out with, or before, an earlier one), in
 * queue order, within the API's limits.  With kinesis_aggregate, an item's
 * pending events go into one KPL aggregated record instead (up to the
 * record size limit), which lands or fails whole.  An item whose shard has
 * no room now waits (req->wait_ms: the soonest a waiting shard has room);
 * the others go.  req->rec[i] is the record event i went into, -1 if none.
 * Returns false (err) for an event too large for Kinesis.
 */
bool
kinesis_build_request(StringInfo body, StreamEvent **events, int n, KinesisRequest *req,
					  uint64 origin, char *err, int errlen)
{
	int64		keys[MAX_RECORDS_PER_CALL];
	bool		key_no_item[MAX_RECORDS_PER_CALL];	/* snapshot ends: key "snapshot" */
	int			counts[MAX_RECORDS_PER_CALL];
	int			shard[MAX_RECORDS_PER_CALL];
	int			nkeys = 0;
	int			i;
	int		   *rec = req->rec;
	int		   *nrec = &req->nrec;
	TimestampTz now = GetCurrentTimestamp();

	Assert(n <= MAX_EVENTS_PER_CALL);
	*nrec = 0;
	req->wait_ms = 0;
	for (i = 0; i < n; i++)
		rec[i] = -1;
	appendStringInfoString(body, "{\"StreamName\":");
	escape_json(body, kinesis_stream);
	appendStringInfoString(body, ",\"Records\":[");
	for (i = 0; i < n && *nrec < MAX_RECORDS_PER_CALL && nlanded + *nrec < MAX_LANDED; i++)
	{
		StreamEvent *ev = events[i];
		char		key[24];
		int			datalen;
		char	   *data;
		int			k;
		int			room;
		long		wait;

		if (was_landed(&ev->id) || rec[i] >= 0)
			continue;
		for (k = 0; k < nkeys; k++)
			if (keys[k] == ev->item_id && key_no_item[k] == ev->no_item)
				break;
		partition_key(ev, key, sizeof(key));
		if (k == nkeys)
		{
			if (nkeys == (int) lengthof(keys))
				continue;		/* too many items for one call: next call */
			keys[nkeys] = ev->item_id;
			key_no_item[nkeys] = ev->no_item;
			shard[nkeys] = kinesis_shard_of(key);
			counts[nkeys++] = 0;
		}
		if (counts[k] >= (kinesis_aggregate ? 1 : kinesis_records_per_item))
			continue;			/* the rest of this item waits */
		data = with_origin(ev, origin, &datalen);
		if (pg_b64_enc_len(datalen) + strlen(key) > (size_t) kinesis_max_record_bytes)
		{
			snprintf(err, errlen, "event %lu-%u is %d bytes, over the %d-byte Kinesis record limit",
					 (unsigned long) ev->id.lsn, ev->id.seq, pg_b64_enc_len(datalen), kinesis_max_record_bytes);
			return false;
		}
		room = kinesis_shard_room(shard[k], datalen + (int) strlen(key) + (kinesis_aggregate ? 64 : 0),
								  kinesis_aggregate ? aggregate_wants(events, n, i, datalen + (int) strlen(key)) : 0,
								  counts[k] == 0 && !kinesis_aggregate ? records_wanted(events, n, i) : 1,
								  now, &wait);
		if (room == 0)
		{
			/* its shard is at its pace: the item waits, others go */
			counts[k] = INT_MAX;
			req->wait_ms = req->wait_ms == 0 ? wait : Min(req->wait_ms, wait);
			continue;
		}
		if (kinesis_aggregate)
		{
			int			got = aggregate_item(body, events, n, i, data, datalen, key, origin, room,
											 rec, *nrec, *nrec > 0, &data, &datalen, err, errlen);

			if (got < 0)
				return false;
			if (got == 0)
				break;			/* not even its first event fits: next call */
		}
		else
		{
			if (*nrec > 0 && body->len + pg_b64_enc_len(datalen) + 64 > kinesis_max_request_bytes)
				break;
			rec[i] = *nrec;
		}
		counts[k]++;
		append_record(body, *nrec == 0, data, datalen, key);
		kinesis_shard_take(shard[k], datalen + (int) strlen(key));
		req->rec_shard[*nrec] = shard[k];
		(*nrec)++;
	}
	appendStringInfoString(body, "]}");
	return true;
}


/* Was event i sent in this call and stored? */
static bool
event_stored(const int *rec, const bool *failed, int i)
{
	return rec[i] >= 0 && !failed[rec[i]];
}

/*
 * Events stored after a failed event of the same item in one call: out of
 * order (only possible with kinesis_records_per_item > 1: an aggregated
 * record carries all of its item's events of the call).
 */
int
kinesis_count_reordered(StreamEvent **events, int n, const KinesisRequest *req, const bool *failed)
{
	const int  *rec = req->rec;
	int			reordered = 0;
	int			i;
	int			j;

	for (i = 0; i < n; i++)
	{
		if (rec[i] < 0 || !failed[rec[i]])
			continue;
		for (j = i + 1; j < n; j++)
			if (event_stored(rec, failed, j) && events[j]->item_id == events[i]->item_id)
			{
				reordered++;
				break;
			}
	}
	return reordered;
}

/*
 * After a call: the acknowledged prefix ends at the first event neither
 * stored nor landed before; stored events beyond it are remembered.
 */
int
kinesis_account(StreamEvent **events, int n, const KinesisRequest *req, const bool *failed)
{
	const int  *rec = req->rec;
	int			prefix;
	int			i;

	for (prefix = 0; prefix < n; prefix++)
		if (!event_stored(rec, failed, prefix) && !was_landed(&events[prefix]->id))
			break;
	for (i = prefix; i < n; i++)
		if (event_stored(rec, failed, i) && nlanded < MAX_LANDED)
			landed[nlanded++] = events[i]->id;
	if (prefix > 0)
		forget_landed(&events[prefix - 1]->id);
	return prefix;
}

