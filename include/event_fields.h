/*
 * event_fields.h
 *	  The fields of an event, in the order the output plugin writes them
 *	  and the sinks carry them: the one list both the plugin
 *	  (bgworker/stream/output_plugin.c), the snapshot
 *	  (bgworker/stream/snapshot.c) and the worker's parser
 *	  (bgworker/stream/event.c) use.
 */
#ifndef TICKET_EVENT_FIELDS_H
#define TICKET_EVENT_FIELDS_H

/* "v" of every event; 1.0 wrote none (version 1) */
#define EVENT_FORMAT_VERSION 2

#define EVENT_FIELD_LIST(X) \
	X(EVF_EVENT_ID, "event_id") \
	X(EVF_V, "v") \
	X(EVF_TYPE, "type") \
	X(EVF_ITEM_ID, "item_id") \
	X(EVF_HOLD_ID, "hold_id") \
	X(EVF_QTY, "qty") \
	X(EVF_HOLDER, "holder") \
	X(EVF_COMMIT_TIME, "commit_time") \
	X(EVF_LSN, "lsn") \
	X(EVF_XID, "xid") \
	X(EVF_CAPACITY, "capacity")	/* capacity and snapshot_item events */ \
	X(EVF_PAUSED, "paused")		/* snapshot_item events */ \
	X(EVF_HOLDS, "holds")		/* snapshot_item: its holds that follow */ \
	X(EVF_POOLS, "pools")		/* pools and snapshot_item events: the item's
								 * pools, "1,2" ("" for none) */ \
	X(EVF_HOLDER_LIMIT, "holder_limit")	/* holder_limit and snapshot_item
										 * events (null: none) */ \
	X(EVF_ITEMS, "items")		/* snapshot_end: the items of the snapshot */ \
	X(EVF_STATUS, "status")		/* snapshot_hold events: held or sold */ \
	X(EVF_LAST, "last")			/* the last event of its transaction */ \
	X(EVF_TX_EVENTS, "tx_events")	/* ... and how many it had */ \
	X(EVF_ORIGIN, "origin")		/* added by the worker: its slot's origin */ \
	X(EVF_END_LSN, "end_lsn")	/* commit and progress messages only */

#define EVENT_FIELD_ENUM(id, name) id,
typedef enum EventField
{
	EVENT_FIELD_LIST(EVENT_FIELD_ENUM)
	NUM_EVENT_FIELDS
} EventField;
#undef EVENT_FIELD_ENUM

extern const char *const event_field_names[NUM_EVENT_FIELDS];

#endif
