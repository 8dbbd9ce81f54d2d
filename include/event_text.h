/*
 * event_text.h
 *	  UTF-8 text as a JSON string of an event (bgworker/stream/event_text.c).
 */
#ifndef TICKET_EVENT_TEXT_H
#define TICKET_EVENT_TEXT_H

#include "lib/stringinfo.h"

extern void event_append_text(StringInfo out, const char *utf8);

#endif
