/*-------------------------------------------------------------------------
 *
 * stream_history.c
 *	  Where a sink's contents came from, and what to do about it when it
 *	  is not this slot (see stream_history.h).
 *
 * Why origins and not LSNs alone: a restored base backup, a point-in-time
 * recovery and a promoted standby all reuse LSNs (and xids) the old server
 * also used, for other transactions.  An LSN compared across histories
 * says nothing; a slot, though, decodes one history only, and PostgreSQL
 * 15 keeps no logical slot in a base backup or on a standby.  So a sink
 * last written from another slot than ours may hold events our history
 * never had, and lack events it has: it gets a snapshot of the tables,
 * taken in the same snapshot the new slot starts from, then the slot's
 * events.  One history that forked under the same slot (a file-level copy
 * of a running server, slot included) is caught by the transaction the
 * sink's last event belongs to, checked when the stream replays it
 * (pipeline.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "stream.h"
#include "stream_history.h"
#include "utils/timestamp.h"

/* "<sink>.slot": which slot, its origin, where it began, its snapshot */
bool
slot_origin_load(const char *sink, SlotOrigin *origin)
{
	char		name[64];
	char		buf[256];
	char	   *nl;
	unsigned long long o,
				start;
	unsigned int n;

	memset(origin, 0, sizeof(*origin));
	snprintf(name, sizeof(name), "%s.slot", sink);
	if (!state_file_load(name, buf, sizeof(buf)) || (nl = strchr(buf, '\n')) == NULL)
		return false;
	*nl = '\0';
	if (sscanf(nl + 1, "%llu %llu %u", &o, &start, &n) != 3 || strlen(buf) >= NAMEDATALEN)
		return false;
	strlcpy(origin->slot, buf, sizeof(origin->slot));
	origin->origin = o;
	origin->start = (XLogRecPtr) start;
	origin->snapshot_events = n;
	return true;
}

bool
slot_origin_save(const char *sink, const SlotOrigin *origin)
{
	char		name[64];
	char		buf[256];

	snprintf(name, sizeof(name), "%s.slot", sink);
	snprintf(buf, sizeof(buf), "%s\n" UINT64_FORMAT " " UINT64_FORMAT " %u\n",
			 origin->slot, origin->origin, (uint64) origin->start, origin->snapshot_events);
	return state_file_save(name, buf, true);
}

/*
 * "<sink>.position" (a sink that keeps no position of its own): the
 * target it is for (stream, region, endpoint), then the position.  A
 * position saved before 1.1 has no origin: it is of a slot from then.
 */
void
sink_position_save(const char *sink, const char *target, const SinkPosition *pos)
{
	char		name[64];
	char		buf[1200];
	int			len;

	snprintf(name, sizeof(name), "%s.position", sink);
	len = snprintf(buf, sizeof(buf), "%s\n" UINT64_FORMAT " %u " UINT64_FORMAT " %u " UINT64_FORMAT " %u\n",
				   target, pos->id.lsn, pos->id.seq, pos->origin, pos->xid,
				   pos->sysid, pos->timeline);
	if (len < (int) sizeof(buf))
		(void) state_file_save(name, buf, false);
}

bool
sink_position_load(const char *sink, const char *target, SinkPosition *pos)
{
	char		name[64];
	char		buf[1200];
	char	   *nl;
	unsigned long long lsn,
				origin = 0,
				sysid = 0;
	unsigned int seq,
				xid = 0,
				tli = 0;

	memset(pos, 0, sizeof(*pos));
	snprintf(name, sizeof(name), "%s.position", sink);
	if (!state_file_load(name, buf, sizeof(buf)) || (nl = strchr(buf, '\n')) == NULL)
		return false;
	*nl = '\0';
	/* before 1.1 the target also named the endpoint: "<stream> <region> <endpoint>" */
	if ((strncmp(buf, target, strlen(target)) != 0 ||
		 (buf[strlen(target)] != '\0' && buf[strlen(target)] != ' ')) ||
		sscanf(nl + 1, "%llu %u %llu %u %llu %u", &lsn, &seq, &origin, &xid, &sysid, &tli) < 2)
		return false;
	pos->known = true;
	pos->id.lsn = lsn;
	pos->id.seq = seq;
	pos->origin = origin;
	pos->xid = xid;
	pos->sysid = sysid;
	pos->timeline = tli;
	return true;
}

/*
 * Did this sink save a position before 1.1 (no origin in it)?  A worker
 * upgraded from 1.0, where every sink shared the first sink's slot.
 */
bool
sink_position_legacy(const char *sink)
{
	char		name[64];
	char		buf[1200];
	char	   *nl;
	unsigned long long lsn,
				origin = 0;
	unsigned int seq;

	snprintf(name, sizeof(name), "%s.position", sink);
	return state_file_load(name, buf, sizeof(buf)) && (nl = strchr(buf, '\n')) != NULL &&
		sscanf(nl + 1, "%llu %u %llu", &lsn, &seq, &origin) >= 2 && origin == 0;
}

uint64
history_system_identifier(void)
{
	return GetSystemIdentifier();
}

uint32
history_timeline(void)
{
	return GetWALInsertionTimeLine();
}

/*
 * The origin of a slot created now: its creation time, and always above
 * the origin of what the sink holds (a clock that went back, or a sink
 * fed by a newer slot that an operator told us to take over).
 */
uint64
history_new_origin(const SinkPosition *pos)
{
	uint64		now = (uint64) (GetCurrentTimestamp() +
								((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC));

	if (pos != NULL && pos->known && pos->origin >= now)
		return pos->origin + 1;
	return now;
}

/* Has the sink every event of the slot's creation snapshot? */
bool
history_snapshot_done(const SinkPosition *pos, const SlotOrigin *slot)
{
	EventId		end;

	if (slot->snapshot_events == 0)
		return true;
	if (!pos->known || pos->origin != slot->origin)
		return false;
	end.lsn = SNAPSHOT_LSN(slot);
	end.seq = slot->snapshot_events - 1;
	return !EVENT_ID_LT(pos->id, end);
}

/*
 * Did another cluster write the sink last?  Restores, point-in-time
 * recoveries and promoted standbys keep the system identifier; a second
 * cluster pointed at the same stream (or pg_upgrade, initdb) does not.
 * Positions from before the identifier was stored say nothing.
 */
bool
history_foreign(const SinkPosition *pos)
{
	return pos->known && pos->sysid != 0 && pos->sysid != history_system_identifier();
}

/*
 * What to do with a sink at position pos, streaming from slot.
 * slot_moved: the slot was confirmed past its start (the sink acked
 * something of it once); snapshot_available: the slot's creation snapshot
 * can still be sent (its spill file is there, or it had none).
 */
HistoryVerdict
history_verdict(const SinkPosition *pos, const SlotOrigin *slot,
				bool slot_moved, bool snapshot_available)
{
	if (pos->known && pos->origin > slot->origin)
		return HISTORY_AHEAD;
	if (pos->known && pos->origin == slot->origin)
	{
		if (!history_snapshot_done(pos, slot) && !snapshot_available)
			return HISTORY_SNAPSHOT;	/* a crash lost the rest of it */
		return HISTORY_SAME;
	}
	/* nothing from this slot yet: fresh, or from an older slot */
	if (slot->origin == 0)
		return HISTORY_ADOPT;	/* a slot from before 1.1: as then */
	if (slot_moved || !snapshot_available)
		return HISTORY_SNAPSHOT;	/* what it had is gone from this slot */
	return HISTORY_ADOPT;
}

/*
 * The position a sink takes when it starts on slot: nothing of it yet,
 * and for Redis an offset that puts this slot's entry ids above every
 * entry the sink holds (ids must grow; LSNs of another history may not).
 */
SinkPosition
history_adopt(const SinkPosition *pos, const SlotOrigin *slot)
{
	SinkPosition next = {0};
	XLogRecPtr	base = slot->snapshot_events > 0 ? SNAPSHOT_LSN(slot) : slot->start;

	next.known = true;
	next.origin = slot->origin;
	next.sysid = history_system_identifier();
	next.timeline = history_timeline();
	if (pos->known && base != InvalidXLogRecPtr && pos->id.lsn + pos->offset >= base)
		next.offset = pos->id.lsn + pos->offset - base + 1;
	/* a 1.0 stream read as "legacy" keeps deduplicating by entry id */
	next.legacy = pos->legacy && slot->origin == 0;
	if (next.legacy)
		next.id = pos->id;
	return next;
}

void
history_describe(const SinkPosition *pos, char *buf, int len)
{
	if (!pos->known)
		snprintf(buf, len, "nothing");
	else
		snprintf(buf, len, "event %lu-%u of origin " UINT64_FORMAT " (system " UINT64_FORMAT ", timeline %u)",
				 (unsigned long) pos->id.lsn, pos->id.seq, pos->origin, pos->sysid, pos->timeline);
}
