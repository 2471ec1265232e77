/*-------------------------------------------------------------------------
 *
 * itm_guest.c
 *	  Guest links (1.1): guest_link_create, guest_link_join and
 *	  guest_link_revoke.
 *
 * IDENTIFICATION
 *	  itm_guest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "itm_compat.h"
#include "itm_direct.h"
#include "itm_internal.h"
#include "itm_relay.h"

/*---- guest links (1.1) -----------------------------------------------------*/

/*
 * A guest link is shared: anyone who has it joins as a viewer with the
 * email and names they type.  Its token is an invite token with another
 * prefix (ITM_GUEST_TOKEN_PREFIX), stored as a hash the same way.
 *
 * Identity (1.1.1).  A guest link proves knowledge of the link and nothing
 * more: the address typed is a claim.  So a join never reads, creates,
 * changes or returns a user (1.1 returned the user with that address, and
 * a guest became an administrator by typing hers); the join's record is
 * the guest's identity (join_id; a device that rejoins keeps its first ok
 * join's), user_id is always NULL, and the domain rule is guest_allowed(),
 * which does not ask whether the address has an account, so that no answer
 * tells it.  The 1.1 SQL function keeps 1.1's behaviour (guest_link_join,
 * not guest_link_join_1_1_1) until its database is updated.
 *
 * Concurrency.  A click-limited link counts its joins in its row, with one
 * UPDATE whose WHERE clause holds every condition (as invite_consume does):
 * racing joins queue on the row lock and never pass the limit.  A link
 * without a limit has nothing to count, and hundreds may join it in the
 * first minute of a webcast: a join takes only FOR KEY SHARE on its row,
 * which joins do not wait for, while a revoke takes FOR UPDATE and so waits
 * for the joins in flight, and they for it (a join that queued behind a
 * revoke answers revoked).  Its joins are counted from guest_link_joins.
 *
 * A device that joined before rejoins without a click.  Its joins queue on
 * a transaction-scoped advisory lock keyed on (link, device) before the
 * look for its earlier join, so that a double click sees the first join
 * that committed (the same reasoning as invite_consume's row lock).
 */

enum
{
	GCTX_ENABLED,
	GCTX_LINK_BASE_URL,
	GCTX_INVITES_PER_HOUR,
	GCTX_MEDIA_FOUND,
	GCTX_ACTOR_FOUND,
	GCTX_MAY_INVITE,
	GCTX_NCOLS
};
static const ItmCol guest_context_cols[GCTX_NCOLS] = {
	[GCTX_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},
	[GCTX_LINK_BASE_URL] = {"link_base_url", TEXTOID, false, "settings.link_base_url"},
	[GCTX_INVITES_PER_HOUR] = {"invites_per_hour", INT4OID, false, "settings.invites_per_hour"},
	[GCTX_MEDIA_FOUND] = {"media_found", BOOLOID, false, "media.media_id"},
	[GCTX_ACTOR_FOUND] = {"actor_found", BOOLOID, false, "users.user_id"},
	[GCTX_MAY_INVITE] = {"may_invite", BOOLOID, true, "may_invite()"},
};
static ItmPlan guest_context_plan = {
	"SELECT s.enabled::pg_catalog.bool AS enabled,"
	"       s.link_base_url::pg_catalog.text AS link_base_url,"
	"       s.invites_per_hour::pg_catalog.int4 AS invites_per_hour,"
	"       m.media_id IS NOT NULL AS media_found,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       invitetomedia.may_invite($2, $1)::pg_catalog.bool AS may_invite"
	"  FROM invitetomedia.settings s"
	"  LEFT JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) $1"
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, TEXTOID}, GCTX_NCOLS, guest_context_cols, NULL
};

/* 2.0: the site's ($3) settings, its tenant's ($4) media and users */
static ItmPlan guest_context_plan_2_0 = {
	"SELECT s.enabled::pg_catalog.bool AS enabled,"
	"       s.link_base_url::pg_catalog.text AS link_base_url,"
	"       s.invites_per_hour::pg_catalog.int4 AS invites_per_hour,"
	"       m.media_id IS NOT NULL AS media_found,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       invitetomedia.may_invite_at($3, $2, $1)::pg_catalog.bool AS may_invite"
	"  FROM invitetomedia.sites s"
	"  LEFT JOIN invitetomedia.media m ON m.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
	"   AND m.media_id OPERATOR(pg_catalog.=) $1"
	"  LEFT JOIN invitetomedia.users u ON u.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
	"   AND u.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE s.site_id OPERATOR(pg_catalog.=) $3 AND s.tenant_id OPERATOR(pg_catalog.=) $4",
	4, {TEXTOID, TEXTOID, TEXTOID, INT4OID}, GCTX_NCOLS, guest_context_cols, NULL
};

/*
 * Creations of guest links for one media queue on the media's row, then
 * count its usable links with a snapshot that sees every creation that
 * committed meanwhile: never a fourth.
 */
static ItmPlan lock_media_plan = {
	"SELECT 1 FROM invitetomedia.media m"
	" WHERE m.media_id OPERATOR(pg_catalog.=) $1"
	"   FOR NO KEY UPDATE",
	1, {TEXTOID}, 0, NULL, NULL
};

static ItmPlan lock_media_plan_2_0 = {
	"SELECT 1 FROM invitetomedia.media m"
	" WHERE m.tenant_id OPERATOR(pg_catalog.=) $2 AND m.media_id OPERATOR(pg_catalog.=) $1"
	"   FOR NO KEY UPDATE",
	2, {TEXTOID, INT4OID}, 0, NULL, NULL
};

enum
{
	GUS_USABLE,
	GUS_NCOLS
};
static const ItmCol guest_usable_cols[GUS_NCOLS] = {
	[GUS_USABLE] = {"usable", INT8OID, false, "guest_links"},
};
static ItmPlan guest_usable_plan = {
	"SELECT pg_catalog.count(*)::pg_catalog.int8 AS usable FROM invitetomedia.guest_links g"
	" WHERE g.media_id OPERATOR(pg_catalog.=) $1"
	"   AND g.revoked_at IS NULL"
	"   AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
	"   AND (g.click_limit IS NULL OR g.clicks OPERATOR(pg_catalog.<) g.click_limit)",
	1, {TEXTOID}, GUS_NCOLS, guest_usable_cols, NULL
};

/* 2.0: the media's usable links on every site of the tenant ($2) */
static ItmPlan guest_usable_plan_2_0 = {
	"SELECT pg_catalog.count(*)::pg_catalog.int8 AS usable FROM invitetomedia.guest_links g"
	" WHERE g.tenant_id OPERATOR(pg_catalog.=) $2 AND g.media_id OPERATOR(pg_catalog.=) $1"
	"   AND g.revoked_at IS NULL"
	"   AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
	"   AND (g.click_limit IS NULL OR g.clicks OPERATOR(pg_catalog.<) g.click_limit)",
	2, {TEXTOID, INT4OID}, GUS_NCOLS, guest_usable_cols, NULL
};

enum
{
	GINS_GUEST_LINK_ID,
	GINS_EXPIRES_AT,
	GINS_NCOLS
};
static const ItmCol guest_insert_cols[GINS_NCOLS] = {
	[GINS_GUEST_LINK_ID] = {"guest_link_id", INT8OID, false, "guest_links.guest_link_id"},
	[GINS_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true, "guest_links.expires_at"},
};
static ItmPlan guest_insert_plan = {
	"INSERT INTO invitetomedia.guest_links"
	"  (token_hash, media_id, name, created_by, expires_at, click_limit)"
	" VALUES ($1, $2, $3, $4,"
	"   pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => $5), $6)"
	" RETURNING guest_link_id::pg_catalog.int8 AS guest_link_id,"
	"   expires_at::pg_catalog.timestamptz AS expires_at",
	6, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID},
	GINS_NCOLS, guest_insert_cols, NULL
};

/* 2.0: the link belongs to its site ($7, $8); its id ($9) is drawn */
static ItmPlan guest_insert_plan_2_0 = {
	"INSERT INTO invitetomedia.guest_links"
	"  (tenant_id, site_id, guest_link_id, token_hash, media_id, name, created_by,"
	"   expires_at, click_limit)"
	" VALUES ($7, $8, $9, $1, $2, $3, $4,"
	"   pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => $5), $6)"
	" ON CONFLICT (tenant_id, guest_link_id) DO NOTHING"
	" RETURNING guest_link_id::pg_catalog.int8 AS guest_link_id,"
	"   expires_at::pg_catalog.timestamptz AS expires_at",
	9, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID, INT8OID},
	GINS_NCOLS, guest_insert_cols, NULL
};

#define GUEST_LINKS_PER_MEDIA	3
#define GUEST_NAME_MAX_CHARS	200

static Datum
GuestCreateImpl(FunctionCallInfo fcinfo, bool with_resends, ItmApi api, const char *site_id)
{
	bool		v2 = api == ITM_API_2_0;
	ItmPlan    *p = v2 ? &guest_context_plan_2_0 : &guest_context_plan;
	ItmPlan    *ins = v2 ? &guest_insert_plan_2_0 : &guest_insert_plan;
	ItmSite		site = {0, NULL};
	int			draws;
	char	   *media_id;
	char	   *actor_id;
	char	   *name;
	char		token[ITM_TOKEN_LEN + 1];
	char	   *base_url;
	int32		per_hour;
	Datum		args[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};

	ItmRequireArg(fcinfo, 0, "media_id");
	ItmRequireArg(fcinfo, 1, "actor_id");
	ItmRequireArg(fcinfo, 2, "name");
	PreventCommandIfReadOnly("guest_link_create()");
	ItmMaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the arguments on their own (22023) */
	media_id = ItmIdArg(fcinfo, 0, "media_id");
	actor_id = ItmIdArg(fcinfo, 1, "actor_id");
	name = ItmNameArg(fcinfo, 2, "name", GUEST_NAME_MAX_CHARS,
				   "Name the link for its audience, e.g. 'Webcast attendees'.");
	if (!PG_ARGISNULL(3) && PG_GETARG_INT32(3) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("click_limit must be at least 1, not %d", PG_GETARG_INT32(3)),
				 errhint("Pass NULL for a link without a click limit.")));
	if (!PG_ARGISNULL(4) && (PG_GETARG_INT32(4) < 1 || PG_GETARG_INT32(4) > 365))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("valid_days must be between 1 and 365, not %d", PG_GETARG_INT32(4)),
				 errhint("Pass NULL for a link that expires only when revoked.")));

	/* the settings and the policy */
	args[0] = CStringGetTextDatum(media_id);
	args[1] = CStringGetTextDatum(actor_id);
	if (v2)
	{
		ItmResolveSite(site_id, &site);
		args[2] = CStringGetTextDatum(site.site_id);
		args[3] = Int32GetDatum(site.tenant_id);
	}
	ItmRunPlan(p, args, NULL, false, SPI_OK_SELECT);
	if (!v2)
		ItmRequireSettingsRow(SPI_processed);
	else if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("site \"%s\" does not exist", site.site_id)));
	ItmRequireEnabled(ItmColBool(p, GCTX_ENABLED));
	if (!ItmColBool(p, GCTX_MEDIA_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("media \"%s\" does not exist", ItmClip(media_id, 100))));
	if (!ItmColBool(p, GCTX_ACTOR_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", ItmClip(actor_id, 100)),
				 errdetail("The creator must be a user in invitetomedia.users.")));
	if (!ItmColBool(p, GCTX_MAY_INVITE))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not create guest links to media \"%s\"",
						ItmClip(actor_id, 100), ItmClip(media_id, 100)),
				 errdetail("Guest links are created by those who may invite: the media's owner, co-owners, co-editors and co-publishers who also pass settings.allowed_users_roles; see invitetomedia.may_invite().")));
	base_url = ItmColText(p, GCTX_LINK_BASE_URL);
	per_hour = ItmColInt4(p, GCTX_INVITES_PER_HOUR);

	ItmCheckRateLimit(actor_id, per_hour, with_resends, v2 ? &site : NULL);

	args[0] = CStringGetTextDatum(media_id);
	args[1] = Int32GetDatum(site.tenant_id);	/* 2.0 */
	ItmRunPlan(v2 ? &lock_media_plan_2_0 : &lock_media_plan, args, NULL, false, SPI_OK_SELECT);
	ItmRunPlanAfterLock(v2 ? &guest_usable_plan_2_0 : &guest_usable_plan, args, NULL,
						SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the guest link count returned %llu rows",
			 (unsigned long long) SPI_processed);
	if (ItmColInt8(v2 ? &guest_usable_plan_2_0 : &guest_usable_plan, GUS_USABLE) >=
		GUEST_LINKS_PER_MEDIA)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("media \"%s\" already has %d usable guest links: at most %d are allowed",
						ItmClip(media_id, 100), GUEST_LINKS_PER_MEDIA, GUEST_LINKS_PER_MEDIA),
				 errdetail("A guest link is usable while it is not revoked, not expired and has clicks left."),
				 errhint("Revoke one with guest_link_revoke() first.")));

	ItmNewToken(ITM_GUEST_TOKEN_PREFIX, token);
	args[0] = PointerGetDatum(ItmTokenHash(token, ITM_TOKEN_LEN));
	args[1] = CStringGetTextDatum(media_id);
	args[2] = CStringGetTextDatum(name);
	args[3] = CStringGetTextDatum(actor_id);
	args[4] = PG_ARGISNULL(4) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(4));
	nulls[4] = PG_ARGISNULL(4) ? 'n' : ' ';
	args[5] = PG_ARGISNULL(3) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(3));
	nulls[5] = PG_ARGISNULL(3) ? 'n' : ' ';
	if (v2)
	{
		args[6] = Int32GetDatum(site.tenant_id);
		args[7] = CStringGetTextDatum(site.site_id);
	}
	for (draws = 0;; draws++)
	{
		if (v2)
			args[8] = Int64GetDatum(ItmRandomId());
		ItmRunPlan(ins, args, nulls, false, SPI_OK_INSERT_RETURNING);
		/* 2.0: a duplicate id inserts nothing (ON CONFLICT): draw again */
		if (SPI_processed == 0 && v2 && draws < 3)
			continue;
		break;
	}
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the guest link insert returned %llu rows",
			 (unsigned long long) SPI_processed);

	result[0] = Int64GetDatum(ItmColInt8(ins, GINS_GUEST_LINK_ID));
	result[1] = CStringGetTextDatum(token);
	result[2] = CStringGetTextDatum(psprintf("%s%s", base_url, token));
	ItmColToResult(ins, GINS_EXPIRES_AT, result, result_nulls, 3);
	ItmPutResultRow(fcinfo, result, result_nulls);
	explicit_bzero(token, sizeof(token));
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(guest_link_create);
Datum
guest_link_create(PG_FUNCTION_ARGS)
{
	return GuestCreateImpl(fcinfo, false, ITM_API_1_1, NULL);
}

/* 1.1.1: mailed resends count towards the rate limit */
PG_FUNCTION_INFO_V1(guest_link_create_1_1_1);
Datum
guest_link_create_1_1_1(PG_FUNCTION_ARGS)
{
	return GuestCreateImpl(fcinfo, true, ITM_API_1_1, NULL);
}

/* 2.0: the 1.1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(guest_link_create_2_0);
Datum
guest_link_create_2_0(PG_FUNCTION_ARGS)
{
	return GuestCreateImpl(fcinfo, true, ITM_API_2_0, NULL);
}

/* 2.0: guest_link_create_at(site_id, ...1.1.1's arguments) */
PG_FUNCTION_INFO_V1(guest_link_create_at);
Datum
guest_link_create_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return GuestCreateImpl(shifted, true, ITM_API_2_0, site_id);
}

/* Why a join would not click (or whether this device rejoins). */
enum
{
	GDX_GUEST_LINK_ID,
	GDX_MEDIA_ID,
	GDX_CLICK_LIMIT,
	GDX_CLICKS,
	GDX_EXPIRES_AT,
	GDX_ENABLED,
	GDX_REVOKED,
	GDX_EXPIRED,
	GDX_DEVICE_SEEN,
	GDX_DEVICE_USER_ID,
	GDX_USER_ID,
	GDX_DOMAIN_ALLOWED,
	GDX_NCOLS
};
/*
 * Both forms read the link, the settings, whether the device joined, and
 * the policy; they differ in DEVICE_SQL (1.1: the device's earlier user;
 * 1.1.1: its first ok join), USER_SQL (1.1: the user with this email;
 * 1.1.1: none) and the policy (1.1: domain_allowed; 1.1.1: guest_allowed).
 */
#define GUEST_DIAGNOSE_SQL(DEVICE_SQL, DEVICE_ALIAS, USER_SQL, POLICY)		\
	"SELECT g.guest_link_id::pg_catalog.int8 AS guest_link_id,"			\
	"       g.media_id::pg_catalog.text AS media_id,"						\
	"       g.click_limit::pg_catalog.int4 AS click_limit,"				\
	"       g.clicks::pg_catalog.int4 AS clicks,"							\
	"       g.expires_at::pg_catalog.timestamptz AS expires_at,"			\
	"       s.enabled::pg_catalog.bool AS enabled,"							\
	"       g.revoked_at IS NOT NULL AS revoked,"							\
	"       (g.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) IS TRUE AS expired," \
	"       ($2::pg_catalog.text IS NOT NULL AND EXISTS ("					\
	"          SELECT 1 FROM invitetomedia.guest_link_joins j"				\
	"           WHERE j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id" \
	"             AND j.device_id OPERATOR(pg_catalog.=) $2"				\
	"             AND j.status OPERATOR(pg_catalog.=) ANY (ARRAY['ok', 'rejoin']))) AS device_seen," \
	"       CASE WHEN $2::pg_catalog.text IS NOT NULL THEN"				\
	"        (SELECT " DEVICE_SQL " FROM invitetomedia.guest_link_joins j"	\
	"          WHERE j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id" \
	"            AND j.device_id OPERATOR(pg_catalog.=) $2"				\
	"            AND j.status OPERATOR(pg_catalog.=) 'ok'"					\
	"          ORDER BY j.join_id LIMIT 1) END AS " DEVICE_ALIAS ","		\
	"       " USER_SQL " AS user_id,"										\
	"       invitetomedia." POLICY "($4)::pg_catalog.bool AS domain_allowed" \
	"  FROM invitetomedia.guest_links g CROSS JOIN invitetomedia.settings s" \
	" WHERE g.token_hash OPERATOR(pg_catalog.=) $1"
/* the columns both forms read alike */
#define GUEST_DIAGNOSE_COLS \
	[GDX_GUEST_LINK_ID] = {"guest_link_id", INT8OID, false, "guest_links.guest_link_id"}, \
	[GDX_MEDIA_ID] = {"media_id", TEXTOID, true, "guest_links.media_id"}, \
	[GDX_CLICK_LIMIT] = {"click_limit", INT4OID, true, "guest_links.click_limit"}, \
	[GDX_CLICKS] = {"clicks", INT4OID, false, "guest_links.clicks"},	\
	[GDX_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true, "guest_links.expires_at"}, \
	[GDX_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},	\
	[GDX_REVOKED] = {"revoked", BOOLOID, false, "guest_links.revoked_at"}, \
	[GDX_EXPIRED] = {"expired", BOOLOID, false, "guest_links.expires_at"}, \
	[GDX_DEVICE_SEEN] = {"device_seen", BOOLOID, false, "guest_link_joins.device_id"}, \
	[GDX_USER_ID] = {"user_id", TEXTOID, true, "users.user_id"}

static const ItmCol guest_diagnose_cols[GDX_NCOLS] = {
	GUEST_DIAGNOSE_COLS,
	[GDX_DEVICE_USER_ID] = {"device_user_id", TEXTOID, true, "guest_link_joins.user_id"},
	[GDX_DOMAIN_ALLOWED] = {"domain_allowed", BOOLOID, true, "domain_allowed()"},
};
static ItmPlan guest_diagnose_plan = {
	GUEST_DIAGNOSE_SQL("j.user_id::pg_catalog.text", "device_user_id",
					   "(SELECT us.user_id::pg_catalog.text FROM invitetomedia.users us"
					   "  WHERE " USER_KEY_1_0_1 " OPERATOR(pg_catalog.=) $3)",
					   "domain_allowed"),
	4, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID}, GDX_NCOLS, guest_diagnose_cols, NULL
};

/*
 * 1.1.1: a guest is not a user.  The join reads no user (its answer must
 * not depend on whether the address has an account), the claimed address
 * is judged by guest_allowed() alone, and a device that joined before
 * rejoins as the guest of its first ok join (device_join_id).  $3 (the
 * email's key) is not read.
 */
static const ItmCol guest_diagnose_cols_1_1_1[GDX_NCOLS] = {
	GUEST_DIAGNOSE_COLS,
	[GDX_DEVICE_USER_ID] = {"device_join_id", INT8OID, true, "guest_link_joins.join_id"},
	[GDX_DOMAIN_ALLOWED] = {"domain_allowed", BOOLOID, true, "guest_allowed()"},
};
/*
 * Kept to its generic plan (ItmKeepGenericPlan).  Without 1.1's user sub-select the plan cache
 * judged a custom plan of this diagnosis (the device's sub-selects folded
 * away when there is none) always worth its planning, and planned it at
 * every join: 711k instructions a join on the SQL path against 546k in 1.1
 * (bench/callgrind.sh).  Its generic plan is the one a join needs.
 */
static ItmPlan guest_diagnose_plan_1_1_1 = {
	GUEST_DIAGNOSE_SQL("j.join_id::pg_catalog.int8", "device_join_id",
					   "NULL::pg_catalog.text", "guest_allowed"),
	4, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID}, GDX_NCOLS, guest_diagnose_cols_1_1_1, NULL
};

/*
 * 2.0: 1.1.1's diagnosis of the link of the tenant ($5) at the site ($6),
 * with that site's settings and guest rule.  Kept to its generic plan.
 */
static ItmPlan guest_diagnose_plan_2_0 = {
	"SELECT g.guest_link_id::pg_catalog.int8 AS guest_link_id,"
	"       g.media_id::pg_catalog.text AS media_id,"
	"       g.click_limit::pg_catalog.int4 AS click_limit,"
	"       g.clicks::pg_catalog.int4 AS clicks,"
	"       g.expires_at::pg_catalog.timestamptz AS expires_at,"
	"       s.enabled::pg_catalog.bool AS enabled,"
	"       g.revoked_at IS NOT NULL AS revoked,"
	"       (g.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) IS TRUE AS expired,"
	"       ($2::pg_catalog.text IS NOT NULL AND EXISTS ("
	"          SELECT 1 FROM invitetomedia.guest_link_joins j"
	"           WHERE j.tenant_id OPERATOR(pg_catalog.=) g.tenant_id"
	"             AND j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id"
	"             AND j.device_id OPERATOR(pg_catalog.=) $2"
	"             AND j.status OPERATOR(pg_catalog.=) ANY (ARRAY['ok', 'rejoin']))) AS device_seen,"
	"       CASE WHEN $2::pg_catalog.text IS NOT NULL THEN"
	"        (SELECT j.join_id::pg_catalog.int8 FROM invitetomedia.guest_link_joins j"
	"          WHERE j.tenant_id OPERATOR(pg_catalog.=) g.tenant_id"
	"            AND j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id"
	"            AND j.device_id OPERATOR(pg_catalog.=) $2"
	"            AND j.status OPERATOR(pg_catalog.=) 'ok'"
	"          ORDER BY j.joined_at, j.join_id LIMIT 1) END AS device_join_id,"
	"       NULL::pg_catalog.text AS user_id,"
	"       invitetomedia.guest_allowed_at($6, $4)::pg_catalog.bool AS domain_allowed"
	"  FROM invitetomedia.guest_links g JOIN invitetomedia.sites s"
	"    ON s.tenant_id OPERATOR(pg_catalog.=) g.tenant_id"
	"   AND s.site_id OPERATOR(pg_catalog.=) g.site_id"
	" WHERE g.tenant_id OPERATOR(pg_catalog.=) $5 AND g.token_hash OPERATOR(pg_catalog.=) $1"
	"   AND g.site_id OPERATOR(pg_catalog.=) $6",
	6, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID}, GDX_NCOLS,
	guest_diagnose_cols_1_1_1, NULL
};

/* A click of a click-limited link: every condition in one UPDATE. */
enum
{
	GTK_CLICKS_LEFT,
	GTK_NCOLS
};
static const ItmCol guest_take_cols[GTK_NCOLS] = {
	[GTK_CLICKS_LEFT] = {"clicks_left", INT4OID, false, "guest_links.clicks"},
};
static ItmPlan guest_take_plan = {
	"UPDATE invitetomedia.guest_links g"
	"   SET clicks = g.clicks OPERATOR(pg_catalog.+) 1,"
	"       used_up_at = CASE WHEN g.clicks OPERATOR(pg_catalog.+) 1"
	"                              OPERATOR(pg_catalog.>=) g.click_limit"
	"                         THEN pg_catalog.now() END"
	" WHERE g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"   AND g.revoked_at IS NULL"
	"   AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
	"   AND g.click_limit IS NOT NULL"
	"   AND g.clicks OPERATOR(pg_catalog.<) g.click_limit"
	"   AND (SELECT s.enabled FROM invitetomedia.settings s)"
	" RETURNING (g.click_limit OPERATOR(pg_catalog.-) g.clicks)::pg_catalog.int4 AS clicks_left",
	1, {INT8OID}, GTK_NCOLS, guest_take_cols, NULL
};

#define GUEST_SITE_ENABLED_2_0 \
	"   AND (SELECT s.enabled FROM invitetomedia.sites s"					\
	"         WHERE s.tenant_id OPERATOR(pg_catalog.=) g.tenant_id"		\
	"           AND s.site_id OPERATOR(pg_catalog.=) g.site_id)"
static ItmPlan guest_take_plan_2_0 = {
	"UPDATE invitetomedia.guest_links g"
	"   SET clicks = g.clicks OPERATOR(pg_catalog.+) 1,"
	"       used_up_at = CASE WHEN g.clicks OPERATOR(pg_catalog.+) 1"
	"                              OPERATOR(pg_catalog.>=) g.click_limit"
	"                         THEN pg_catalog.now() END"
	" WHERE g.tenant_id OPERATOR(pg_catalog.=) $2 AND g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"   AND g.revoked_at IS NULL"
	"   AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
	"   AND g.click_limit IS NOT NULL"
	"   AND g.clicks OPERATOR(pg_catalog.<) g.click_limit"
	GUEST_SITE_ENABLED_2_0
	" RETURNING (g.click_limit OPERATOR(pg_catalog.-) g.clicks)::pg_catalog.int4 AS clicks_left",
	2, {INT8OID, INT4OID}, GTK_NCOLS, guest_take_cols, NULL
};

static ItmPlan guest_share_plan_2_0 = {
	"SELECT 1 FROM invitetomedia.guest_links g"
	" WHERE g.tenant_id OPERATOR(pg_catalog.=) $2 AND g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"   AND g.revoked_at IS NULL"
	"   AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
	"   AND g.click_limit IS NULL"
	GUEST_SITE_ENABLED_2_0
	"   FOR KEY SHARE",
	2, {INT8OID, INT4OID}, 0, NULL, NULL
};

/* A join of an unlimited link: a shared lock that only a revoke waits for. */
static ItmPlan guest_share_plan = {
	"SELECT 1 FROM invitetomedia.guest_links g"
	" WHERE g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"   AND g.revoked_at IS NULL"
	"   AND (g.expires_at IS NULL OR g.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
	"   AND g.click_limit IS NULL"
	"   AND (SELECT s.enabled FROM invitetomedia.settings s)"
	"   FOR KEY SHARE",
	1, {INT8OID}, 0, NULL, NULL
};

/* Every attempt on a known link; FOR KEY SHARE: see record_plan. */
enum
{
	GREC_JOIN_ID,
	GREC_NCOLS
};
static const ItmCol guest_record_cols[GREC_NCOLS] = {
	[GREC_JOIN_ID] = {"join_id", INT8OID, false, "guest_link_joins.join_id"},
};
#define GUEST_RECORD_SQL \
	"INSERT INTO invitetomedia.guest_link_joins"					\
	"  (guest_link_id, status, email, first_name, last_name, device_id, user_id)" \
	" SELECT g.guest_link_id, $2, $3, $4, $5, $6, $7 FROM invitetomedia.guest_links g" \
	"  WHERE g.guest_link_id OPERATOR(pg_catalog.=) $1"				\
	"    FOR KEY SHARE"
static ItmPlan guest_record_plan = {
	GUEST_RECORD_SQL,
	7, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}, 0, NULL, NULL
};
/* 1.1.1: the join's id is the guest's identity */
static ItmPlan guest_record_plan_1_1_1 = {
	GUEST_RECORD_SQL " RETURNING join_id::pg_catalog.int8 AS join_id",
	7, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
	GREC_NCOLS, guest_record_cols, NULL
};

/* 2.0: the record of the tenant ($9) and the link's site, with a drawn id ($8) */
static ItmPlan guest_record_plan_2_0 = {
	"INSERT INTO invitetomedia.guest_link_joins"
	"  (tenant_id, site_id, join_id, guest_link_id, status, email, first_name, last_name,"
	"   device_id, user_id, event_seq)"
	" SELECT g.tenant_id, g.site_id, $8, g.guest_link_id, $2, $3, $4, $5, $6, $7,"
	"        CASE WHEN $10 AND $2 OPERATOR(pg_catalog.=) 'ok' THEN pg_catalog.nextval("
	"          'invitetomedia.guest_link_joins_event_seq'::pg_catalog.regclass) END"
	"   FROM invitetomedia.guest_links g"
	"  WHERE g.tenant_id OPERATOR(pg_catalog.=) $9 AND g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"    FOR KEY SHARE"
	" RETURNING join_id::pg_catalog.int8 AS join_id",
	10, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID, BOOLOID},
	GREC_NCOLS, guest_record_cols, NULL
};

typedef enum GuestStatus
{
	GS_NOT_FOUND,
	GS_DISABLED,
	GS_REVOKED,
	GS_EXPIRED,
	GS_REJOIN,
	GS_DOMAIN_RESTRICTED,
	GS_EXHAUSTED,
	GS_OK
} GuestStatus;

static const char *const guest_status_names[] = {
	"not_found", "disabled", "revoked", "expired", "rejoin",
	"domain_restricted", "exhausted", "ok"
};
StaticAssertDecl(lengthof(guest_status_names) == GS_OK + 1,
				 "one name per guest join status");

/* guest_link_join's result columns */
enum
{
	GR_STATUS,
	GR_GUEST_LINK_ID,
	GR_MEDIA_ID,
	GR_ROLE,
	GR_USER_ID,
	GR_CLICKS_LEFT,
	GR_EXPIRES_AT,
	GR_JOIN_ID,					/* 1.1.1 */
	GR_NCOLS
};

typedef struct GuestJoin
{
	char	   *email;			/* as given, trimmed */
	char	   *email_key;		/* trimmed, ASCII-lower-cased */
	char	   *first_name;
	char	   *last_name;
	Datum		args[6];		/* token hash, device_id, email_key, email; 2.0: tenant, site */
	char		nulls[6];
	bool		v2;				/* 2.0: a site's link; 1.1.1's rules */
	bool		relay;			/* the relay announces an ok join (2.0: event_seq) */
	ItmSite		site;
	GuestStatus status;
	int64		guest_link_id;
	bool		limited;
	char	   *user_id;		/* the joiner's user, when known (1.1) */
	bool		guest_only;		/* 1.1.1: no user is read, created or returned */
	bool		join_id_null;
	int64		join_id;		/* 1.1.1: ok: this join; rejoin: the first ok one */
	Datum		result[GR_NCOLS];
	bool		result_nulls[GR_NCOLS];
} GuestJoin;

/* The status of a join without a device from the link as itm_direct.c read it. */
static void
DiagnoseGuestLink(GuestJoin *j, const ItmDirectGuestLink *gl)
{
	j->guest_link_id = gl->guest_link_id;
	j->limited = gl->limited;
	j->user_id = gl->user_id;
	if (!gl->enabled)
		j->status = GS_DISABLED;
	else if (gl->revoked)
		j->status = GS_REVOKED;
	else if (gl->expired)
		j->status = GS_EXPIRED;
	else if (!gl->domain_allowed)
		j->status = GS_DOMAIN_RESTRICTED;
	else if (gl->limited && gl->clicks >= gl->click_limit)
		j->status = GS_EXHAUSTED;
	else
		j->status = GS_OK;
	j->result[GR_GUEST_LINK_ID] = Int64GetDatum(j->guest_link_id);
	j->result_nulls[GR_GUEST_LINK_ID] = false;
	j->result[GR_MEDIA_ID] = gl->media_id;
	j->result_nulls[GR_MEDIA_ID] = gl->media_id_null;
	j->result[GR_EXPIRES_AT] = gl->expires_at;
	j->result_nulls[GR_EXPIRES_AT] = gl->expires_at_null;
	j->result_nulls[GR_CLICKS_LEFT] = !gl->limited;
	if (gl->limited)
		j->result[GR_CLICKS_LEFT] = Int32GetDatum(Max(gl->click_limit - gl->clicks, 0));
}

/* Reads the link and works out the status, the first that applies. */
static void
DiagnoseGuestJoin(GuestJoin *j)
{
	ItmPlan    *p = j->v2 ? &guest_diagnose_plan_2_0 :
		j->guest_only ? &guest_diagnose_plan_1_1_1 : &guest_diagnose_plan;
	int32		clicks;
	bool		isnull;
	Datum		limit;

	/*
	 * without a device, through the table access method where it can (its
	 * whitelist holds 1.1.1's tables: not a 2.0 database's)
	 */
	if (j->nulls[1] == 'n' && !j->v2)
	{
		ItmDirectGuestLink gl;

		switch (ItmDirectGuestDiagnose(DatumGetByteaPP(j->args[0]), j->email_key,
									   j->email,
									   j->guest_only ? "guest_allowed" : "domain_allowed",
									   !j->guest_only, &gl))
		{
			case ITM_DIRECT_TAKEN:
				DiagnoseGuestLink(j, &gl);
				return;
			case ITM_DIRECT_REFUSED:
				j->status = GS_NOT_FOUND;
				return;
			case ITM_DIRECT_UNSUPPORTED:
				break;
		}
	}
	if (p == &guest_diagnose_plan_1_1_1 || p == &guest_diagnose_plan_2_0)
		ItmKeepGenericPlan(p);
	/* after the device's advisory lock: see its earlier join at any isolation */
	if (j->nulls[1] == ' ')
		ItmRunPlanAfterLock(p, j->args, j->nulls, SPI_OK_SELECT);
	else
		ItmRunPlan(p, j->args, j->nulls, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		j->status = GS_NOT_FOUND;
		return;
	}
	j->guest_link_id = ItmColInt8(p, GDX_GUEST_LINK_ID);
	limit = ItmColDatum(p, GDX_CLICK_LIMIT, &isnull);
	j->limited = !isnull;
	clicks = ItmColInt4(p, GDX_CLICKS);
	j->user_id = ItmColText(p, GDX_USER_ID);
	if (!ItmColBool(p, GDX_ENABLED))
		j->status = GS_DISABLED;
	else if (ItmColBool(p, GDX_REVOKED))
		j->status = GS_REVOKED;
	else if (ItmColBool(p, GDX_EXPIRED))
		j->status = GS_EXPIRED;
	else if (ItmColBool(p, GDX_DEVICE_SEEN))
		j->status = GS_REJOIN;
	else if (!ItmColBool(p, GDX_DOMAIN_ALLOWED))
		j->status = GS_DOMAIN_RESTRICTED;
	else if (j->limited && clicks >= DatumGetInt32(limit))
		j->status = GS_EXHAUSTED;
	else
		j->status = GS_OK;

	/* the row as ok and rejoin return it (user_id and clicks_left: later) */
	j->result[GR_GUEST_LINK_ID] = Int64GetDatum(j->guest_link_id);
	j->result_nulls[GR_GUEST_LINK_ID] = false;
	ItmColToResult(p, GDX_MEDIA_ID, j->result, j->result_nulls, GR_MEDIA_ID);
	ItmColToResult(p, GDX_EXPIRES_AT, j->result, j->result_nulls, GR_EXPIRES_AT);
	j->result_nulls[GR_CLICKS_LEFT] = !j->limited;
	if (j->limited)
		j->result[GR_CLICKS_LEFT] = Int32GetDatum(Max(DatumGetInt32(limit) - clicks, 0));
	if (j->status == GS_REJOIN && j->guest_only)
	{
		Datum		d = ItmColDatum(p, GDX_DEVICE_USER_ID, &j->join_id_null);

		j->join_id = j->join_id_null ? 0 : DatumGetInt64(d);
	}
	else if (j->status == GS_REJOIN)
	{
		char	   *device_user = ItmColText(p, GDX_DEVICE_USER_ID);

		if (device_user != NULL)
			j->user_id = device_user;
	}
}

/* A missing user is created as invite_consume creates one. */
static char *
EnsureGuestUser(GuestJoin *j)
{
	if (j->user_id != NULL)
		return j->user_id;
	return ItmEnsureUser(ITM_API_1_1, 0, j->email_key, CStringGetTextDatum(j->email),
						 CStringGetTextDatum(j->first_name), false,
						 CStringGetTextDatum(j->last_name), false);
}

/* Takes a click (or the shared lock of an unlimited link); true if it did. */
static bool
TakeGuestClick(GuestJoin *j)
{
	Datum		args[2];

	args[0] = Int64GetDatum(j->guest_link_id);
	args[1] = Int32GetDatum(j->site.tenant_id);	/* 2.0 */
	if (j->limited)
	{
		ItmPlan    *t = j->v2 ? &guest_take_plan_2_0 : &guest_take_plan;

		ItmRunPlan(t, args, NULL, false, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed != 1)
			return false;
		j->result[GR_CLICKS_LEFT] = Int32GetDatum(ItmColInt4(t, GTK_CLICKS_LEFT));
		j->result_nulls[GR_CLICKS_LEFT] = false;
		return true;
	}
	if (j->v2)
	{
		ItmRunPlan(&guest_share_plan_2_0, args, NULL, false, SPI_OK_SELECT);
		return SPI_processed == 1;
	}
	/* through the table access method where it can (itm_direct.c) */
	switch (ItmDirectGuestShare(j->guest_link_id))
	{
		case ITM_DIRECT_TAKEN:
			return true;
		case ITM_DIRECT_REFUSED:
			return false;
		case ITM_DIRECT_UNSUPPORTED:
			break;
	}
	ItmRunPlan(&guest_share_plan, args, NULL, false, SPI_OK_SELECT);
	return SPI_processed == 1;
}

static void
RecordGuestJoin(GuestJoin *j)
{
	Datum		args[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	/*
	 * The event relay needs the xid before the record's id (itm_relay.c):
	 * the row lock below gave it already; this says so.
	 */
	if (j->status == GS_OK)
		(void) GetTopTransactionId();

	/*
	 * An ok join holds a lock on the link's row already (the click's UPDATE
	 * or the shared lock), which is what the statement's FOR KEY SHARE is
	 * for: its record can be written through the table access method.
	 */
	if (j->status == GS_OK && !j->v2 &&
		ItmDirectGuestRecord(j->guest_link_id, guest_status_names[j->status], j->email,
							 j->first_name, j->last_name, j->args[1], j->nulls[1] == 'n',
							 j->user_id, &j->join_id))
	{
		j->join_id_null = false;
		return;
	}
	args[0] = Int64GetDatum(j->guest_link_id);
	args[1] = CStringGetTextDatum(guest_status_names[j->status]);
	args[2] = CStringGetTextDatum(j->email);
	args[3] = CStringGetTextDatum(j->first_name);
	args[4] = CStringGetTextDatum(j->last_name);
	args[5] = j->args[1];
	nulls[5] = j->nulls[1];
	if (j->user_id != NULL)
		args[6] = CStringGetTextDatum(j->user_id);
	else
		nulls[6] = 'n';
	if (j->v2)
	{
		args[7] = Int64GetDatum(ItmRandomId());
		args[8] = Int32GetDatum(j->site.tenant_id);
		args[9] = BoolGetDatum(j->relay);
		ItmRunPlan(&guest_record_plan_2_0, args, nulls, false, SPI_OK_INSERT_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "invitetomedia: the record of a join was not written");
		if (j->status == GS_OK)
		{
			j->join_id = ItmColInt8(&guest_record_plan_2_0, GREC_JOIN_ID);
			j->join_id_null = false;
		}
	}
	else if (j->guest_only && j->status == GS_OK)
	{
		ItmRunPlan(&guest_record_plan_1_1_1, args, nulls, false, SPI_OK_INSERT_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "invitetomedia: the record of a join was not written");
		j->join_id = ItmColInt8(&guest_record_plan_1_1_1, GREC_JOIN_ID);
		j->join_id_null = false;
	}
	else
		ItmRunPlan(&guest_record_plan, args, nulls, false, SPI_OK_INSERT);
}

static Datum
GuestJoinImpl(FunctionCallInfo fcinfo, bool guest_only, ItmApi api, const char *site_id)
{
	GuestJoin	j;
	text	   *token;
	bool		relay = false;
	int			attempt;
	int			i;

	ItmRequireArg(fcinfo, 0, "token");
	ItmRequireArg(fcinfo, 1, "email");
	ItmRequireArg(fcinfo, 2, "first_name");
	ItmRequireArg(fcinfo, 3, "last_name");
	ItmMaterializeResult(fcinfo);
	memset(&j, 0, sizeof(j));
	j.status = GS_NOT_FOUND;
	j.guest_only = guest_only;
	j.v2 = api == ITM_API_2_0;
	j.join_id_null = true;
	for (i = 0; i < GR_NCOLS; i++)
		j.result_nulls[i] = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* what the guest typed (22023): nothing is read or written before */
	j.email = ItmEmailArg(fcinfo, 1, "email");
	j.first_name = ItmNameArg(fcinfo, 2, "first_name", ITM_NAME_MAX_CHARS, NULL);
	j.last_name = ItmNameArg(fcinfo, 3, "last_name", ITM_NAME_MAX_CHARS, NULL);
	j.email_key = ItmEmailKey(j.email);
	memset(j.nulls, ' ', sizeof(j.nulls));
	/* 2.0: the site (a site of another tenant does not exist) */
	if (j.v2)
	{
		ItmResolveSite(site_id, &j.site);
		j.args[4] = Int32GetDatum(j.site.tenant_id);
		j.args[5] = CStringGetTextDatum(j.site.site_id);
	}
	if (PG_ARGISNULL(4))
		j.nulls[1] = 'n';
	else
		j.args[1] = CStringGetTextDatum(ItmIdArg(fcinfo, 4, "device_id"));
	j.args[2] = CStringGetTextDatum(j.email_key);
	j.args[3] = CStringGetTextDatum(j.email);

	/* a malformed, mistyped or invite token: no table is read */
	token = PG_GETARG_TEXT_PP(0);
	if (!itm_token_valid_prefix(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token),
								ITM_GUEST_TOKEN_PREFIX))
		goto done;
	PreventCommandIfReadOnly("guest_link_join()");
	relay = ItmRelayAnnounces();	/* before the join's id: itm_relay.c */
	j.relay = relay;
	j.args[0] = PointerGetDatum(ItmTokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));

	/* a device's joins of one link queue up (see the section's header) */
	if (!PG_ARGISNULL(4))
	{
		bytea	   *hash = DatumGetByteaPP(j.args[0]);
		text	   *device = DatumGetTextPP(j.args[1]);
		uint32		key = hash_bytes((const unsigned char *) VARDATA_ANY(hash),
									 VARSIZE_ANY_EXHDR(hash)) ^
			hash_bytes((const unsigned char *) VARDATA_ANY(device),
					   VARSIZE_ANY_EXHDR(device));

		DirectFunctionCall2(pg_advisory_xact_lock_int4,
							Int32GetDatum(GUEST_DEVICE_LOCK_CLASS),
							Int32GetDatum((int32) key));
	}

	/* normally one round: see invite_consume */
	for (attempt = 0; attempt < 3; attempt++)
	{
		DiagnoseGuestJoin(&j);
		if (j.status != GS_OK)
			break;
		if (TakeGuestClick(&j))
			break;
	}
	if (j.status == GS_OK && attempt == 3)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not join through the guest link because of concurrent updates"),
				 errhint("Try again.")));
	if (j.status == GS_NOT_FOUND)
		goto done;

	/* 1.1 made the joiner a user; 1.1.1 never does (see the section's header) */
	if (j.status == GS_OK && !j.guest_only)
		j.user_id = EnsureGuestUser(&j);
	RecordGuestJoin(&j);
	if (j.status == GS_OK || j.status == GS_REJOIN)
	{
		j.result_nulls[GR_ROLE] = false;
		j.result[GR_ROLE] = CStringGetTextDatum("viewer");
		j.result_nulls[GR_USER_ID] = j.user_id == NULL;
		if (j.user_id != NULL)
			j.result[GR_USER_ID] = CStringGetTextDatum(j.user_id);
		j.result_nulls[GR_JOIN_ID] = j.join_id_null;
		if (!j.join_id_null)
			j.result[GR_JOIN_ID] = Int64GetDatum(j.join_id);
	}
	else
	{
		/* refusals return the status alone, as invite_consume's do */
		for (i = 0; i < GR_NCOLS; i++)
			j.result_nulls[i] = true;
	}
	if (j.status == GS_OK && !relay)
	{
		if (j.v2)
			ItmNotifyTenantEvent(ITM_EVENT_GUEST_JOINED, j.site.tenant_id, j.guest_link_id);
		else
			ItmNotifyEvent(ITM_EVENT_GUEST_JOINED, j.guest_link_id);
	}

done:
	j.result[GR_STATUS] = CStringGetTextDatum(guest_status_names[j.status]);
	j.result_nulls[GR_STATUS] = false;
	ItmPutResultRow(fcinfo, j.result, j.result_nulls);
	SPI_finish();
	return (Datum) 0;
}

/* 1.1: the joiner becomes (or is found as) a user, returned as user_id */
PG_FUNCTION_INFO_V1(guest_link_join);
Datum
guest_link_join(PG_FUNCTION_ARGS)
{
	return GuestJoinImpl(fcinfo, false, ITM_API_1_1, NULL);
}

/* 1.1.1: a guest is a guest: user_id NULL, join_id the identity */
PG_FUNCTION_INFO_V1(guest_link_join_1_1_1);
Datum
guest_link_join_1_1_1(PG_FUNCTION_ARGS)
{
	return GuestJoinImpl(fcinfo, true, ITM_API_1_1, NULL);
}

/* 2.0: the 1.1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(guest_link_join_2_0);
Datum
guest_link_join_2_0(PG_FUNCTION_ARGS)
{
	return GuestJoinImpl(fcinfo, true, ITM_API_2_0, NULL);
}

/* 2.0: guest_link_join_at(site_id, token, email, first_name, last_name, device_id) */
PG_FUNCTION_INFO_V1(guest_link_join_at);
Datum
guest_link_join_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return GuestJoinImpl(shifted, true, ITM_API_2_0, site_id);
}

/*
 * guest_link_revoke: invite_revoke's rules and errors.  FOR UPDATE, not the
 * UPDATE's weaker lock: joins of an unlimited link hold FOR KEY SHARE, and
 * a revoke must wait for them (and they for it).
 */
static ItmPlan guest_revoke_lookup_plan = {
	"SELECT g.created_by::pg_catalog.text AS invited_by,"
	"       g.media_id::pg_catalog.text AS media_id,"
	"       g.revoked_at IS NOT NULL AS revoked,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       u.role::pg_catalog.text AS actor_role"
	"  FROM invitetomedia.guest_links g"
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"   FOR UPDATE OF g",
	2, {INT8OID, TEXTOID},
	RVK_NCOLS, itm_revoke_lookup_cols, NULL
};

static ItmPlan guest_revoke_plan = {
	"UPDATE invitetomedia.guest_links SET revoked_at = pg_catalog.now(), revoked_by = $2"
	" WHERE guest_link_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL",
	2, {INT8OID, TEXTOID}, 0, NULL, NULL
};

/* 2.0: the link of the tenant ($3) at the site ($4); the tenant's user */
static ItmPlan guest_revoke_lookup_plan_2_0 = {
	"SELECT g.created_by::pg_catalog.text AS invited_by,"
	"       g.media_id::pg_catalog.text AS media_id,"
	"       g.revoked_at IS NOT NULL AS revoked,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       u.role::pg_catalog.text AS actor_role"
	"  FROM invitetomedia.guest_links g"
	"  LEFT JOIN invitetomedia.users u ON u.tenant_id OPERATOR(pg_catalog.=) g.tenant_id"
	"   AND u.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE g.tenant_id OPERATOR(pg_catalog.=) $3 AND g.guest_link_id OPERATOR(pg_catalog.=) $1"
	"   AND g.site_id OPERATOR(pg_catalog.=) $4"
	"   FOR UPDATE OF g",
	4, {INT8OID, TEXTOID, INT4OID, TEXTOID},
	RVK_NCOLS, itm_revoke_lookup_cols, NULL
};

static ItmPlan guest_revoke_plan_2_0 = {
	"UPDATE invitetomedia.guest_links SET revoked_at = pg_catalog.now(), revoked_by = $2"
	" WHERE tenant_id OPERATOR(pg_catalog.=) $3 AND guest_link_id OPERATOR(pg_catalog.=) $1"
	"   AND revoked_at IS NULL",
	4, {INT8OID, TEXTOID, INT4OID, TEXTOID}, 0, NULL, NULL
};

static const ItmRevokeKind guest_revoke_kind = {
	"guest_link_revoke()", "guest_link_id", "guest link",
	"The link's creator, administrators and those who may invite to the media may revoke its links.",
	&guest_revoke_lookup_plan, &guest_revoke_plan, SPI_OK_UPDATE,
	&guest_revoke_lookup_plan_2_0, &guest_revoke_plan_2_0
};

PG_FUNCTION_INFO_V1(guest_link_revoke);
Datum
guest_link_revoke(PG_FUNCTION_ARGS)
{
	return ItmRevokeLink(fcinfo, &guest_revoke_kind, ITM_API_1_1, NULL);
}

/* 2.0: the 1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(guest_link_revoke_2_0);
Datum
guest_link_revoke_2_0(PG_FUNCTION_ARGS)
{
	return ItmRevokeLink(fcinfo, &guest_revoke_kind, ITM_API_2_0, NULL);
}

/* 2.0: guest_link_revoke_at(site_id, guest_link_id, actor_id) */
PG_FUNCTION_INFO_V1(guest_link_revoke_at);
Datum
guest_link_revoke_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return ItmRevokeLink(shifted, &guest_revoke_kind, ITM_API_2_0, site_id);
}

