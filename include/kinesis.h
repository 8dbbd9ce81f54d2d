/*
 * kinesis.h
 *	  The Kinesis sink's response parser (bgworker/stream/kinesis_response.c).
 */
#ifndef TICKET_KINESIS_H
#define TICKET_KINESIS_H


typedef struct KinesisResponse
{
	int			failed_count;	/* FailedRecordCount, -1 if absent */
	int			nrecords;		/* entries in Records */
	bool	   *record_failed;	/* per request record: has ErrorCode */
	int			throttled_records;	/* ErrorCode ProvisionedThroughputExceeded */
	char		record_error[96];	/* first record ErrorCode */
	char		error_type[128];	/* __type of an error response */
	char		message[256];	/* its message, or the first ErrorMessage */
} KinesisResponse;

/* aws_credentials.c */
typedef struct AwsCredentials
{
	char		key[256];
	char		secret[256];
	char		token[4096];
} AwsCredentials;

extern bool aws_credentials_get(AwsCredentials *c, char *err, int errlen);

extern bool kinesis_parse_response(const char *body, size_t len, KinesisResponse *out,
								   bool *record_failed, int max_records,
								   char *err, size_t errlen);

#endif
