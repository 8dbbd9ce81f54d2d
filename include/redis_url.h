/*
 * redis_url.h
 *	  Parsing redis://[[user]:password@]host[:port][/db] (plain C, no
 *	  PostgreSQL dependencies, so test/fuzz can fuzz it on its own).
 */
#ifndef REDIS_URL_H
#define REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct RedisUrl
{
	char		host[256];
	int			port;
	char		user[128];		/* empty: no ACL user (AUTH password) */
	char		password[256];	/* empty: no AUTH */
	int			db;
} RedisUrl;

/* false with a message in err (never containing the password) */
extern bool redis_url_parse(const char *url, RedisUrl *out, char *err, size_t errlen);

#endif
