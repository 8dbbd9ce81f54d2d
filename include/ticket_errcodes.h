/*-------------------------------------------------------------------------
 *
 * ticket_errcodes.h
 *	  ticket_ext's own SQLSTATEs, class TK, for the outcomes an app must act
 *	  on differently (docs/errors.md has the table: condition, SQLSTATE,
 *	  what the app should do).  Where PostgreSQL's own code means the same
 *	  thing it is kept: 22023 for a bad argument, 42704 for an unknown item
 *	  or hold, 40001 and 55P03 for "retry", 25006 on a standby.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_ERRCODES_H
#define TICKET_ERRCODES_H

#include "utils/elog.h"

/* the item's sales are paused: show "not on sale now", try later */
#define ERRCODE_TICKET_ITEM_PAUSED			MAKE_SQLSTATE('T','K','0','0','1')
/* the hold was released: it cannot be paid; reserve again */
#define ERRCODE_TICKET_HOLD_RELEASED		MAKE_SQLSTATE('T','K','0','0','2')
/* the hold expired: reserve again, with a new idempotency key */
#define ERRCODE_TICKET_HOLD_EXPIRED			MAKE_SQLSTATE('T','K','0','0','3')
/* no sink's slot exists yet (first start): retry in a second */
#define ERRCODE_TICKET_STREAM_NOT_READY		MAKE_SQLSTATE('T','K','0','0','4')
/* the item was created in this transaction: commit it first */
#define ERRCODE_TICKET_ITEM_NOT_COMMITTED	MAKE_SQLSTATE('T','K','0','0','5')
/* the idempotency key belongs to another order (qty or holder differ) */
#define ERRCODE_TICKET_IDEMPOTENCY_KEY_REUSED MAKE_SQLSTATE('T','K','0','0','6')
/* confirm/release named a holder the hold does not belong to */
#define ERRCODE_TICKET_WRONG_HOLDER			MAKE_SQLSTATE('T','K','0','0','7')

/* a per-customer limit: the holder has (or would have) more than allowed */
#define ERRCODE_TICKET_HOLDER_LIMIT			MAKE_SQLSTATE('T','K','0','0','8')
/* the item has a per-customer limit and no holder was given */
#define ERRCODE_TICKET_HOLDER_REQUIRED		MAKE_SQLSTATE('T','K','0','0','9')

#endif							/* TICKET_ERRCODES_H */
