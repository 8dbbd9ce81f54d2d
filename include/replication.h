/*
 * replication.h
 *	  The streaming worker's logical replication connection (bgworker/stream/replication.c).
 */
#ifndef TICKET_REPLICATION_H
#define TICKET_REPLICATION_H

#include "postgres.h"
#include "access/xlogdefs.h"

struct pg_result;

typedef enum ReplMessageKind
{
	REPL_DATA,					/* XLogData: one output plugin message */
	REPL_KEEPALIVE
} ReplMessageKind;

typedef struct ReplMessage
{
	ReplMessageKind kind;
	XLogRecPtr	lsn;			/* REPL_DATA: the message's WAL position */
	XLogRecPtr	wal_end;
	bool		reply_requested;
	char	   *data;
	int			len;
} ReplMessage;

extern bool repl_connect(const char *superuser, char *err, int errlen);
extern int	repl_slot_exists(const char *slot, char *err, int errlen);
extern int repl_copy_slot(const char *src, const char *slot, char *err, int errlen);
extern bool repl_drop_slot(const char *slot, char *err, int errlen);
extern int	repl_create_slot(const char *slot, char *err, int errlen);
extern bool repl_snapshot_rows(const char *sql, bool (*row) (struct pg_result *res, void *arg),
							   void *arg, char *err, int errlen);
extern bool repl_end_snapshot(char *err, int errlen);
extern bool repl_creating_slot(void);
extern XLogRecPtr repl_take_created_at(void);
extern int	repl_backend_pid(void);
extern bool repl_start(const char *slot, char *err, int errlen);
extern int	repl_receive(ReplMessage *msg, char *err, int errlen);
extern bool repl_send_feedback(XLogRecPtr flush, bool want_reply, char *err, int errlen);
extern int	repl_socket(void);
extern bool repl_is_connected(void);
extern bool repl_is_open(void);
extern void repl_close(void);

#endif
