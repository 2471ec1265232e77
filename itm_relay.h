/*-------------------------------------------------------------------------
 *
 * itm_relay.h
 *	  The event relay: the accepted events and the mail announcements
 *	  sent after their transactions commit, by a background worker that
 *	  reads the records (issue 21).  See itm_relay.c.
 *
 * IDENTIFICATION
 *	  itm_relay.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITM_RELAY_H
#define ITM_RELAY_H

#include "postgres.h"

#include "fmgr.h"

/* _PG_init: the settings, and the workers when preloaded */
extern void ItmRelayInit(void);

/*
 * A writer asks, before it draws the id of a record that is an event (a
 * use, a join, an outbox message): does the relay announce this database's
 * events?  If it answers false, the writer sends its NOTIFY in its own
 * transaction, as 1.1 does.  Call it before the record's id is drawn (it
 * may take the relay's start lock, to the end of the transaction); the
 * transaction must have its xid before that id too (itm_relay.c).
 */
extern bool ItmRelayAnnounces(void);

extern PGDLLEXPORT void ItmRelayMain(Datum main_arg);

/*
 * The events, one channel and one payload format each (1.1's): the relay
 * and the writers that notify in their own transaction send the same.
 * Payloads hold ids only: any role may LISTEN.
 */
typedef enum ItmEvent
{
	ITM_EVENT_INVITE_ACCEPTED = 0,	/* a use of an invite: the invite's id */
	ITM_EVENT_GUEST_JOINED,		/* a join by a guest link: the link's id */
	ITM_EVENT_MAIL_QUEUED,		/* an outbox message: the message's id */
	ITM_EVENT_COUNT
} ItmEvent;

extern const char *ItmEventChannel(ItmEvent e);
extern char *ItmEventPayload(ItmEvent e, int64 id);

/* NOTIFY of the event, sent when this transaction commits */
extern void ItmNotifyEvent(ItmEvent e, int64 id);

/* 2.0: the same with the tenant's id (docs/design-2.0.md, section 7) */
extern char *ItmTenantEventPayload(ItmEvent e, int32 tenant_id, int64 id);
extern void ItmNotifyTenantEvent(ItmEvent e, int32 tenant_id, int64 id);

#endif							/* ITM_RELAY_H */
