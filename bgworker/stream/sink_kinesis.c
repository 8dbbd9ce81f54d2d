/*-------------------------------------------------------------------------
 *
 * sink_kinesis.c
 *	  AWS Kinesis Data Streams sink: PutRecords over HTTPS with libcurl,
 *	  signed by curl's own SigV4 (CURLOPT_AWS_SIGV4).
 *
 * Ordering: the partition key is the item id, so an item's events go to
 * one shard.  PutRecords may fail some records and store later ones, so by
 * default a request carries at most one record per item, the item's
 * earliest pending event: a failed record can never be overtaken by a
 * later event of its item.  That caps one item at one record per round
 * trip; ticket_ext.kinesis_records_per_item trades that guarantee for a hot
 * item's throughput (a partial failure may then store a later event first;
 * it is logged, and event ids let consumers restore the order).  A request takes one event from each of many items, so it
 * can store events beyond the acknowledged (contiguous) prefix; those are
 * remembered ("landed") and not sent again (Kinesis cannot deduplicate;
 * consumers can, by event_id, for the repeats that remain possible: see
 * README).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/base64.h"
#include "kinesis.h"
#include "lib/stringinfo.h"
#include "stream.h"
#include "utils/json.h"

#define MAX_RECORDS_PER_CALL 500

static CURL *curl = NULL;
static struct curl_slist *headers = NULL;
static char url[512];
static char sigv4[128];
static char userpwd[512];

/* events stored by Kinesis beyond an acknowledged prefix (see above) */
#define MAX_LANDED (MAX_RECORDS_PER_CALL * 2)
static EventId landed[MAX_LANDED];
static int	nlanded = 0;
static char landed_for[1024];	/* the target they landed in */

static const char *kinesis_position_target(void);

static bool
kinesis_configured(void)
{
	return kinesis_stream != NULL && kinesis_stream[0] != '\0';
}

static bool
kinesis_enabled(void)
{
	return kinesis_configured();
}

static void
kinesis_disconnect(Sink *sink)
{
	if (curl)
		curl_easy_cleanup(curl);
	curl = NULL;
	if (headers)
		curl_slist_free_all(headers);
	headers = NULL;
	explicit_bzero(userpwd, sizeof(userpwd));
}

/* us-east-1, eu-central-2, us-gov-west-1, cn-north-1 ... */
static bool
region_valid(const char *r)
{
	int			parts = 0;
	const char *p = r;

	if (r == NULL || *r == '\0' || strlen(r) > 40)
		return false;
	while (*p)
	{
		const char *start = p;

		while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
			p++;
		if (p == start)
			return false;
		parts++;
		if (*p == '-')
			p++;
		else if (*p != '\0')
			return false;
	}
	return parts >= 3 && p[-1] >= '0' && p[-1] <= '9';
}

static size_t
collect_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	appendBinaryStringInfo((StringInfo) arg, ptr, (int) (size * nmemb));
	return size * nmemb;
}

/*
 * One signed Kinesis API call (JSON 1.1 protocol).  False with err on a
 * transport failure; otherwise *http and the response body in resp.
 */
static bool
kinesis_call(const char *operation, StringInfo body, StringInfo resp, long *http,
			 char *err, int errlen)
{
	struct curl_slist *call_headers = NULL;
	struct curl_slist *h;
	char		target[96];
	CURLcode	rc;

	snprintf(target, sizeof(target), "X-Amz-Target: Kinesis_20131202.%s", operation);
	for (h = headers; h; h = h->next)
		call_headers = curl_slist_append(call_headers, h->data);
	call_headers = curl_slist_append(call_headers, target);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, call_headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) body->len);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
	rc = curl_easy_perform(curl);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(call_headers);
	if (rc != CURLE_OK)
	{
		snprintf(err, errlen, "%s to %s: %s", operation, url, curl_easy_strerror(rc));
		return false;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, http);
	return true;
}

static SinkResultCode classify_error(long http, const char *type);

/*
 * Connecting = asking for the stream's summary: proves the endpoint, the
 * credentials and the stream name before any event is sent.
 */
static SinkResultCode
probe_stream(char *err, int errlen)
{
	StringInfoData body;
	StringInfoData resp;
	long		http = 0;
	KinesisResponse kr;
	char		perr[128];
	SinkResultCode code = SINK_OK;

	initStringInfo(&body);
	initStringInfo(&resp);
	appendStringInfoString(&body, "{\"StreamName\":");
	escape_json(&body, kinesis_stream);
	appendStringInfoChar(&body, '}');
	if (!kinesis_call("DescribeStreamSummary", &body, &resp, &http, err, errlen))
		code = SINK_RETRY;
	else if (http != 200)
	{
		if (!kinesis_parse_response(resp.data, resp.len, &kr, NULL, 0, perr, sizeof(perr)))
			kr.error_type[0] = kr.message[0] = '\0';
		code = classify_error(http, kr.error_type);
		snprintf(err, errlen, "DescribeStreamSummary: HTTP %ld %s: %s", http,
				 kr.error_type[0] ? kr.error_type : "error", kr.message);
	}
	pfree(body.data);
	pfree(resp.data);
	return code;
}

static SinkResultCode
kinesis_connect(Sink *sink, char *err, int errlen)
{
	AwsCredentials cred;
	const char *target = kinesis_position_target();

	kinesis_disconnect(sink);
	/* records landed in another stream say nothing about this one */
	if (strcmp(landed_for, target) != 0)
	{
		nlanded = 0;
		strlcpy(landed_for, target, sizeof(landed_for));
	}
	if (!region_valid(kinesis_region))
	{
		snprintf(err, errlen, "ticket_ext.kinesis_region \"%s\" is not a region name like us-east-1",
				 kinesis_region ? kinesis_region : "");
		return SINK_FATAL_CONFIG;
	}
	if (!aws_credentials_get(&cred, err, errlen))
	{
		explicit_bzero(&cred, sizeof(cred));
		return SINK_FATAL_CONFIG;
	}
	if (kinesis_endpoint && kinesis_endpoint[0])
		strlcpy(url, kinesis_endpoint, sizeof(url));
	else
		snprintf(url, sizeof(url), "https://kinesis.%s.amazonaws.com/", kinesis_region);
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:kinesis", kinesis_region);
	snprintf(userpwd, sizeof(userpwd), "%s:%s", cred.key, cred.secret);

	curl = curl_easy_init();
	if (curl == NULL)
	{
		snprintf(err, errlen, "curl_easy_init failed");
		return SINK_RETRY;
	}
	headers = curl_slist_append(headers, "Content-Type: application/x-amz-json-1.1");
	/* no "Expect: 100-continue" round trip before each body */
	headers = curl_slist_append(headers, "Expect:");
	if (cred.token[0])
	{
		char		h[4200];

		snprintf(h, sizeof(h), "X-Amz-Security-Token: %s", cred.token);
		headers = curl_slist_append(headers, h);
		explicit_bzero(h, sizeof(h));
	}
	explicit_bzero(&cred, sizeof(cred));
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) stream_connect_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) stream_io_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	return probe_stream(err, errlen);
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

/* Classify an AWS error (__type of a non-200 response). */
static SinkResultCode
classify_error(long http, const char *type)
{
	if (strcmp(type, "ProvisionedThroughputExceededException") == 0 ||
		strcmp(type, "LimitExceededException") == 0 ||
		strcmp(type, "ThrottlingException") == 0)
		return SINK_THROTTLED;
	if (http >= 500)
		return SINK_RETRY;
	/* expired temporary credentials: reconnecting reads them afresh */
	if (strstr(type, "ExpiredToken") != NULL)
		return SINK_FATAL_CONFIG;
	if (http == 403 || strstr(type, "NotFound") != NULL || strstr(type, "Signature") != NULL ||
		strstr(type, "AccessDenied") != NULL || strstr(type, "UnrecognizedClient") != NULL ||
		strstr(type, "Validation") != NULL || strstr(type, "KMS") != NULL)
		return SINK_FATAL_CONFIG;
	return SINK_RETRY;
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
 * and request limits; rec[] marks them with recno.  data is event i's
 * payload.  Returns 1, 0 if the record does not fit in this request
 * (others before it: rec[] cleared), or -1 (err).
 */
static int
aggregate_item(StringInfo body, StreamEvent **events, int n, int i,
			   char *data, int datalen, const char *key, uint64 origin,
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
			 body->len + b64len + 64 > kinesis_max_request_bytes))
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
 * Build one request from events[0..n): each item's earliest pending events,
 * at most kinesis_records_per_item records of them (1 by default: a later
 * event of an item never goes out with, or before, an earlier one), in
 * queue order, within the API's limits.  With kinesis_aggregate, an item's
 * pending events go into one KPL aggregated record instead (up to the
 * record size limit), which lands or fails whole.  rec[i] is the record
 * event i went into, -1 if none.  Returns false (err) for an event too
 * large for Kinesis.
 */
static bool
build_request(StringInfo body, StreamEvent **events, int n, int *rec, int *nrec,
			  uint64 origin, char *err, int errlen)
{
	int64		keys[MAX_RECORDS_PER_CALL];
	int			counts[MAX_RECORDS_PER_CALL];
	int			nkeys = 0;
	int			i;

	*nrec = 0;
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

		if (was_landed(&ev->id) || rec[i] >= 0)
			continue;
		for (k = 0; k < nkeys; k++)
			if (keys[k] == ev->item_id)
				break;
		if (k == nkeys)
		{
			if (nkeys == (int) lengthof(keys))
				continue;		/* too many items for one call: next call */
			keys[nkeys] = ev->item_id;
			counts[nkeys++] = 0;
		}
		if (counts[k] >= (kinesis_aggregate ? 1 : kinesis_records_per_item))
			continue;			/* the rest of this item waits */
		partition_key(ev, key, sizeof(key));
		data = with_origin(ev, origin, &datalen);
		if (pg_b64_enc_len(datalen) + strlen(key) > (size_t) kinesis_max_record_bytes)
		{
			snprintf(err, errlen, "event %lu-%u is %d bytes, over the %d-byte Kinesis record limit",
					 (unsigned long) ev->id.lsn, ev->id.seq, pg_b64_enc_len(datalen), kinesis_max_record_bytes);
			return false;
		}
		if (kinesis_aggregate)
		{
			int			got = aggregate_item(body, events, n, i, data, datalen, key, origin,
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
static int
count_reordered(StreamEvent **events, int n, const int *rec, const bool *failed)
{
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
static int
account(StreamEvent **events, int n, const int *rec, const bool *failed)
{
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

static int
count_true(const bool *flags, int n)
{
	int			c = 0;
	int			i;

	for (i = 0; i < n; i++)
		c += flags[i] ? 1 : 0;
	return c;
}

/*
 * A 200 answer counts only when it accounts for every record: a
 * FailedRecordCount, one entry per record sent, and as many entries with
 * an error as it says failed.  Anything less (a proxy or look-alike
 * service) is retried whole rather than taken as stored.
 */
static bool
answer_complete(const KinesisResponse *kr, const bool *failed, int nrec)
{
	return kr->failed_count >= 0 && kr->nrecords == nrec &&
		count_true(failed, nrec) == kr->failed_count;
}

static void
kinesis_send(Sink *sink, StreamEvent **events, int n, SinkResult *result)
{
	StringInfoData body;
	StringInfoData resp;
	int			rec[MAX_RECORDS_PER_CALL * 2];
	bool		failed[MAX_RECORDS_PER_CALL] = {0};
	int			nrec;
	long		http = 0;
	bool		ok;
	KinesisResponse kr;
	char		perr[256];

	result->code = SINK_OK;
	result->acked = 0;
	n = Min(n, MAX_RECORDS_PER_CALL * 2);
	initStringInfo(&body);
	if (!build_request(&body, events, n, rec, &nrec, sink->pos.origin,
					   result->error, sizeof(result->error)))
	{
		result->code = SINK_FATAL_CONFIG;
		pfree(body.data);
		return;
	}
	if (nrec == 0)
	{
		result->acked = account(events, n, rec, failed);	/* all landed */
		pfree(body.data);
		return;
	}

	initStringInfo(&resp);
	ok = kinesis_call("PutRecords", &body, &resp, &http, result->error, sizeof(result->error));
	pfree(body.data);
	if (!ok)
	{
		result->code = SINK_RETRY;
		pfree(resp.data);
		return;
	}
	if (!kinesis_parse_response(resp.data, resp.len, &kr, failed, nrec, perr, sizeof(perr)))
	{
		result->code = (http >= 500 || http == 200) ? SINK_RETRY : SINK_FATAL_CONFIG;
		snprintf(result->error, sizeof(result->error), "PutRecords: HTTP %ld, %s", http, perr);
		pfree(resp.data);
		return;
	}
	pfree(resp.data);
	if (http != 200)
	{
		result->code = classify_error(http, kr.error_type);
		snprintf(result->error, sizeof(result->error), "PutRecords: HTTP %ld %s: %s",
				 http, kr.error_type[0] ? kr.error_type : "error", kr.message);
		return;
	}
	if (!answer_complete(&kr, failed, nrec))
	{
		/* cannot tell what was stored: nothing counts, resend all later */
		result->code = SINK_RETRY;
		snprintf(result->error, sizeof(result->error),
				 "PutRecords: incomplete answer (FailedRecordCount %d, %d errors in %d of %d records)",
				 kr.failed_count, count_true(failed, kr.nrecords), kr.nrecords, nrec);
		return;
	}
	result->acked = account(events, n, rec, failed);
	if (kr.failed_count > 0)
	{
		int			reordered = count_reordered(events, n, rec, failed);

		result->code = kr.throttled_records > 0 ? SINK_THROTTLED : SINK_PARTIAL;
		snprintf(result->error, sizeof(result->error), "PutRecords: %d of %d records failed (%s: %s)%s",
				 kr.failed_count, nrec, kr.record_error, kr.message,
				 reordered > 0 ? "; a later event of the same item was stored first" : "");
		if (reordered > 0)
			ereport(LOG,
					(errmsg("ticket_ext: kinesis stored %d events ahead of an earlier failed event of their item (kinesis_records_per_item = %d)",
							reordered, kinesis_records_per_item)));
	}
}

/*
 * The stream events go to (name and region, whatever the endpoint: a
 * proxy or a VPC endpoint reaches the same stream): a saved position
 * applies to this one only.
 */
static const char *
kinesis_position_target(void)
{
	static char target[1024];

	snprintf(target, sizeof(target), "%s %s", kinesis_stream,
			 kinesis_region ? kinesis_region : "");
	return target;
}

/*
 * Kinesis keeps no position we could read back cheaply: the worker keeps
 * it in $PGDATA/ticket_ext.kinesis.position, for this stream only.
 */
static SinkResultCode
kinesis_read_position(Sink *sink, SinkPosition *pos, char *err, int errlen)
{
	(void) sink_position_load("kinesis", kinesis_position_target(), pos);
	return SINK_OK;
}

static SinkResultCode
kinesis_write_position(Sink *sink, const SinkPosition *pos, char *err, int errlen)
{
	sink_position_save("kinesis", kinesis_position_target(), pos);
	return SINK_OK;
}

static const char *
kinesis_slot(void)
{
	return kinesis_slot_name;
}

const SinkOps kinesis_sink_ops = {
	.name = "kinesis",
	.enabled = kinesis_enabled,
	.slot_name = kinesis_slot,
	.connect = kinesis_connect,
	.disconnect = kinesis_disconnect,
	.send = kinesis_send,
	.read_position = kinesis_read_position,
	.write_position = kinesis_write_position,
	.position_in_send = false,
};
