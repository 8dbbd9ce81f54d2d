/*
 * libFuzzer harness for the KPL aggregated record encoder
 * (bgworker/stream/kpl_aggregate.c): the input is cut into a partition key
 * and user records; the encoded record must be magic + protobuf + MD5 of
 * the protobuf, and a protobuf decoder written here (independently of the
 * encoder) must give back the same key and records, in order.
 */
#include "postgres_fe.h"

#include "common/md5.h"
#include "kinesis.h"

static uint64
read_varint(const unsigned char **p, const unsigned char *end)
{
	uint64		v = 0;
	int			shift = 0;

	for (;;)
	{
		if (*p >= end || shift > 63)
			abort();
		v |= (uint64) (**p & 0x7F) << shift;
		if ((*(*p)++ & 0x80) == 0)
			return v;
		shift += 7;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	KplAggregate agg;
	const char *errstr = NULL;
	char		key[64];
	int			keylen;
	const uint8_t *chunks[64];
	int			lens[64];
	int			n = 0;
	size_t		pos;
	char	   *out;
	int			outlen;
	unsigned char md5[16];
	const unsigned char *p;
	const unsigned char *end;
	int			seen = 0;
	bool		got_key = false;

	if (size < 2)
		return 0;
	/* the key: 1 to 24 printable bytes */
	keylen = 1 + data[0] % 24;
	for (int i = 0; i < keylen; i++)
		key[i] = 'a' + (i + data[0]) % 26;
	key[keylen] = '\0';
	/* records: a length byte, then that many bytes (0..255) */
	for (pos = 1; pos < size && n < 64;)
	{
		int			len = data[pos++];

		if (pos + len > size)
			len = size - pos;
		chunks[n] = data + pos;
		lens[n++] = len;
		pos += len;
	}

	kpl_begin(&agg, key);
	for (int i = 0; i < n; i++)
	{
		int			before = kpl_size_with(&agg, lens[i]);

		kpl_add(&agg, (const char *) chunks[i], lens[i]);
		if (4 + agg.pb.len + 16 != before)
			abort();			/* kpl_size_with must be exact */
	}
	if (!kpl_finish(&agg, &out, &outlen, &errstr))
		abort();

	if (outlen < 20 || memcmp(out, "\xF3\x89\x9A\xC2", 4) != 0)
		abort();
	if (!pg_md5_binary(out + 4, outlen - 20, md5, &errstr) ||
		memcmp(md5, out + outlen - 16, 16) != 0)
		abort();

	p = (const unsigned char *) out + 4;
	end = (const unsigned char *) out + outlen - 16;
	while (p < end)
	{
		uint64		tag = read_varint(&p, end);
		uint64		len = read_varint(&p, end);

		if ((tag & 7) != 2 || len > (uint64) (end - p))
			abort();
		if (tag >> 3 == 1)
		{
			if (got_key || len != (uint64) keylen || memcmp(p, key, keylen) != 0)
				abort();
			got_key = true;
		}
		else if (tag >> 3 == 3)
		{
			const unsigned char *r = p;
			const unsigned char *rend = p + len;
			uint64		pk;
			uint64		dlen;

			if (seen >= n || read_varint(&r, rend) != ((1 << 3) | 0))
				abort();
			pk = read_varint(&r, rend);
			if (pk != 0 || read_varint(&r, rend) != ((3 << 3) | 2))
				abort();
			dlen = read_varint(&r, rend);
			if (dlen != (uint64) lens[seen] || r + dlen != rend ||
				memcmp(r, chunks[seen], dlen) != 0)
				abort();
			seen++;
		}
		else
			abort();
		p += len;
	}
	if (!got_key || seen != n)
		abort();
	pfree(out);
	return 0;
}
