/*
 * kinesis_request.h
 *	  One PutRecords request of the Kinesis sink (bgworker/stream/kinesis_request.c).
 */
#ifndef TICKET_KINESIS_REQUEST_H
#define TICKET_KINESIS_REQUEST_H

#include "lib/stringinfo.h"
#include "stream.h"

#define MAX_RECORDS_PER_CALL 500
#define MAX_EVENTS_PER_CALL 8192	/* aggregated: many events a record */

typedef struct KinesisRequest
{
	int			nrec;			/* records in the request */
	int			rec[MAX_EVENTS_PER_CALL];	/* event i went into record rec[i], -1 if none */
	int			rec_shard[MAX_RECORDS_PER_CALL];	/* record r's shard, -1 unknown */
	long		wait_ms;		/* events held back by their shard's pace: for how long */
} KinesisRequest;

extern void kinesis_landed_reset(const char *target);
extern bool kinesis_build_request(StringInfo body, StreamEvent **events, int n, KinesisRequest *req,
								  uint64 origin, char *err, int errlen);
extern int	kinesis_account(StreamEvent **events, int n, const KinesisRequest *req, const bool *failed);
extern int	kinesis_count_reordered(StreamEvent **events, int n, const KinesisRequest *req,
									const bool *failed);

#endif							/* TICKET_KINESIS_REQUEST_H */
