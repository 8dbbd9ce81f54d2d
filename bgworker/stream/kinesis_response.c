/*-------------------------------------------------------------------------
 *
 * kinesis_response.c
 *	  Reading Kinesis PutRecords responses (and AWS JSON errors) with
 *	  PostgreSQL's JSON parser.  Frontend-safe, so test/fuzz feeds it
 *	  arbitrary bytes outside the server.
 *
 *	  {"FailedRecordCount":1,"Records":[{"SequenceNumber":"..","ShardId":".."},
 *	   {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":".."}]}
 *	  {"__type":"ResourceNotFoundException","message":"Stream x not found."}
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "json_lex.h"
#include "kinesis.h"
#include "mb/pg_wchar.h"

typedef struct RespState
{
	KinesisResponse *out;
	int			max_records;
	int			depth;			/* objects and arrays open */
	bool		in_records;		/* inside the top-level "Records" array */
	int			records_depth;	/* depth of that array */
	const char *field;			/* current field name (static) */
	bool		bad;
} RespState;

static void
obj_start(void *arg)
{
	RespState  *st = arg;

	st->depth++;
	if (st->in_records && st->depth == st->records_depth + 1)
	{
		if (st->out->nrecords >= st->max_records)
			st->bad = true;
		else
			st->out->record_failed[st->out->nrecords++] = false;
		/* (max_records 0: an error or summary response, no records wanted) */
	}
}

static void
obj_end(void *arg)
{
	((RespState *) arg)->depth--;
}

static void
arr_start(void *arg)
{
	RespState  *st = arg;

	st->depth++;
	if (st->depth == 2 && st->field != NULL && strcmp(st->field, "Records") == 0)
	{
		st->in_records = true;
		st->records_depth = st->depth;
	}
}

static void
arr_end(void *arg)
{
	RespState  *st = arg;

	if (st->in_records && st->depth == st->records_depth)
		st->in_records = false;
	st->depth--;
}

static void
field_start(void *arg, char *fname, bool isnull)
{
	RespState  *st = arg;
	static const char *const known[] = {
		"FailedRecordCount", "Records", "__type", "message", "Message",
		"ErrorCode", "ErrorMessage"
	};
	int			i;

	st->field = NULL;
	for (i = 0; i < (int) lengthof(known); i++)
		if (strcmp(fname, known[i]) == 0)
			st->field = known[i];
	pfree(fname);
}

static void
copy_text(char *dst, size_t cap, const char *src)
{
	const char *hash = strrchr(src, '#');	/* "namespace#Name" -> "Name" */

	strlcpy(dst, hash ? hash + 1 : src, cap);
}

static void
scalar(void *arg, char *token, JsonTokenType type)
{
	RespState  *st = arg;
	KinesisResponse *out = st->out;

	if (token == NULL)
		return;
	if (st->field == NULL || type == JSON_TOKEN_NULL)
	{
		pfree(token);
		return;
	}
	if (st->depth == 1)
	{
		if (strcmp(st->field, "FailedRecordCount") == 0 && type == JSON_TOKEN_NUMBER)
			out->failed_count = atoi(token);
		else if (strcmp(st->field, "__type") == 0)
			copy_text(out->error_type, sizeof(out->error_type), token);
		else if (strcmp(st->field, "message") == 0 || strcmp(st->field, "Message") == 0)
			strlcpy(out->message, token, sizeof(out->message));
	}
	else if (st->in_records && st->depth == st->records_depth + 1 && out->nrecords > 0)
	{
		/* a record fails once, however many ErrorCode keys it repeats */
		if (strcmp(st->field, "ErrorCode") == 0 && !out->record_failed[out->nrecords - 1])
		{
			out->record_failed[out->nrecords - 1] = true;
			if (out->record_error[0] == '\0')
				copy_text(out->record_error, sizeof(out->record_error), token);
			if (strcmp(token, "ProvisionedThroughputExceededException") == 0)
				out->throttled_records++;
		}
		else if (strcmp(st->field, "ErrorMessage") == 0 && out->message[0] == '\0')
			strlcpy(out->message, token, sizeof(out->message));
	}
	pfree(token);				/* everything needed was copied */
}

/* Run sem over body (len bytes, not NUL-terminated); *errpos: where it failed. */
static JsonParseErrorType
parse_json(const char *body, size_t len, JsonSemAction *sem, int *errpos)
{
	JsonLexContext *lex;
	JsonParseErrorType rc;
	char	   *copy = palloc(len + 1);

	memcpy(copy, body, len);
	copy[len] = '\0';
	lex = makeJsonLexContextCstringLen(copy, (int) len, PG_UTF8, true);
	rc = pg_parse_json(lex, sem);
	*errpos = (int) (lex->token_start - lex->input);
	free_json_lex(lex);
	pfree(copy);
	return rc;
}

/*
 * Parse a response body.  record_failed must have room for max_records.
 * False (with err) if it is not JSON or has more records than expected.
 */
bool
kinesis_parse_response(const char *body, size_t len, KinesisResponse *out,
					   bool *record_failed, int max_records,
					   char *err, size_t errlen)
{
	RespState	st = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType rc;
	int			errpos;

	memset(out, 0, sizeof(*out));
	out->failed_count = -1;
	out->record_failed = record_failed;
	st.out = out;
	st.max_records = max_records;
	sem.semstate = &st;
	sem.object_start = obj_start;
	sem.object_end = obj_end;
	sem.array_start = arr_start;
	sem.array_end = arr_end;
	sem.object_field_start = field_start;
	sem.scalar = scalar;

	if (len == 0)
	{
		snprintf(err, errlen, "empty response body");
		return false;
	}
	rc = parse_json(body, len, &sem, &errpos);
	if (rc != JSON_SUCCESS)
	{
		snprintf(err, errlen, "response is not valid JSON (near byte %d, parse error %d)",
				 errpos, (int) rc);
		return false;
	}
	if (st.bad)
	{
		snprintf(err, errlen, "response has more records than the request");
		return false;
	}
	return true;
}

/*
 * ListShards:
 *	  {"Shards":[{"ShardId":"shardId-000000000000",
 *	   "HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"3402..."},
 *	   "SequenceNumberRange":{"StartingSequenceNumber":"..",
 *	                          "EndingSequenceNumber":".."}}],   (closed only)
 *	   "NextToken":".."}
 */
typedef struct ShardsState
{
	KinesisShardList *out;
	int			depth;
	bool		in_shards;		/* inside the top-level "Shards" array */
	char		field[32];		/* current field name (known ones only) */
	char		parent[32];		/* the field of the object we are in */
	KinesisShardInfo cur;
	bool		bad;
} ShardsState;

/* A hash key ("0" .. "340282366920938463463374607431768211455"). */
static bool
parse_hash_key(const char *s, uint128 *v)
{
	uint128		x = 0;

	if (*s == '\0' || strlen(s) > 39)
		return false;
	for (; *s; s++)
	{
		uint128		next;

		if (*s < '0' || *s > '9')
			return false;
		next = x * 10 + (uint128) (*s - '0');
		if (next / 10 != x)
			return false;		/* over 2^128 - 1 */
		x = next;
	}
	*v = x;
	return true;
}

static void
shards_obj_start(void *arg)
{
	ShardsState *st = arg;

	st->depth++;
	if (st->in_shards && st->depth == 3)
		memset(&st->cur, 0, sizeof(st->cur));
	else if (st->depth == 4)
		strlcpy(st->parent, st->field, sizeof(st->parent));
}

static void
shards_obj_end(void *arg)
{
	ShardsState *st = arg;

	if (st->in_shards && st->depth == 3)
	{
		if (st->cur.id[0] == '\0' || !st->cur.has_start || !st->cur.has_end ||
			st->cur.start > st->cur.end)
			st->bad = true;
		else if (!st->cur.closed)
		{
			if (st->out->nshards >= KINESIS_MAX_SHARDS)
				st->bad = true;
			else
				st->out->shards[st->out->nshards++] = st->cur;
		}
	}
	if (st->depth == 4)
		st->parent[0] = '\0';
	st->depth--;
}

static void
shards_arr_start(void *arg)
{
	ShardsState *st = arg;

	st->depth++;
	if (st->depth == 2 && strcmp(st->field, "Shards") == 0)
		st->in_shards = true;
}

static void
shards_arr_end(void *arg)
{
	ShardsState *st = arg;

	if (st->depth == 2)
		st->in_shards = false;
	st->depth--;
}

static void
shards_field_start(void *arg, char *fname, bool isnull)
{
	ShardsState *st = arg;

	strlcpy(st->field, strlen(fname) < sizeof(st->field) ? fname : "", sizeof(st->field));
	pfree(fname);
}

static void
shards_scalar(void *arg, char *token, JsonTokenType type)
{
	ShardsState *st = arg;

	if (token == NULL)
		return;
	if (type == JSON_TOKEN_NULL)
		;
	else if (st->depth == 1 && strcmp(st->field, "NextToken") == 0)
	{
		if (strlen(token) >= sizeof(st->out->next_token))
			st->bad = true;
		else
			strlcpy(st->out->next_token, token, sizeof(st->out->next_token));
	}
	else if (st->in_shards && st->depth == 3 && strcmp(st->field, "ShardId") == 0)
	{
		if (strlen(token) >= sizeof(st->cur.id))
			st->bad = true;
		else
			strlcpy(st->cur.id, token, sizeof(st->cur.id));
	}
	else if (st->in_shards && st->depth == 4 && strcmp(st->parent, "HashKeyRange") == 0)
	{
		if (strcmp(st->field, "StartingHashKey") == 0)
			st->bad |= !(st->cur.has_start = parse_hash_key(token, &st->cur.start));
		else if (strcmp(st->field, "EndingHashKey") == 0)
			st->bad |= !(st->cur.has_end = parse_hash_key(token, &st->cur.end));
	}
	else if (st->in_shards && st->depth == 4 && strcmp(st->parent, "SequenceNumberRange") == 0 &&
			 strcmp(st->field, "EndingSequenceNumber") == 0)
		st->cur.closed = true;	/* resharded: no more writes */
	pfree(token);
}

/*
 * Parse a ListShards answer into out (its open shards, and NextToken if
 * there are more pages).  False (err) if it is not one.
 */
bool
kinesis_parse_shards(const char *body, size_t len, KinesisShardList *out,
					 char *err, size_t errlen)
{
	ShardsState st = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType rc;
	int			errpos;

	out->nshards = 0;
	out->next_token[0] = '\0';
	st.out = out;
	sem.semstate = &st;
	sem.object_start = shards_obj_start;
	sem.object_end = shards_obj_end;
	sem.array_start = shards_arr_start;
	sem.array_end = shards_arr_end;
	sem.object_field_start = shards_field_start;
	sem.scalar = shards_scalar;
	rc = parse_json(body, len, &sem, &errpos);
	if (rc != JSON_SUCCESS || st.bad)
	{
		snprintf(err, errlen, "ListShards: %s", rc != JSON_SUCCESS ? "answer is not valid JSON"
				 : "a shard without an id or a valid hash key range, or too many shards");
		return false;
	}
	return true;
}
