/*-------------------------------------------------------------------------
 *
 * stream_slot.c
 *	  A copy of one replication slot's fields, read under the slot's own
 *	  locks: the only place ticket_ext looks into ReplicationSlotCtl.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "replication/slot.h"
#include "stream_slot.h"

bool
stream_slot_read(const char *name, StreamSlotInfo *info)
{
	ReplicationSlot *slot;

	memset(info, 0, sizeof(*info));
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		info->database = slot->data.database;
		info->persistent = slot->data.persistency == RS_PERSISTENT;
		info->active_pid = slot->active_pid;
		info->restart_lsn = slot->data.restart_lsn;
		info->confirmed_flush = slot->data.confirmed_flush;
		info->invalidated_at = slot->data.invalidated_at;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return slot != NULL;
}
