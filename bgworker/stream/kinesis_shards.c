/*-------------------------------------------------------------------------
 *
 * kinesis_shards.c
 *	  The Kinesis stream's open shards (from ListShards), the shard of each
 *	  record (the MD5 of its partition key, as a 128-bit number, falls in
 *	  the shard's hash key range), and pacing: each shard is a token
 *	  bucket of ticket_ext.kinesis_shard_records_per_second and
 *	  kinesis_shard_bytes_per_second (defaults a little under AWS's 1,000
 *	  records/s and 1 MiB/s per shard, for the clocks of two machines),
 *	  holding 40 ms of them: bucket and refill together stay under AWS's
 *	  limits in any second, even the first after an idle one.  A shard AWS
 *	  throttles anyway backs off alone, 100 ms doubling to 2 s; the others
 *	  keep flowing.
 *
 *	  Without a shard list (ListShards refused or not answered) there is
 *	  no pacing: every record may go, and throttling backs the whole sink
 *	  off, as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "kinesis.h"
#include "utils/memutils.h"
#include "stream.h"
#include "utils/timestamp.h"

#define BUCKET_SECONDS 0.04
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

typedef struct ShardPace
{
	char		id[64];
	uint128		start;
	uint128		end;
	double		records;		/* tokens */
	double		bytes;
	TimestampTz refilled;
	TimestampTz blocked_until;	/* throttled: backing off until */
	int			backoff_ms;
} ShardPace;

static ShardPace *shards = NULL;	/* sorted by start */
static int	nshards = 0;

static double records_cap(void);
static double bytes_cap(void);

static int
by_start(const void *a, const void *b)
{
	const ShardPace *x = a;
	const ShardPace *y = b;

	return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

/* A new shard list; shards still in it keep their buckets and backoff. */
void
kinesis_shards_set(const KinesisShardList *list)
{
	ShardPace  *next = MemoryContextAllocZero(TopMemoryContext,
											  sizeof(ShardPace) * Max(list->nshards, 1));
	int			i,
				j;

	for (i = 0; i < list->nshards; i++)
	{
		ShardPace  *p = &next[i];

		strlcpy(p->id, list->shards[i].id, sizeof(p->id));
		p->start = list->shards[i].start;
		p->end = list->shards[i].end;
		p->records = records_cap();
		p->bytes = bytes_cap();
		p->refilled = GetCurrentTimestamp();
		for (j = 0; j < nshards; j++)
			if (strcmp(shards[j].id, p->id) == 0)
			{
				*p = shards[j];
				break;
			}
	}
	qsort(next, list->nshards, sizeof(ShardPace), by_start);
	if (shards)
		pfree(shards);
	shards = next;
	nshards = list->nshards;
}

void
kinesis_shards_forget(void)
{
	nshards = 0;
}

int
kinesis_shards_count(void)
{
	return nshards;
}

/* Are records paced (a shard list, and limits set)? */
bool
kinesis_shards_pacing(void)
{
	return nshards > 0 && kinesis_shard_records_per_second > 0 && kinesis_shard_bytes_per_second > 0;
}

/* A bucket holds at least one record: a limit of 1 record/s still sends. */
static double
records_cap(void)
{
	return Max(1.0, kinesis_shard_records_per_second * BUCKET_SECONDS);
}

static double
bytes_cap(void)
{
	return kinesis_shard_bytes_per_second * BUCKET_SECONDS;
}

/* When the earliest throttled shard may send again (0: none waits). */
long
kinesis_shards_blocked_ms(TimestampTz now)
{
	long		wait = 0;
	int			i;

	for (i = 0; i < nshards; i++)
		if (shards[i].blocked_until > now)
		{
			long		w = (long) ((shards[i].blocked_until - now) / 1000) + 1;

			wait = wait == 0 ? w : Min(wait, w);
		}
	return wait;
}

/* The shard a record with this partition key goes to; -1 if not known. */
int
kinesis_shard_of(const char *partition_key)
{
	uint8		md5[16];
	uint128		h = 0;
	const char *errstr = NULL;
	int			lo = 0,
				hi = nshards - 1;
	int			i;

	if (!kinesis_shards_pacing() || !kinesis_md5(partition_key, strlen(partition_key), md5, &errstr))
		return -1;
	for (i = 0; i < 16; i++)
		h = (h << 8) | md5[i];	/* big-endian, as AWS reads it */
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (h < shards[mid].start)
			hi = mid - 1;
		else if (h > shards[mid].end)
			lo = mid + 1;
		else
			return mid;
	}
	return -1;					/* in no open shard: resharded meanwhile */
}

static void
refill(ShardPace *p, TimestampTz now)
{
	double		secs = (double) (now - p->refilled) / USECS_PER_SEC;

	if (secs <= 0)
		return;
	/* (caps read now: a reload that lowers the limits lowers full buckets) */
	p->records = Min(records_cap(), p->records + secs * kinesis_shard_records_per_second);
	p->bytes = Min(bytes_cap(), p->bytes + secs * kinesis_shard_bytes_per_second);
	p->refilled = now;
}

/*
 * May the shard take one record of at least min_bytes now, and does it
 * have fill_bytes and fill_records (what the item would like to send in
 * this call; at most a full bucket: a shard refilling record by record
 * is not sent a record per call)?
 * Returns how many bytes the record may have (>= min_bytes: a record
 * larger than the bucket goes when the bucket is full), or 0 and how long
 * to wait (*wait_ms).  Unknown shard or no pacing: any size.
 */
int
kinesis_shard_room(int shard, int min_bytes, int fill_bytes, int fill_records,
				   TimestampTz now, long *wait_ms)
{
	ShardPace  *p;
	double		bcap = bytes_cap();
	double		need;

	if (shard < 0 || shard >= nshards || !kinesis_shards_pacing())
		return INT_MAX;
	p = &shards[shard];
	refill(p, now);
	if (now < p->blocked_until)
	{
		*wait_ms = (long) ((p->blocked_until - now) / 1000) + 1;
		return 0;
	}
	need = Min(Max(1, fill_records), records_cap());
	if (p->records < need)
	{
		*wait_ms = (long) ((need - p->records) * 1000 / kinesis_shard_records_per_second) + 1;
		return 0;
	}
	need = Min(Max(min_bytes, fill_bytes), bcap);
	if (p->bytes < need)
	{
		*wait_ms = (long) ((need - p->bytes) * 1000 / kinesis_shard_bytes_per_second) + 1;
		return 0;
	}
	return Max((int) p->bytes, min_bytes);
}

void
kinesis_shard_take(int shard, int bytes)
{
	if (shard < 0 || shard >= nshards || !kinesis_shards_pacing())
		return;
	shards[shard].records -= 1;
	shards[shard].bytes -= bytes;
}

/* AWS throttled a record of the shard anyway: it alone waits. */
void
kinesis_shard_throttled(int shard, TimestampTz now)
{
	ShardPace  *p;

	if (shard < 0 || shard >= nshards)
		return;
	p = &shards[shard];
	p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS : Min(p->backoff_ms * 2, BACKOFF_MAX_MS);
	p->blocked_until = TimestampTzPlusMilliseconds(now, p->backoff_ms);
	p->records = Min(p->records, 0);
	p->bytes = Min(p->bytes, 0);
	p->refilled = now;
}

void
kinesis_shard_stored(int shard)
{
	if (shard >= 0 && shard < nshards)
		shards[shard].backoff_ms = 0;
}
