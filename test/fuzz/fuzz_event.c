/*
 * libFuzzer harness: the output plugin's JSON lines as the streaming
 * worker parses them (bgworker/stream/event.c).  Checks: a parsed event has its
 * fields, every value a string inside the event.
 */
#include "postgres_fe.h"

#include "event.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *json = palloc(size + 1);
	StreamEvent ev;
	XLogRecPtr	end = 0;
	char	   *err = NULL;
	int			i;

	memcpy(json, data, size);
	json[size] = '\0';
	if (stream_parse_message(json, (int) strlen(json), &ev, &end, &err) == MSG_EVENT)
	{
		if (ev.nfields < 8 || ev.nfields > 12)	/* holder and capacity may be absent */
			abort();
		for (i = 0; i < ev.nfields; i++)
		{
			if (ev.field_names[i] == NULL || ev.field_values[i] == NULL)
				abort();
			pfree(ev.field_values[i]);	/* the event owns its values */
		}
	}
	if (err)
		pfree(err);
	pfree(json);
	return 0;
}
