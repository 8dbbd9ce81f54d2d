/*-------------------------------------------------------------------------
 *
 * redis_url.c
 *	  Parsing ticket_ext.redis_url: redis://[[user]:password@]host[:port][/db]
 *
 * Plain C on purpose (no PostgreSQL calls): it parses a secret-bearing
 * setting, so it is fuzzed on its own (test/fuzz) and its errors never
 * quote the input.
 *
 *-------------------------------------------------------------------------
 */
#include "redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char) tolower((unsigned char) c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Copy [s, s+n) percent-decoded into out (size cap); false if bad/too long. */
static bool
decode_part(const char *s, size_t n, char *out, size_t cap)
{
	size_t		o = 0;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		char		c = s[i];

		if (c == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= n)
				return false;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (char) (hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || o + 1 >= cap)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

static bool
parse_int(const char *s, size_t n, int min, int max, int *out)
{
	long		v = 0;
	size_t		i;

	if (n == 0 || n > 9)
		return false;
	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*out = (int) v;
	return true;
}

#define FAIL(msg) do { snprintf(err, errlen, "%s", (msg)); return false; } while (0)

bool
redis_url_parse(const char *url, RedisUrl *out, char *err, size_t errlen)
{
	const char *p;
	const char *end;
	const char *at;
	const char *hostend;
	const char *slash;
	const char *q;

	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (url == NULL || *url == '\0')
		FAIL("empty URL");
	if (strncmp(url, "rediss://", 9) == 0)
		FAIL("rediss:// (TLS) is not supported: Debian 12's hiredis 0.14 has no TLS; use a TLS tunnel such as stunnel");
	if (strncmp(url, "redis://", 8) != 0)
		FAIL("URL must start with redis://");
	p = url + 8;
	end = p + strlen(p);

	/* userinfo: the last '@' before the path */
	slash = memchr(p, '/', (size_t) (end - p));
	if (slash == NULL)
		slash = end;
	at = NULL;
	for (q = p; q < slash; q++)
		if (*q == '@')
			at = q;
	if (at != NULL)
	{
		const char *colon = memchr(p, ':', (size_t) (at - p));

		if (colon == NULL)
			FAIL("credentials must be written user:password@ or :password@");
		if (!decode_part(p, (size_t) (colon - p), out->user, sizeof(out->user)))
			FAIL("invalid user name in URL");
		if (!decode_part(colon + 1, (size_t) (at - colon - 1), out->password, sizeof(out->password)))
			FAIL("invalid password encoding in URL");
		p = at + 1;
	}

	/* host: [v6] or name, then optional :port */
	if (*p == '[')
	{
		const char *close = memchr(p, ']', (size_t) (slash - p));

		if (close == NULL || close == p + 1)
			FAIL("invalid IPv6 host in URL");
		if (!decode_part(p + 1, (size_t) (close - p - 1), out->host, sizeof(out->host)))
			FAIL("host name too long");
		hostend = close + 1;
		if (hostend < slash && *hostend != ':')
			FAIL("unexpected characters after IPv6 host");
	}
	else
	{
		hostend = memchr(p, ':', (size_t) (slash - p));
		if (hostend == NULL)
			hostend = slash;
		if (hostend == p)
			FAIL("URL has no host");
		if (!decode_part(p, (size_t) (hostend - p), out->host, sizeof(out->host)))
			FAIL("host name too long or invalid");
		for (q = out->host; *q; q++)
			if (!(isalnum((unsigned char) *q) || *q == '.' || *q == '-' || *q == '_'))
				FAIL("invalid character in host name");
	}
	if (hostend < slash && *hostend == ':')
	{
		if (!parse_int(hostend + 1, (size_t) (slash - hostend - 1), 1, 65535, &out->port))
			FAIL("port must be a number between 1 and 65535");
	}

	/* /db */
	if (slash < end)
	{
		const char *dbs = slash + 1;

		if (dbs < end && !parse_int(dbs, (size_t) (end - dbs), 0, 100000, &out->db))
			FAIL("database must be a number");
	}
	return true;
}
