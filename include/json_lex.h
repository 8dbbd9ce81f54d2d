/*-------------------------------------------------------------------------
 *
 * json_lex.h
 *	  What the JSON parsers of outside input (event.c, kinesis_response.c)
 *	  share; frontend-safe for the fuzz harnesses.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TICKET_JSON_LEX_H
#define TICKET_JSON_LEX_H

#include "common/jsonapi.h"

/* Free a lexer and its string buffer (PostgreSQL 15 has no freeJsonLexContext). */
static inline void
free_json_lex(JsonLexContext *lex)
{
	if (lex->strval)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);
}

#endif							/* TICKET_JSON_LEX_H */
