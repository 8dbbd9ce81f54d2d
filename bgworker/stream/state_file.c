/*-------------------------------------------------------------------------
 *
 * state_file.c
 *	  Small files of a sink worker's own in the data directory
 *	  ($PGDATA/ticket_ext.<name>), like autoprewarm's autoprewarm.blocks:
 *	  where a sink's slot came from (stream_history.c) and the position of
 *	  a sink that keeps none itself (Kinesis).
 *
 * Written whole, to a temporary file renamed over the old one, so a reader
 * sees the old contents or the new ones, never a mix.  A slot's origin is
 * made durable (fsync of the file and the directory: a slot must never
 * outlive the record of where it came from, even an operating system
 * crash); a Kinesis position is not (rewritten after every call): after an
 * operating system crash it may be older than the last write, which only
 * repeats events (see docs/streaming.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "stream.h"

void
state_file_path(char *path, size_t len, const char *name)
{
	snprintf(path, len, "%s/ticket_ext.%s", DataDir, name);
}

/* Replace the file's contents; a failure is logged once, never fatal. */
bool
state_file_save(const char *name, const char *content, bool durable)
{
	static bool failing = false;
	char		path[MAXPGPATH];
	char		tmp[MAXPGPATH + 4];
	int			len = strlen(content);
	int			fd;
	bool		ok = false;

	state_file_path(path, sizeof(path), name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, pg_file_create_mode);
	if (fd >= 0)
	{
		ok = write(fd, content, len) == len;
		ok = close(fd) == 0 && ok;
		ok = ok && (durable ? durable_rename(tmp, path, LOG) == 0 : rename(tmp, path) == 0);
	}
	if (!ok && !failing)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("ticket_ext: could not write \"%s\": %m", path)));
	failing = !ok;
	return ok;
}

/* The file's contents (NUL-terminated, at most len - 1 bytes), if any. */
bool
state_file_load(const char *name, char *buf, int len)
{
	char		path[MAXPGPATH];
	int			fd;
	int			n;

	state_file_path(path, sizeof(path), name);
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

void
state_file_remove(const char *name)
{
	char		path[MAXPGPATH];

	state_file_path(path, sizeof(path), name);
	(void) unlink(path);
}
