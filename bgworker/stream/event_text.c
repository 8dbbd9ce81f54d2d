/*-------------------------------------------------------------------------
 *
 * event_text.c
 *	  Text as a JSON string of an event: the output plugin and the
 *	  snapshot write text the same way.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "event_text.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

/*
 * Text, in UTF-8, as a JSON string of an event.  In a UTF-8 database it is
 * written as it is (escape_json); in any other, in ASCII, every other
 * character as \uXXXX (a byte that is not valid UTF-8, as can come from
 * SQL_ASCII, as the Latin-1 character of that value), so the output is
 * valid in the database's encoding too, as a textual output plugin's must
 * be.
 */
void
event_append_text(StringInfo out, const char *text)
{
	const unsigned char *s;
	int			len;

	if (GetDatabaseEncoding() == PG_UTF8)
	{
		escape_json(out, text);
		return;
	}
	s = (const unsigned char *) text;
	len = strlen(text);
	appendStringInfoChar(out, '"');
	while (len > 0)
	{
		int			n = pg_utf_mblen(s);
		pg_wchar	c;

		if (*s < 0x80)
		{
			char		one[2] = {(char) *s, '\0'};
			StringInfoData tmp;

			/* escape_json's rules for quotes, backslashes and controls */
			initStringInfo(&tmp);
			escape_json(&tmp, one);
			appendBinaryStringInfo(out, tmp.data + 1, tmp.len - 2);
			pfree(tmp.data);
			s++, len--;
			continue;
		}
		if (n > len || !pg_utf8_islegal(s, n))
			c = *s, n = 1;
		else
			c = utf8_to_unicode(s);
		if (c > 0xFFFF)
			appendStringInfo(out, "\\u%04X\\u%04X",
							 (unsigned) (0xD800 + ((c - 0x10000) >> 10)),
							 (unsigned) (0xDC00 + ((c - 0x10000) & 0x3FF)));
		else
			appendStringInfo(out, "\\u%04X", (unsigned) c);
		s += n, len -= n;
	}
	appendStringInfoChar(out, '"');
}

