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

#include "kinesis.h"
#include "kinesis_request.h"
#include "lib/stringinfo.h"
#include "stream.h"
#include "utils/json.h"
#include "utils/timestamp.h"

static CURL *curl = NULL;
static struct curl_slist *headers = NULL;
static char url[512];
static char sigv4[128];
static char userpwd[512];

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

/*
 * Learn the stream's open shards (ListShards, every page) for pacing; at
 * connect, then every ticket_ext.kinesis_shards_refresh (resharding), or
 * every SHARDS_RETRY_MS (at most) while there is no list.  A refresh that fails keeps the
 * list it had.  Without one (no kinesis:ListShards permission, an error)
 * records are not paced: said once in the log.
 */
#define SHARDS_RETRY_MS 10000
static TimestampTz shards_listed_at = 0;

static void
list_shards(void)
{
	static bool warned = false;
	KinesisShardList *all = palloc0(sizeof(KinesisShardList));
	KinesisShardList *page = palloc(sizeof(KinesisShardList));
	char		err[256] = "";
	bool		ok = true;

	shards_listed_at = GetCurrentTimestamp();
	do
	{
		StringInfoData body;
		StringInfoData resp;
		long		http = 0;
		int			i;

		initStringInfo(&body);
		initStringInfo(&resp);
		/* the first page by name, the next ones by token alone (AWS's rule) */
		appendStringInfoString(&body, all->next_token[0] == '\0'
							   ? "{\"StreamName\":" : "{\"NextToken\":");
		escape_json(&body, all->next_token[0] == '\0' ? kinesis_stream : all->next_token);
		appendStringInfoChar(&body, '}');
		ok = kinesis_call("ListShards", &body, &resp, &http, err, sizeof(err));
		if (ok && http != 200)
		{
			KinesisResponse kr;
			char		perr[64];

			if (!kinesis_parse_response(resp.data, resp.len, &kr, NULL, 0, perr, sizeof(perr)))
				kr.error_type[0] = kr.message[0] = '\0';
			snprintf(err, sizeof(err), "ListShards: HTTP %ld %s: %s", http,
					 kr.error_type[0] ? kr.error_type : "error", kr.message);
			ok = false;
		}
		ok = ok && kinesis_parse_shards(resp.data, resp.len, page, err, sizeof(err));
		pfree(body.data);
		pfree(resp.data);
		for (i = 0; ok && i < page->nshards; i++)
		{
			if (all->nshards == KINESIS_MAX_SHARDS)
			{
				snprintf(err, sizeof(err), "ListShards: over %d open shards", KINESIS_MAX_SHARDS);
				ok = false;
			}
			else
				all->shards[all->nshards++] = page->shards[i];
		}
		if (ok)
			strlcpy(all->next_token, page->next_token, sizeof(all->next_token));
	} while (ok && all->next_token[0] != '\0');

	if (ok && all->nshards > 0)
	{
		kinesis_shards_set(all);
		warned = false;
	}
	else
	{
		/* a list it had stays: a stale map paces better than none */
		if (!warned)
			ereport(LOG,
					(errmsg("ticket_ext: kinesis sink: cannot list the stream's shards%s: %s",
							kinesis_shards_count() > 0 ? ", pacing with the last list" : ", records are not paced",
							err[0] ? err : "no open shard")));
		warned = true;
	}
	pfree(all);
	pfree(page);
}

static SinkResultCode
kinesis_connect(Sink *sink, char *err, int errlen)
{
	AwsCredentials cred;
	const char *target = kinesis_position_target();
	SinkResultCode code;

	kinesis_disconnect(sink);
	/* records landed in another stream say nothing about this one */
	kinesis_landed_reset(target);
	kinesis_shards_forget();	/* (maybe another stream's) listed again below */
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
	code = probe_stream(err, errlen);
	if (code == SINK_OK)
		list_shards();
	return code;
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

/* Per-shard backoff from the answer: throttled shards wait, the others not. */
static void
note_shards(const KinesisRequest *req, const KinesisResponse *kr, const bool *failed)
{
	TimestampTz now = GetCurrentTimestamp();
	int			r,
				q;

	for (r = 0; r < req->nrec; r++)
	{
		bool		throttled = false;

		if (failed[r] && kr->throttled_records > 0)
		{
			kinesis_shard_throttled(req->rec_shard[r], now);
			continue;
		}
		/* a shard's backoff ends only in a call that throttled none of it */
		for (q = 0; q < req->nrec && !throttled; q++)
			throttled = failed[q] && req->rec_shard[q] == req->rec_shard[r];
		if (!throttled)
			kinesis_shard_stored(req->rec_shard[r]);
	}
}

/*
 * Were the throttled records all of known, paced shards?  Then they wait
 * alone (note_shards); otherwise the whole sink backs off.
 */
static bool
throttling_paced(const KinesisRequest *req, const bool *failed)
{
	int			r;

	if (!kinesis_shards_pacing())
		return false;
	for (r = 0; r < req->nrec; r++)
		if (failed[r] && req->rec_shard[r] < 0)
			return false;
	return true;
}

static void
kinesis_send(Sink *sink, StreamEvent **events, int n, SinkResult *result)
{
	StringInfoData body;
	StringInfoData resp;
	KinesisRequest req;
	bool		failed[MAX_RECORDS_PER_CALL] = {0};
	long		http = 0;
	bool		ok;
	KinesisResponse kr;
	char		perr[256];

	result->code = SINK_OK;
	result->acked = 0;
	n = Min(n, MAX_EVENTS_PER_CALL);
	if (TimestampDifferenceExceeds(shards_listed_at, GetCurrentTimestamp(),
								   kinesis_shards_count() > 0 ? kinesis_shards_refresh_ms
								   : Min(kinesis_shards_refresh_ms, SHARDS_RETRY_MS)))
		list_shards();
	initStringInfo(&body);
	if (!kinesis_build_request(&body, events, n, &req, sink->pos.origin,
							   result->error, sizeof(result->error)))
	{
		result->code = SINK_FATAL_CONFIG;
		pfree(body.data);
		return;
	}
	if (req.nrec == 0)
	{
		result->acked = kinesis_account(events, n, &req, failed);	/* all landed */
		if (req.wait_ms > 0)
		{
			/* every pending item's shard is at its pace */
			result->code = SINK_PACED;
			result->wait_ms = req.wait_ms;
		}
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
	if (!kinesis_parse_response(resp.data, resp.len, &kr, failed, req.nrec, perr, sizeof(perr)))
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
	if (!answer_complete(&kr, failed, req.nrec))
	{
		/* cannot tell what was stored: nothing counts, resend all later */
		result->code = SINK_RETRY;
		snprintf(result->error, sizeof(result->error),
				 "PutRecords: incomplete answer (FailedRecordCount %d, %d errors in %d of %d records)",
				 kr.failed_count, count_true(failed, kr.nrecords), kr.nrecords, req.nrec);
		return;
	}
	result->acked = kinesis_account(events, n, &req, failed);
	note_shards(&req, &kr, failed);
	if (kr.failed_count > 0)
	{
		/* (only kinesis_records_per_item > 1, unaggregated, can reorder) */
		int			reordered = kinesis_aggregate || kinesis_records_per_item == 1 ? 0
			: kinesis_count_reordered(events, n, &req, failed);

		result->code = kr.throttled_records > 0 ? SINK_THROTTLED : SINK_PARTIAL;
		snprintf(result->error, sizeof(result->error), "PutRecords: %d of %d records failed (%s: %s)%s",
				 kr.failed_count, req.nrec, kr.record_error, kr.message,
				 reordered > 0 ? "; a later event of the same item was stored first" : "");
		if (reordered > 0)
			ereport(LOG,
					(errmsg("ticket_ext: kinesis stored %d events ahead of an earlier failed event of their item (kinesis_records_per_item = %d)",
							reordered, kinesis_records_per_item)));
		if (kr.throttled_records > 0 && kr.throttled_records == kr.failed_count &&
			throttling_paced(&req, failed))
		{
			/* the throttled shards back off alone (note_shards); others go on */
			result->code = SINK_PACED;
			result->throttled = kr.throttled_records;
			result->wait_ms = 0;	/* the next request skips the waiting shards */
		}
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

/*
 * Aggregated, a request carries many events per record: take as many as a
 * request may hold (AWS counts records, not events, against a shard).
 */
static int
kinesis_batch_size(void)
{
	return kinesis_aggregate ? MAX_EVENTS_PER_CALL : stream_batch_size;
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
	.batch_size = kinesis_batch_size,
};
