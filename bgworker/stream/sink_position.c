/*-------------------------------------------------------------------------
 *
 * sink_position.c
 *	  Remember, across worker and server restarts, the last event a sink
 *	  that cannot deduplicate (Kinesis) acknowledged.
 *
 * The replication slot is the durable position, but PostgreSQL 15 writes a
 * logical slot's confirmed position to disk only now and then (checkpoint,
 * shutdown), so after a crash the stream restarts from further back.
 * Redis drops what it has by entry id; Kinesis would store it again.  So
 * after every acknowledged call we write the sink's last event id to a
 * small file in the data directory (like autoprewarm's autoprewarm.blocks)
 * and skip up to it after a restart.  Written with rename, not fsync:
 * it survives any process crash; after an operating system crash it may be
 * older, which only means repeats (consumers drop them by event_id).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xlog.h"
#include "common/file_perm.h"
#include "miscadmin.h"
#include "stream.h"

static bool save_failing = false;

static void
position_path(char *path, size_t len, const char *sink, bool tmp)
{
	snprintf(path, len, "%s/ticket_ext.%s.position%s", DataDir, sink, tmp ? ".tmp" : "");
}

/* Save "target\nlsn seq\n"; a failure is logged, never fatal. */
void
sink_position_save(const char *sink, const char *target, const EventId *id)
{
	char		path[MAXPGPATH];
	char		tmp[MAXPGPATH];
	char		buf[1024];
	int			len;
	int			fd;
	bool		ok = false;

	position_path(path, sizeof(path), sink, false);
	position_path(tmp, sizeof(tmp), sink, true);
	len = snprintf(buf, sizeof(buf), "%s\n%lu %u\n", target, (unsigned long) id->lsn, id->seq);
	if (len >= (int) sizeof(buf))
	{
		if (!save_failing)
			ereport(LOG,
					(errmsg("ticket_ext: not saving the %s sink's position: its target is too long", sink)));
		save_failing = true;
		return;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, pg_file_create_mode);
	if (fd >= 0)
	{
		ok = write(fd, buf, len) == len;
		ok = close(fd) == 0 && ok;
		ok = ok && rename(tmp, path) == 0;
	}
	if (!ok)
	{
		/* once, not once per call: it only costs repeats after a crash */
		if (!save_failing)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("ticket_ext: could not save the %s sink's position to \"%s\": %m", sink, path)));
		save_failing = true;
	}
	else
		save_failing = false;
}

/*
 * The saved position for this sink and target (the same stream), if any
 * and plausible: one past the current WAL position is from another
 * history (a restored backup) and is ignored.
 */
bool
sink_position_load(const char *sink, const char *target, EventId *id)
{
	char		path[MAXPGPATH];
	char		buf[1024];
	char	   *nl;
	unsigned long lsn;
	unsigned int seq;
	int			fd;
	int			len;

	position_path(path, sizeof(path), sink, false);
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = '\0';
	nl = strchr(buf, '\n');
	if (nl == NULL)
		return false;
	*nl = '\0';
	if (strcmp(buf, target) != 0 || sscanf(nl + 1, "%lu %u", &lsn, &seq) != 2)
		return false;
	if ((XLogRecPtr) lsn > GetXLogInsertRecPtr())
	{
		ereport(LOG,
				(errmsg("ticket_ext: ignoring the %s sink's saved position %X/%X, ahead of this server's WAL",
						sink, LSN_FORMAT_ARGS((XLogRecPtr) lsn))));
		return false;
	}
	id->lsn = (XLogRecPtr) lsn;
	id->seq = seq;
	return true;
}
