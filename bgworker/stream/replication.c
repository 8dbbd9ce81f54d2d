/*-------------------------------------------------------------------------
 *
 * replication.c
 *	  The worker's logical replication connection back to its own server
 *	  (libpq, replication=database): slot creation, START_REPLICATION,
 *	  reading messages without blocking, and standby status feedback.
 *
 * Why a replication connection instead of decoding in-process: the
 * walsender does the decoding, wakes up when WAL is flushed (no polling),
 * sends keepalives, owns the slot while streaming and speaks the same
 * protocol as pg_recvlogical, so the output plugin has exactly one
 * consumer protocol to support across PostgreSQL versions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "postmaster/postmaster.h"
#include "replication.h"
#include "stream.h"
#include "ticket_ext.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

static PGconn *conn = NULL;
static bool creating_slot = false;	/* CREATE_REPLICATION_SLOT sent, no answer yet */
static XLogRecPtr created_at = InvalidXLogRecPtr;	/* consistent point of the slot we created */
static bool streaming = false;	/* START_REPLICATION answered: COPY BOTH */

/*
 * Servers whose output_plugin_libraries setting lists the plugins that may
 * be used (newer minor releases) get ours added for this connection only:
 * the worker connects as a superuser, who may set it.
 */
static void
append_plugin_allowance(StringInfo buf)
{
	const char *allowed = GetConfigOption("output_plugin_libraries", true, false);
	const char *p;

	if (allowed == NULL || strstr(allowed, "ticket_ext") != NULL)
		return;
	appendStringInfoString(buf, " options='-c output_plugin_libraries=");
	for (p = allowed; *p; p++)
		if (*p != ' ' && *p != '\'' && *p != '\\')
			appendStringInfoChar(buf, *p);
	appendStringInfoString(buf, *allowed ? ",ticket_ext'" : "ticket_ext'");
}

/* the connection string: ticket_ext.stream_conninfo, or the local server */
static char *
build_conninfo(const char *superuser)
{
	StringInfoData buf;
	char	   *sockdir = NULL;

	initStringInfo(&buf);
	if (stream_conninfo != NULL && stream_conninfo[0] != '\0')
		appendStringInfo(&buf, "%s ", stream_conninfo);
	else
	{
		if (Unix_socket_directories != NULL && Unix_socket_directories[0] != '\0')
		{
			char	   *comma;

			sockdir = pstrdup(Unix_socket_directories);
			comma = strchr(sockdir, ',');
			if (comma)
				*comma = '\0';
		}
		appendStringInfo(&buf, "host='%s' port=%d user='%s' ",
						 sockdir ? sockdir : "127.0.0.1", PostPortNumber, superuser);
	}
	/* the snapshot's text comes in UTF-8, whatever the database's encoding */
	appendStringInfo(&buf, "dbname='%s' replication=database client_encoding=UTF8 "
					 "application_name='ticket_ext stream' connect_timeout=%d",
					 ticket_database, Max(stream_connect_timeout_ms / 1000, 2));
	append_plugin_allowance(&buf);
	return buf.data;
}

bool
repl_connect(const char *superuser, char *err, int errlen)
{
	char	   *conninfo = build_conninfo(superuser);

	repl_close();
	conn = PQconnectdb(conninfo);
	pfree(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		snprintf(err, errlen, "replication connection failed: %s", PQerrorMessage(conn));
		repl_close();
		return false;
	}
	return true;
}

void
repl_close(void)
{
	if (conn != NULL && creating_slot)
	{
		/* the walsender waits for other transactions: interrupt it */
		PGcancel   *cancel = PQgetCancel(conn);
		char		ignored[256];

		if (cancel != NULL)
		{
			(void) PQcancel(cancel, ignored, sizeof(ignored));
			PQfreeCancel(cancel);
		}
	}
	if (conn != NULL)
		PQfinish(conn);
	conn = NULL;
	creating_slot = false;
	streaming = false;
}

/* the walsender serving us (whose waits pg_blocking_pids can explain) */
int
repl_backend_pid(void)
{
	return conn ? PQbackendPID(conn) : 0;
}

bool
repl_creating_slot(void)
{
	return conn != NULL && creating_slot;
}

/* The consistent point of the slot we just created (once), or invalid. */
XLogRecPtr
repl_take_created_at(void)
{
	XLogRecPtr	at = created_at;

	created_at = InvalidXLogRecPtr;
	return at;
}

int
repl_socket(void)
{
	return conn ? PQsocket(conn) : PGINVALID_SOCKET;
}

/* Run a command; false + err if it does not end with the expected status. */
static bool
run(const char *cmd, ExecStatusType want, char *err, int errlen, PGresult **out)
{
	PGresult   *res = PQexec(conn, cmd);

	if (PQresultStatus(res) != want)
	{
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		PQclear(res);
		return false;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return true;
}

/*
 * Create slot as a copy of src (its confirmed position and retained WAL),
 * if src is a usable slot of ours: 1 copied, 0 src is not one (lost,
 * another plugin or database), -1 failed (err).
 */
int
repl_copy_slot(const char *src, const char *slot, char *err, int errlen)
{
	PGresult   *res;
	char	   *lsrc = PQescapeLiteral(conn, src, strlen(src));
	char	   *ldst = PQescapeLiteral(conn, slot, strlen(slot));
	char	   *ldb = PQescapeLiteral(conn, ticket_database, strlen(ticket_database));
	char		cmd[1024];
	bool		ok;
	bool		copied = false;

	snprintf(cmd, sizeof(cmd),
			 "SELECT pg_catalog.pg_copy_logical_replication_slot(slot_name, %s) "
			 "  FROM pg_catalog.pg_replication_slots "
			 " WHERE slot_name = %s AND plugin = 'ticket_ext' AND database = %s "
			 "   AND wal_status IS DISTINCT FROM 'lost'", ldst, lsrc, ldb);
	PQfreemem(lsrc);
	PQfreemem(ldst);
	PQfreemem(ldb);
	ok = run(cmd, PGRES_TUPLES_OK, err, errlen, &res);
	if (ok)
	{
		copied = PQntuples(res) == 1;
		PQclear(res);
	}
	if (copied)
		ereport(LOG,
				(errmsg("ticket_ext: created replication slot \"%s\" as a copy of \"%s\"", slot, src)));
	return !ok ? -1 : copied ? 1 : 0;
}

/*
 * Drop a slot of ours.  Without WAIT: a slot some other consumer holds
 * would block the worker for as long as that lasts; an error here is
 * retried with backoff like any stream failure (our own walsender that
 * still lets go of it is gone by then).
 */
bool
repl_drop_slot(const char *slot, char *err, int errlen)
{
	char	   *ident = PQescapeIdentifier(conn, slot, strlen(slot));
	char		cmd[512];
	bool		ok;

	snprintf(cmd, sizeof(cmd), "DROP_REPLICATION_SLOT %s", ident);
	PQfreemem(ident);
	ok = run(cmd, PGRES_COMMAND_OK, err, errlen, NULL);
	if (ok)
		ereport(LOG, (errmsg("ticket_ext: dropped replication slot \"%s\"", slot)));
	return ok;
}

/* The answer to CREATE_REPLICATION_SLOT, once it came: 1 ok, 0 not yet, -1 error. */
static int
poll_slot_creation(const char *slot, char *err, int errlen)
{
	PGresult   *res;
	bool		ok = true;

	if (PQconsumeInput(conn) == 0)
	{
		snprintf(err, errlen, "replication connection lost: %s", PQerrorMessage(conn));
		return -1;
	}
	if (PQisBusy(conn))
		return 0;
	while ((res = PQgetResult(conn)) != NULL)
	{
		uint32		hi,
					lo;

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
			sscanf(PQgetvalue(res, 0, 1), "%X/%X", &hi, &lo) == 2)
			created_at = ((uint64) hi << 32) | lo;
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			snprintf(err, errlen, "could not create replication slot \"%s\": %s",
					 slot, PQerrorMessage(conn));
			ok = false;
		}
		PQclear(res);
	}
	creating_slot = false;
	if (ok)
		ereport(LOG,
				(errmsg("ticket_ext: created replication slot \"%s\"", slot)));
	return ok ? 1 : -1;
}

/*
 * Does our slot exist?  1 yes, 0 no, -1 error (a same-named slot of
 * another plugin or database is refused).
 */
int
repl_slot_exists(const char *slot, char *err, int errlen)
{
	PGresult   *res;
	char	   *lit;
	char		cmd[512];
	int			rc;

	lit = PQescapeLiteral(conn, slot, strlen(slot));
	snprintf(cmd, sizeof(cmd),
			 "SELECT plugin, database FROM pg_catalog.pg_replication_slots WHERE slot_name = %s",
			 lit);
	PQfreemem(lit);
	if (!run(cmd, PGRES_TUPLES_OK, err, errlen, &res))
		return -1;
	rc = PQntuples(res) == 1 ? 1 : 0;
	if (rc == 1 &&
		(strcmp(PQgetvalue(res, 0, 0), "ticket_ext") != 0 ||
		 strcmp(PQgetvalue(res, 0, 1), ticket_database) != 0))
	{
		snprintf(err, errlen,
				 "replication slot \"%s\" exists but uses plugin \"%s\" in database \"%s\"; "
				 "drop it or set ticket_ext.stream_slot", slot,
				 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/*
 * Create our slot, without blocking: 1 = created, and this connection is
 * now in a read-only REPEATABLE READ transaction whose snapshot is the
 * slot's starting point (read the tables, then repl_end_snapshot); 0 =
 * being created (it waits for every transaction running now to end: call
 * again when the socket is readable); -1 = error in err.
 */
int
repl_create_slot(const char *slot, char *err, int errlen)
{
	char	   *ident;
	char		cmd[512];

	if (creating_slot)
		return poll_slot_creation(slot, err, errlen);
	if (!run("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ", PGRES_COMMAND_OK, err, errlen, NULL))
		return -1;
	ident = PQescapeIdentifier(conn, slot, strlen(slot));
	snprintf(cmd, sizeof(cmd),
			 "CREATE_REPLICATION_SLOT %s LOGICAL ticket_ext (SNAPSHOT 'use')", ident);
	PQfreemem(ident);
	if (!PQsendQuery(conn, cmd))
	{
		snprintf(err, errlen, "could not create replication slot \"%s\": %s",
				 slot, PQerrorMessage(conn));
		return -1;
	}
	creating_slot = true;
	return poll_slot_creation(slot, err, errlen);
}

/*
 * Run a query in the slot's snapshot, a row at a time (single-row mode:
 * a table of any size never sits in memory whole): row(res, arg) for
 * each; false (err) on failure or when row returns false.
 */
bool
repl_snapshot_rows(const char *sql, bool (*row) (PGresult *res, void *arg), void *arg,
				   char *err, int errlen)
{
	PGresult   *res;
	bool		ok = true;

	if (!PQsendQuery(conn, sql) || !PQsetSingleRowMode(conn))
	{
		snprintf(err, errlen, "snapshot query: %s", PQerrorMessage(conn));
		return false;
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_SINGLE_TUPLE && ok && !row(res, arg))
		{
			snprintf(err, errlen, "snapshot interrupted");
			ok = false;
		}
		else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && ok)
		{
			snprintf(err, errlen, "snapshot query: %s", PQerrorMessage(conn));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

/* End the slot's snapshot transaction (before START_REPLICATION). */
bool
repl_end_snapshot(char *err, int errlen)
{
	return run("COMMIT", PGRES_COMMAND_OK, err, errlen, NULL);
}

bool
repl_start(const char *slot, char *err, int errlen)
{
	char	   *ident = PQescapeIdentifier(conn, slot, strlen(slot));
	char		cmd[512];
	bool		ok;

	snprintf(cmd, sizeof(cmd),
			 "START_REPLICATION SLOT %s LOGICAL 0/0 "
			 "(\"commit-markers\" 'on', \"progress-interval-ms\" '1000', \"batch\" 'on')", ident);
	PQfreemem(ident);
	ok = run(cmd, PGRES_COPY_BOTH, err, errlen, NULL);
	if (ok && PQsetnonblocking(conn, 1) != 0)
	{
		snprintf(err, errlen, "could not make the replication connection non-blocking");
		ok = false;
	}
	streaming = ok;
	return ok;
}

static uint64
read_u64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh64(v);
}

/*
 * Next message, without blocking: 1 = got one (buffer valid until the next
 * call), 0 = nothing for now, -1 = error or end of stream (err filled).
 */
int
repl_receive(ReplMessage *msg, char *err, int errlen)
{
	static char *buf = NULL;
	int			len;

	if (buf != NULL)
	{
		PQfreemem(buf);
		buf = NULL;
	}
	len = PQgetCopyData(conn, &buf, 1);
	if (len == 0)
	{
		/* nothing buffered: read what the socket has (one syscall) */
		if (PQconsumeInput(conn) == 0)
		{
			snprintf(err, errlen, "replication connection lost: %s", PQerrorMessage(conn));
			return -1;
		}
		len = PQgetCopyData(conn, &buf, 1);
		if (len == 0)
			return 0;
	}
	if (len < 0)
	{
		snprintf(err, errlen, "replication stream ended: %s", PQerrorMessage(conn));
		return -1;
	}
	if (buf[0] == 'w' && len >= 25)
	{
		msg->kind = REPL_DATA;
		msg->lsn = read_u64(buf + 1);
		msg->wal_end = read_u64(buf + 9);
		msg->data = buf + 25;
		msg->len = len - 25;
		return 1;
	}
	if (buf[0] == 'k' && len >= 18)
	{
		msg->kind = REPL_KEEPALIVE;
		msg->wal_end = read_u64(buf + 1);
		msg->reply_requested = buf[17] != 0;
		msg->data = NULL;
		msg->len = 0;
		return 1;
	}
	snprintf(err, errlen, "unexpected replication message type '%c'", buf[0]);
	return -1;
}

static void
put_u64(char *p, uint64 v)
{
	v = pg_hton64(v);
	memcpy(p, &v, sizeof(v));
}

/*
 * Standby status update: everything up to flush is safely delivered.
 * want_reply asks the walsender for a keepalive with its current position
 * (how an idle stream learns it may confirm further).
 */
bool
repl_send_feedback(XLogRecPtr flush, bool want_reply, char *err, int errlen)
{
	char		reply[1 + 8 * 4 + 1];

	reply[0] = 'r';
	put_u64(reply + 1, flush);	/* written */
	put_u64(reply + 9, flush);	/* flushed */
	put_u64(reply + 17, flush); /* applied */
	put_u64(reply + 25, (uint64) GetCurrentTimestamp());
	reply[33] = want_reply ? 1 : 0;
	if (PQputCopyData(conn, reply, sizeof(reply)) <= 0 || PQflush(conn) < 0)
	{
		snprintf(err, errlen, "could not send feedback: %s", PQerrorMessage(conn));
		return false;
	}
	return true;
}

/* Is there a replication connection (streaming or not)? */
bool
repl_is_open(void)
{
	return conn != NULL;
}

/* Is the stream open (START_REPLICATION answered)? */
bool
repl_is_connected(void)
{
	return conn != NULL && streaming;
}
