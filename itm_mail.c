/*-------------------------------------------------------------------------
 *
 * itm_mail.c
 *	  Invite emails: rendered from the site's template and queued in the
 *	  outbox in the caller's transaction.
 *
 * A message is a row of invitetomedia.outbox, written in the transaction
 * that made the link: a rollback takes it back, and a sender (sender/, or
 * any program using email_claim) sends only what committed.  The sender
 * is woken by the invitetomedia_email event (an id, nothing else: any role
 * may LISTEN), in this transaction or by the relay after it (itm_relay.c).
 *
 * Rendering is src/itm_text.c's itm_render: placeholders are replaced in
 * one pass, so a value holding "{URL}" is never expanded again; a subject
 * is cut to one line and never holds the link.
 *
 * IDENTIFICATION
 *	  itm_mail.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "itm_internal.h"
#include "itm_relay.h"

/* Renders a template into a palloc'd string (see itm_render). */
char *
ItmRender(const char *tmpl, const char *const values[ITM_PH_COUNT])
{
	size_t		lens[ITM_PH_COUNT];
	size_t		tlen = strlen(tmpl);
	size_t		n;
	char	   *out;
	int			k;

	for (k = 0; k < ITM_PH_COUNT; k++)
		lens[k] = strlen(values[k]);
	n = itm_render(tmpl, tlen, values, lens, NULL);
	if (n >= MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("rendered invite email is too large")));
	out = palloc(n + 1);
	itm_render(tmpl, tlen, values, lens, out);
	out[n] = '\0';
	return out;
}

/*
 * A rendered subject is one line without control characters (a title or a
 * name from the directory may hold a line break: header injection for any
 * sender built on email_claim), and never holds the link: {URL} stays
 * literal there, should a template with {URL} in its subject get past the
 * template's CHECK (where constraints are not checked).
 */
char *
ItmRenderSubject(const char *tmpl, const char *const values[ITM_PH_COUNT])
{
	const char *subject_values[ITM_PH_COUNT];
	char	   *out;
	int			k;

	for (k = 0; k < ITM_PH_COUNT; k++)
		subject_values[k] = values[k];
	subject_values[ITM_PH_URL] = "{URL}";
	out = ItmRender(tmpl, subject_values);
	out[itm_single_line(out, strlen(out))] = '\0';
	return out;
}

/*---- the outbox -------------------------------------------------------------*/

enum
{
	OUT_MESSAGE_ID,
	OUT_NCOLS
};
static const ItmCol create_outbox_cols[OUT_NCOLS] = {
	[OUT_MESSAGE_ID] = {"message_id", INT8OID, false, "outbox.message_id"},
};
static ItmPlan create_outbox_plan = {
	"INSERT INTO invitetomedia.outbox (invite_id, to_email, to_name, subject, body)"
	" VALUES ($1, $2, $3, $4, $5) RETURNING message_id::pg_catalog.int8 AS message_id",
	5, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
	OUT_NCOLS, create_outbox_cols, NULL
};

/* 2.0: the message belongs to the link's site ($6, $7); its id ($8) is drawn */
static ItmPlan create_outbox_plan_2_0 = {
	"INSERT INTO invitetomedia.outbox"
	"  (tenant_id, site_id, message_id, invite_id, to_email, to_name, subject, body, event_seq)"
	" VALUES ($6, $7, $8, $1, $2, $3, $4, $5,"
	"   CASE WHEN $9 THEN pg_catalog.nextval("
	"     'invitetomedia.outbox_event_seq'::pg_catalog.regclass) END)"
	" ON CONFLICT (tenant_id, message_id) DO NOTHING"
	" RETURNING message_id::pg_catalog.int8 AS message_id",
	9, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, INT8OID, BOOLOID},
	OUT_NCOLS, create_outbox_cols, NULL
};

/*
 * Queues a message for the invite; returns its id.  The relay (where it
 * runs) is asked before the message's id is drawn, and the transaction has
 * its xid before that id (itm_relay.c: the bound of what a round may read).
 */
int64
ItmQueueMail(const ItmSite *site, int64 invite_id, const char *to_email, const char *to_name,
			 const char *subject, const char *body)
{
	ItmPlan    *p = site ? &create_outbox_plan_2_0 : &create_outbox_plan;
	Datum		args[9];
	int64		message_id;
	bool		relay = ItmRelayAnnounces();
	int			draws;

	(void) GetTopTransactionId();
	args[0] = Int64GetDatum(invite_id);
	args[1] = CStringGetTextDatum(to_email);
	args[2] = CStringGetTextDatum(to_name);
	args[3] = CStringGetTextDatum(subject);
	args[4] = CStringGetTextDatum(body);
	if (site)
	{
		args[5] = Int32GetDatum(site->tenant_id);
		args[6] = CStringGetTextDatum(site->site_id);
		args[8] = BoolGetDatum(relay);
	}
	for (draws = 0;; draws++)
	{
		if (site)
			args[7] = Int64GetDatum(ItmRandomId());
		ItmRunPlan(p, args, NULL, false, SPI_OK_INSERT_RETURNING);
		/* 2.0: a duplicate id inserts nothing (ON CONFLICT): draw again */
		if (SPI_processed == 0 && site && draws < 3)
			continue;
		break;
	}
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the outbox insert returned %llu rows",
			 (unsigned long long) SPI_processed);
	message_id = ItmColInt8(p, OUT_MESSAGE_ID);

	/* a wake-up call only: sent by the relay after the commit where it runs */
	if (!relay && site)
		ItmNotifyTenantEvent(ITM_EVENT_MAIL_QUEUED, site->tenant_id, message_id);
	else if (!relay)
		ItmNotifyEvent(ITM_EVENT_MAIL_QUEUED, message_id);
	return message_id;
}
