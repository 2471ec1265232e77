/*-------------------------------------------------------------------------
 *
 * invitetomedia.c
 *	  Invite links to media entries, created and consumed inside PostgreSQL.
 *
 * An invite is a row of invitetomedia.invites; the link carries a token
 * ("itm_" + 48 URL-safe base64 characters holding 256 random bits and a
 * CRC-32) and the table keeps only its SHA-256.  The SQL-callable functions
 * here are the application's API; the rules they apply are SQL objects a
 * DBA can read: the settings table, and the functions may_invite() and
 * domain_allowed().
 *
 * Concurrency.  invite_consume must never hand out more uses than a link
 * has, whatever number of sessions race for it.  The use is taken by one
 * UPDATE whose WHERE clause holds every condition of a valid use (enabled,
 * not revoked, not expired, email matches, uses left).  Under READ COMMITTED
 * a concurrent UPDATE or revoke of the same row makes ours wait on its row
 * lock and then re-evaluate the WHERE clause against the committed row
 * version, so the counter can never pass max_uses and a revoke that commits
 * first always wins.  Only when that UPDATE takes nothing does a second,
 * read-only query work out which status to report (and the attempt is
 * recorded).  The row lock is held from the UPDATE to the end of the
 * transaction, so the UPDATE is the first write: the redemption record and
 * the directory look-up ride in the same statement.
 *
 * A consume with a device_id first takes the invite's row lock, and only
 * then looks for an earlier use by that device, in a statement of its own:
 * under READ COMMITTED that statement's snapshot is taken after the lock
 * was granted, so it sees the use of a racing consume by the same device
 * that committed first (a double click), and answers rejoin instead of
 * taking a second use.
 *
 * Redemption records have no foreign key to invites on purpose: the key
 * check would take a share lock on the invite row for every consume, and
 * share locks from many sessions on one hot row become multixacts.
 *
 * Trust.  Every query is prepared once per backend with SPI_prepare and
 * SPI_keepplan and is fully schema-qualified, operators included; the
 * functions run as SECURITY DEFINER with search_path = pg_catalog, pg_temp
 * (see the install script), so nothing a caller plants in public or pg_temp
 * is ever called.  The tables are a DBA's to alter, so the C code trusts
 * neither the type nor the nullability of a column it reads: each saved
 * query casts what it returns to the type the C code reads, its result
 * columns are named beside it (an enum and an ItmCol array, checked against
 * the plan when it is prepared and against every result), and a NULL where
 * none belongs is an error that names the column, never a dereference.
 *
 * Versions.  One library serves every database of the cluster, whatever
 * version of the extension each has installed.  Where a query depends on
 * the schema, the SQL function of each version names its own C symbol
 * (invite_consume for 1.0, invite_consume_1_0_1 for 1.0.1,
 * invite_consume_1_1 for 1.1), as pg_stat_statements does, and the C code
 * picks the matching query (the ItmApi argument; plans are kept per API).
 * A 1.0 or 1.0.1 database never runs a query that names a 1.1 column.
 *
 * Version 1.1.1 (the second security review): a guest is not a user (see
 * "guest links"), invite_resend needs may_invite() and its mailed resends
 * count towards the rate limit (resends), a wrong email counts towards the
 * lockout under the row lock (mismatch_plan), and itm_direct.c runs on a
 * whitelist of table shapes.
 *
 * Version 1.1 adds, on the same principles: scheduled links (not_before),
 * a lockout after wrong emails (failed_attempts, read against the setting
 * at every consume), invite_resend (a new token; the old one's hash goes to
 * retired_tokens and answers revoked), a rate limit per inviter, the
 * accepted event, and guest links (see "guest links" below).
 *
 * Memory: each call does its work between SPI_connect and SPI_finish, so
 * everything it allocates lives in SPI's per-call context and is released
 * when the call returns; only the result row goes to the caller's
 * tuplestore.
 *
 * Layout.  This file is the module's entry point; the API is split by
 * concern (the list is in itm_internal.h): invites (itm_invite.c), guest
 * links (itm_guest.c), mail (itm_mail.c), the settings (itm_settings.c),
 * the saved plans and the readers of arguments (itm_plan.c), the direct
 * path (itm_direct.c) and the event relay (itm_relay.c).
 *
 * IDENTIFICATION
 *	  invitetomedia.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "itm_compat.h"
#include "itm_direct.h"
#include "itm_internal.h"
#include "itm_relay.h"

ITM_MODULE_MAGIC("invitetomedia", ITM_VERSION);

void		_PG_init(void);

void
_PG_init(void)
{
	ItmDirectInit();
	ItmRelayInit();
	ItmTenantInit();
}
