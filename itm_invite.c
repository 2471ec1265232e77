/*-------------------------------------------------------------------------
 *
 * itm_invite.c
 *	  Invites: invite_create, invite_consume, invite_check, invite_revoke,
 *	  invite_resend and invite_purge.
 *
 * See invitetomedia.c for the design (concurrency, trust, versions); the
 * direct path of a use and of a creation is itm_direct.c, tried first
 * where the table shapes allow, with the saved statements here as the
 * reference and the fallback.
 *
 * IDENTIFICATION
 *	  itm_invite.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "itm_compat.h"
#include "itm_direct.h"
#include "itm_internal.h"
#include "itm_relay.h"

/*---- saved plans -------------------------------------------------------*/

/*
 * Everything invite_create needs to decide, in one round trip: settings,
 * template, media, inviter, and the two policies exactly as a DBA reads
 * them (may_invite() and domain_allowed()).  The errors are raised in the
 * documented order whatever this evaluated.
 */
enum
{
	CTX_ENABLED,
	CTX_LINK_DURATION,
	CTX_LINK_REUSABILITY,
	CTX_LINK_BASE_URL,
	CTX_TEMPLATE_NAME,
	CTX_TEMPLATE_FOUND,
	CTX_SUBJECT,
	CTX_BODY,
	CTX_MEDIA_FOUND,
	CTX_MEDIA_TYPE,
	CTX_MEDIA_TITLE,
	CTX_INVITER_FOUND,
	CTX_INVITER_NAME,
	CTX_MAY_INVITE,
	CTX_DOMAIN_ALLOWED,
	CTX_INVITES_PER_HOUR,
	CTX_NCOLS
};
static const ItmCol create_context_cols[CTX_NCOLS] = {
	[CTX_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},
	[CTX_LINK_DURATION] = {"link_duration", INT4OID, false, "settings.link_duration"},
	[CTX_LINK_REUSABILITY] = {"link_reusability", INT4OID, false, "settings.link_reusability"},
	[CTX_LINK_BASE_URL] = {"link_base_url", TEXTOID, false, "settings.link_base_url"},
	[CTX_TEMPLATE_NAME] = {"template_name", TEXTOID, true, "settings.invite_email_template"},
	[CTX_TEMPLATE_FOUND] = {"template_found", BOOLOID, false, "email_templates.name"},
	[CTX_SUBJECT] = {"subject", TEXTOID, true, "email_templates.subject"},
	[CTX_BODY] = {"body", TEXTOID, true, "email_templates.body"},
	[CTX_MEDIA_FOUND] = {"media_found", BOOLOID, false, "media.media_id"},
	[CTX_MEDIA_TYPE] = {"media_type", TEXTOID, true, "media.media_type"},
	[CTX_MEDIA_TITLE] = {"media_title", TEXTOID, true, "media.title"},
	[CTX_INVITER_FOUND] = {"inviter_found", BOOLOID, false, "users.user_id"},
	[CTX_INVITER_NAME] = {"inviter_name", TEXTOID, true, "users.first_name"},
	[CTX_MAY_INVITE] = {"may_invite", BOOLOID, true, "may_invite()"},
	[CTX_DOMAIN_ALLOWED] = {"domain_allowed", BOOLOID, true, "domain_allowed()"},
	[CTX_INVITES_PER_HOUR] = {"invites_per_hour", INT4OID, false, "settings.invites_per_hour"},
};
#define CREATE_CONTEXT_SQL(PER_HOUR) \
	"SELECT s.enabled::pg_catalog.bool AS enabled,"			\
	"       s.link_duration::pg_catalog.int4 AS link_duration,"	\
	"       s.link_reusability::pg_catalog.int4 AS link_reusability," \
	"       s.link_base_url::pg_catalog.text AS link_base_url,"	\
	"       s.invite_email_template::pg_catalog.text AS template_name," \
	"       t.name IS NOT NULL AS template_found,"				\
	"       t.subject::pg_catalog.text AS subject,"				\
	"       t.body::pg_catalog.text AS body,"					\
	"       m.media_id IS NOT NULL AS media_found,"				\
	"       m.media_type::pg_catalog.text AS media_type,"		\
	"       m.title::pg_catalog.text AS media_title,"			\
	"       u.user_id IS NOT NULL AS inviter_found,"			\
	"       pg_catalog.concat_ws(' ', u.first_name, u.last_name)::pg_catalog.text AS inviter_name," \
	"       invitetomedia.may_invite($2, $1)::pg_catalog.bool AS may_invite," \
	"       invitetomedia.domain_allowed($3)::pg_catalog.bool AS domain_allowed," \
	"       " PER_HOUR " AS invites_per_hour"					\
	"  FROM invitetomedia.settings s"							\
	"  LEFT JOIN invitetomedia.email_templates t"				\
	"         ON t.name OPERATOR(pg_catalog.=) s.invite_email_template" \
	"  LEFT JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) $1" \
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2"
static ItmPlan create_context_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {CREATE_CONTEXT_SQL("0::pg_catalog.int4"), 3, {TEXTOID, TEXTOID, TEXTOID},
	CTX_NCOLS, create_context_cols, NULL},
	[ITM_API_1_0_1] = {CREATE_CONTEXT_SQL("0::pg_catalog.int4"), 3, {TEXTOID, TEXTOID, TEXTOID},
	CTX_NCOLS, create_context_cols, NULL},
	[ITM_API_1_1] = {CREATE_CONTEXT_SQL("s.invites_per_hour::pg_catalog.int4"), 3,
	{TEXTOID, TEXTOID, TEXTOID}, CTX_NCOLS, create_context_cols, NULL},
	/* 2.0: the site's ($4) configuration; its tenant's ($5) templates, media, users */
	[ITM_API_2_0] = {
		"SELECT s.enabled::pg_catalog.bool AS enabled,"
		"       s.link_duration::pg_catalog.int4 AS link_duration,"
		"       s.link_reusability::pg_catalog.int4 AS link_reusability,"
		"       s.link_base_url::pg_catalog.text AS link_base_url,"
		"       s.invite_email_template::pg_catalog.text AS template_name,"
		"       t.name IS NOT NULL AS template_found,"
		"       t.subject::pg_catalog.text AS subject,"
		"       t.body::pg_catalog.text AS body,"
		"       m.media_id IS NOT NULL AS media_found,"
		"       m.media_type::pg_catalog.text AS media_type,"
		"       m.title::pg_catalog.text AS media_title,"
		"       u.user_id IS NOT NULL AS inviter_found,"
		"       pg_catalog.concat_ws(' ', u.first_name, u.last_name)::pg_catalog.text AS inviter_name,"
		"       invitetomedia.may_invite_at($4, $2, $1)::pg_catalog.bool AS may_invite,"
		"       invitetomedia.domain_allowed_at($4, $3)::pg_catalog.bool AS domain_allowed,"
		"       s.invites_per_hour::pg_catalog.int4 AS invites_per_hour"
		"  FROM invitetomedia.sites s"
		"  LEFT JOIN invitetomedia.email_templates t"
		"         ON t.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
		"        AND t.site_id OPERATOR(pg_catalog.=) s.site_id"
		"        AND t.name OPERATOR(pg_catalog.=) s.invite_email_template"
		"  LEFT JOIN invitetomedia.media m ON m.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
		"        AND m.media_id OPERATOR(pg_catalog.=) $1"
		"  LEFT JOIN invitetomedia.users u ON u.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
		"        AND u.user_id OPERATOR(pg_catalog.=) $2"
		" WHERE s.site_id OPERATOR(pg_catalog.=) $4 AND s.tenant_id OPERATOR(pg_catalog.=) $5",
		5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID}, CTX_NCOLS, create_context_cols, NULL
	},
};

enum
{
	INS_INVITE_ID,
	INS_EXPIRES_AT,
	INS_EXPIRES_TEXT,
	INS_NCOLS
};
static const ItmCol create_insert_cols[INS_NCOLS] = {
	[INS_INVITE_ID] = {"invite_id", INT8OID, false, "invites.invite_id"},
	[INS_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, false, "invites.expires_at"},
	[INS_EXPIRES_TEXT] = {"expires_text", TEXTOID, false, "invites.expires_at"},
};
static ItmPlan create_insert_plan = {
	"INSERT INTO invitetomedia.invites"
	"  (token_hash, media_id, role, email, first_name, last_name, invited_by,"
	"   expires_at, max_uses)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7,"
	"   pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(mins => $8), $9)"
	" RETURNING invite_id::pg_catalog.int8 AS invite_id,"
	"   expires_at::pg_catalog.timestamptz AS expires_at,"
	"   pg_catalog.to_char(expires_at::pg_catalog.timestamptz AT TIME ZONE 'UTC',"
	"                      'YYYY-MM-DD HH24:MI \"UTC\"') AS expires_text",
	9, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID},
	INS_NCOLS, create_insert_cols, NULL
};

/*
 * 1.1: a scheduled link ($10) opens at not_before and its duration counts
 * from then; a not_before already past counts as now (stored as NULL).
 */
static ItmPlan create_insert_plan_1_1 = {
	"INSERT INTO invitetomedia.invites"
	"  (token_hash, media_id, role, email, first_name, last_name, invited_by,"
	"   expires_at, max_uses, not_before)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7,"
	"   GREATEST(pg_catalog.now(), $10) OPERATOR(pg_catalog.+)"
	"     pg_catalog.make_interval(mins => $8), $9,"
	"   CASE WHEN $10 OPERATOR(pg_catalog.>) pg_catalog.now() THEN $10 END)"
	" RETURNING invite_id::pg_catalog.int8 AS invite_id,"
	"   expires_at::pg_catalog.timestamptz AS expires_at,"
	"   pg_catalog.to_char(expires_at::pg_catalog.timestamptz AT TIME ZONE 'UTC',"
	"                      'YYYY-MM-DD HH24:MI \"UTC\"') AS expires_text",
	10, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	TIMESTAMPTZOID},
	INS_NCOLS, create_insert_cols, NULL
};

/*
 * 2.0: the link belongs to its site ($11, $12); its id ($13) is drawn, and
 * drawn again on the (rare) duplicate, which inserts nothing.
 */
static ItmPlan create_insert_plan_2_0 = {
	"INSERT INTO invitetomedia.invites"
	"  (tenant_id, site_id, invite_id, token_hash, media_id, role, email, first_name,"
	"   last_name, invited_by, expires_at, max_uses, not_before)"
	" VALUES ($11, $12, $13, $1, $2, $3, $4, $5, $6, $7,"
	"   GREATEST(pg_catalog.now(), $10) OPERATOR(pg_catalog.+)"
	"     pg_catalog.make_interval(mins => $8), $9,"
	"   CASE WHEN $10 OPERATOR(pg_catalog.>) pg_catalog.now() THEN $10 END)"
	" ON CONFLICT (tenant_id, invite_id) DO NOTHING"
	" RETURNING invite_id::pg_catalog.int8 AS invite_id,"
	"   expires_at::pg_catalog.timestamptz AS expires_at,"
	"   pg_catalog.to_char(expires_at::pg_catalog.timestamptz AT TIME ZONE 'UTC',"
	"                      'YYYY-MM-DD HH24:MI \"UTC\"') AS expires_text",
	13, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	TIMESTAMPTZOID, INT4OID, TEXTOID, INT8OID},
	INS_NCOLS, create_insert_cols, NULL
};

/*
 * The rate limit (1.1).  Creations by one user queue on that user's row,
 * and only then count the links of the last hour, in a statement of its
 * own whose snapshot sees every creation that committed while this one
 * waited: N sessions creating for one inviter get exactly the limit.
 */
static ItmPlan lock_actor_plan = {
	"SELECT 1 FROM invitetomedia.users u"
	" WHERE u.user_id OPERATOR(pg_catalog.=) $1"
	"   FOR NO KEY UPDATE",
	1, {TEXTOID}, 0, NULL, NULL
};

/* 2.0: the user of the site's tenant ($2) */
static ItmPlan lock_actor_plan_2_0 = {
	"SELECT 1 FROM invitetomedia.users u"
	" WHERE u.tenant_id OPERATOR(pg_catalog.=) $2 AND u.user_id OPERATOR(pg_catalog.=) $1"
	"   FOR NO KEY UPDATE",
	2, {TEXTOID, INT4OID}, 0, NULL, NULL
};

enum
{
	RATE_CREATED,
	RATE_NCOLS
};
static const ItmCol rate_cols[RATE_NCOLS] = {
	[RATE_CREATED] = {"created", INT8OID, false, "invites.created_at"},
};
#define RATE_COUNT_SQL(MORE)												\
	"SELECT ((SELECT pg_catalog.count(*) FROM invitetomedia.invites i"	\
	"          WHERE i.invited_by OPERATOR(pg_catalog.=) $1"				\
	"            AND i.created_at OPERATOR(pg_catalog.>)"					\
	"                (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval))" \
	"       OPERATOR(pg_catalog.+)"											\
	"        (SELECT pg_catalog.count(*) FROM invitetomedia.guest_links g"	\
	"          WHERE g.created_by OPERATOR(pg_catalog.=) $1"				\
	"            AND g.created_at OPERATOR(pg_catalog.>)"					\
	"                (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval))" \
	MORE																	\
	"       )::pg_catalog.int8 AS created"
static ItmPlan rate_count_plan = {
	RATE_COUNT_SQL(""),
	1, {TEXTOID}, RATE_NCOLS, rate_cols, NULL
};

/*
 * 2.0: the user's links on every site of the tenant ($2) count against the
 * limit of the site it creates on: moving to another site of the same
 * organisation does not reset it.
 */
static ItmPlan rate_count_plan_2_0 = {
	"SELECT ((SELECT pg_catalog.count(*) FROM invitetomedia.invites i"
	"          WHERE i.tenant_id OPERATOR(pg_catalog.=) $2"
	"            AND i.invited_by OPERATOR(pg_catalog.=) $1"
	"            AND i.created_at OPERATOR(pg_catalog.>)"
	"                (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval))"
	"       OPERATOR(pg_catalog.+)"
	"        (SELECT pg_catalog.count(*) FROM invitetomedia.guest_links g"
	"          WHERE g.tenant_id OPERATOR(pg_catalog.=) $2"
	"            AND g.created_by OPERATOR(pg_catalog.=) $1"
	"            AND g.created_at OPERATOR(pg_catalog.>)"
	"                (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval))"
	"       OPERATOR(pg_catalog.+)"
	"        (SELECT pg_catalog.count(*) FROM invitetomedia.resends r"
	"          WHERE r.tenant_id OPERATOR(pg_catalog.=) $2"
	"            AND r.actor_id OPERATOR(pg_catalog.=) $1 AND r.emailed"
	"            AND r.resent_at OPERATOR(pg_catalog.>)"
	"                (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval))"
	"       )::pg_catalog.int8 AS created",
	2, {TEXTOID, INT4OID}, RATE_NCOLS, rate_cols, NULL
};

/*
 * 1.1.1: a resend that mails the link counts as a new link (issue 18: 50
 * resends mailed one address 51 times under a limit of one an hour).
 */
static ItmPlan rate_count_plan_1_1_1 = {
	RATE_COUNT_SQL(
				   "       OPERATOR(pg_catalog.+)"
				   "        (SELECT pg_catalog.count(*) FROM invitetomedia.resends r"
				   "          WHERE r.actor_id OPERATOR(pg_catalog.=) $1 AND r.emailed"
				   "            AND r.resent_at OPERATOR(pg_catalog.>)"
				   "                (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval))"),
	1, {TEXTOID}, RATE_NCOLS, rate_cols, NULL
};


/*
 * The use itself: one UPDATE carrying every condition, then the redemption
 * record with the invitee's user_id, in the same statement.  $2 is the typed
 * email, trimmed and ASCII-lower-cased.  A user that does not exist yet is
 * created by a second statement (create_user_plan): only a first use by a
 * new email pays for it.
 */
#define CONSUME_SQL(USER_KEY, SET_1_1, WHERE_1_1) \
	"WITH upd AS ("													\
	"  UPDATE invitetomedia.invites i"								\
	"     SET use_count = i.use_count OPERATOR(pg_catalog.+) 1,"	\
	"         used_up_at = CASE WHEN i.max_uses OPERATOR(pg_catalog.<>) -1" \
	"                            AND i.use_count OPERATOR(pg_catalog.+) 1" \
	"                                OPERATOR(pg_catalog.>=) i.max_uses" \
	"                           THEN pg_catalog.now() END"			\
	SET_1_1															\
	"   WHERE i.token_hash OPERATOR(pg_catalog.=) $1"				\
	"     AND i.revoked_at IS NULL"									\
	"     AND i.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()" \
	"     AND pg_catalog.lower(i.email COLLATE \"C\") OPERATOR(pg_catalog.=) $2" \
	"     AND (i.max_uses OPERATOR(pg_catalog.=) -1"				\
	"          OR i.use_count OPERATOR(pg_catalog.<) i.max_uses)"	\
	"     AND (SELECT s.enabled FROM invitetomedia.settings s)"		\
	WHERE_1_1														\
	"  RETURNING i.invite_id, i.media_id, i.role, i.email, i.first_name," \
	"            i.last_name, i.max_uses, i.use_count, i.expires_at" \
	"), rec AS ("													\
	"  INSERT INTO invitetomedia.redemptions (invite_id, status, device_id, user_id)" \
	"  SELECT upd.invite_id, 'ok', $3,"								\
	"         (SELECT us.user_id FROM invitetomedia.users us"		\
	"           WHERE " USER_KEY " OPERATOR(pg_catalog.=) $2)"		\
	"    FROM upd"													\
	"  RETURNING redemption_id, user_id"							\
	")"																\
	" SELECT upd.invite_id::pg_catalog.int8 AS invite_id,"			\
	"        upd.media_id::pg_catalog.text AS media_id,"			\
	"        upd.role::pg_catalog.text AS role,"					\
	"        rec.user_id::pg_catalog.text AS user_id,"				\
	"        upd.first_name::pg_catalog.text AS first_name,"		\
	"        upd.last_name::pg_catalog.text AS last_name,"			\
	"        upd.max_uses::pg_catalog.int4 AS max_uses,"			\
	"        upd.use_count::pg_catalog.int4 AS use_count,"			\
	"        upd.expires_at::pg_catalog.timestamptz AS expires_at,"	\
	"        rec.redemption_id::pg_catalog.int8 AS redemption_id,"	\
	"        upd.email::pg_catalog.text AS email"					\
	"   FROM upd, rec"

enum
{
	USE_INVITE_ID,
	USE_MEDIA_ID,
	USE_ROLE,
	USE_USER_ID,
	USE_FIRST_NAME,
	USE_LAST_NAME,
	USE_MAX_USES,
	USE_USE_COUNT,
	USE_EXPIRES_AT,
	USE_REDEMPTION_ID,
	USE_EMAIL,
	USE_NCOLS
};
static const ItmCol consume_cols[USE_NCOLS] = {
	[USE_INVITE_ID] = {"invite_id", INT8OID, false, "invites.invite_id"},
	[USE_MEDIA_ID] = {"media_id", TEXTOID, true, "invites.media_id"},
	[USE_ROLE] = {"role", TEXTOID, true, "invites.role"},
	[USE_USER_ID] = {"user_id", TEXTOID, true, "users.user_id"},
	[USE_FIRST_NAME] = {"first_name", TEXTOID, true, "invites.first_name"},
	[USE_LAST_NAME] = {"last_name", TEXTOID, true, "invites.last_name"},
	[USE_MAX_USES] = {"max_uses", INT4OID, false, "invites.max_uses"},
	[USE_USE_COUNT] = {"use_count", INT4OID, false, "invites.use_count"},
	[USE_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true, "invites.expires_at"},
	[USE_REDEMPTION_ID] = {"redemption_id", INT8OID, false, "redemptions.redemption_id"},
	[USE_EMAIL] = {"email", TEXTOID, false, "invites.email"},
};
/*
 * 1.1: a scheduled link is not used before it opens, a locked one not at
 * all; the lockout threshold is read once per statement (0 never locks).
 * LOCKED_SQL is the one test of a lock, here, in the diagnosis and in the
 * count of a wrong email: a threshold of 2147483647 is a threshold like
 * any other, not "never".
 */
#define LOCKED_SQL \
	"(s.lockout_attempts OPERATOR(pg_catalog.>) 0"						\
	" AND i.failed_attempts OPERATOR(pg_catalog.>=) s.lockout_attempts)"
#define CONSUME_SET_1_1 \
	"         , last_used_at = pg_catalog.now()"
#define CONSUME_WHERE_1_1 \
	"     AND (i.not_before IS NULL"									\
	"          OR i.not_before OPERATOR(pg_catalog.<=) pg_catalog.now())" \
	"     AND i.failed_attempts IS NOT NULL"							\
	"     AND (SELECT " LOCKED_SQL " FROM invitetomedia.settings s) IS NOT TRUE"
/*
 * 2.0: the link is found by its tenant ($4) and token hash, at its site
 * ($5) only; the record goes to the link's site with a drawn id ($6).  A
 * link of another tenant or site is an index miss like any random token.
 */
#define SITE_OF_LINK_2_0(ALIAS) \
	" invitetomedia.sites s WHERE s.tenant_id OPERATOR(pg_catalog.=) " ALIAS ".tenant_id" \
	" AND s.site_id OPERATOR(pg_catalog.=) " ALIAS ".site_id"
#define CONSUME_ARGTYPES_2_0 {BYTEAOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, INT8OID, INT8OID}
#define CONSUME_SQL_2_0 \
	"WITH upd AS ("													\
	"  UPDATE invitetomedia.invites i"								\
	"     SET use_count = i.use_count OPERATOR(pg_catalog.+) 1,"	\
	"         used_up_at = CASE WHEN i.max_uses OPERATOR(pg_catalog.<>) -1" \
	"                            AND i.use_count OPERATOR(pg_catalog.+) 1" \
	"                                OPERATOR(pg_catalog.>=) i.max_uses" \
	"                           THEN pg_catalog.now() END"			\
	CONSUME_SET_1_1													\
	"   WHERE i.tenant_id OPERATOR(pg_catalog.=) $4"				\
	"     AND i.token_hash OPERATOR(pg_catalog.=) $1"				\
	"     AND i.site_id OPERATOR(pg_catalog.=) $5"					\
	"     AND i.revoked_at IS NULL"									\
	"     AND i.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()" \
	"     AND pg_catalog.lower(i.email COLLATE \"C\") OPERATOR(pg_catalog.=) $2" \
	"     AND (i.max_uses OPERATOR(pg_catalog.=) -1"				\
	"          OR i.use_count OPERATOR(pg_catalog.<) i.max_uses)"	\
	"     AND (SELECT s.enabled FROM" SITE_OF_LINK_2_0("i") ")"		\
	"     AND (i.not_before IS NULL"								\
	"          OR i.not_before OPERATOR(pg_catalog.<=) pg_catalog.now())" \
	"     AND i.failed_attempts IS NOT NULL"						\
	"     AND (SELECT " LOCKED_SQL " FROM" SITE_OF_LINK_2_0("i") ") IS NOT TRUE" \
	"  RETURNING i.invite_id, i.media_id, i.role, i.email, i.first_name," \
	"            i.last_name, i.max_uses, i.use_count, i.expires_at, i.site_id" \
	"), rec AS ("													\
	"  INSERT INTO invitetomedia.redemptions"						\
	"    (tenant_id, site_id, redemption_id, invite_id, status, device_id, user_id," \
	"     event_seq)"												\
	"  SELECT $4, upd.site_id, $6, upd.invite_id, 'ok', $3,"		\
	"         (SELECT us.user_id FROM invitetomedia.users us"		\
	"           WHERE us.tenant_id OPERATOR(pg_catalog.=) $4"		\
	"             AND " USER_KEY_1_0_1 " OPERATOR(pg_catalog.=) $2),"	\
	"         $7"												\
	"    FROM upd"													\
	"  RETURNING redemption_id, user_id"							\
	")"																\
	" SELECT upd.invite_id::pg_catalog.int8 AS invite_id,"			\
	"        upd.media_id::pg_catalog.text AS media_id,"			\
	"        upd.role::pg_catalog.text AS role,"					\
	"        rec.user_id::pg_catalog.text AS user_id,"				\
	"        upd.first_name::pg_catalog.text AS first_name,"		\
	"        upd.last_name::pg_catalog.text AS last_name,"			\
	"        upd.max_uses::pg_catalog.int4 AS max_uses,"			\
	"        upd.use_count::pg_catalog.int4 AS use_count,"			\
	"        upd.expires_at::pg_catalog.timestamptz AS expires_at,"	\
	"        rec.redemption_id::pg_catalog.int8 AS redemption_id,"	\
	"        upd.email::pg_catalog.text AS email"					\
	"   FROM upd, rec"
static ItmPlan consume_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {CONSUME_SQL(USER_KEY_1_0, "", ""), 3, {BYTEAOID, TEXTOID, TEXTOID},
	USE_NCOLS, consume_cols, NULL},
	[ITM_API_1_0_1] = {CONSUME_SQL(USER_KEY_1_0_1, "", ""), 3, {BYTEAOID, TEXTOID, TEXTOID},
	USE_NCOLS, consume_cols, NULL},
	[ITM_API_1_1] = {CONSUME_SQL(USER_KEY_1_0_1, CONSUME_SET_1_1, CONSUME_WHERE_1_1), 3,
	{BYTEAOID, TEXTOID, TEXTOID}, USE_NCOLS, consume_cols, NULL},
	[ITM_API_2_0] = {CONSUME_SQL_2_0, 7, CONSUME_ARGTYPES_2_0, USE_NCOLS, consume_cols, NULL},
};

/*
 * First use by an email no user has: user_id = the ASCII-lower-cased email
 * ($1), role anonymous, names from the invite.  Nothing is returned on a
 * conflict: a concurrent first use created the user, or another address
 * owns the id.
 */
enum
{
	NEWUSER_USER_ID,
	NEWUSER_NCOLS
};
static const ItmCol user_id_cols[NEWUSER_NCOLS] = {
	[NEWUSER_USER_ID] = {"user_id", TEXTOID, false, "users.user_id"},
};
static ItmPlan create_user_plan = {
	"INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)"
	" VALUES ($1, $2, $3, $4, 'anonymous')"
	" ON CONFLICT DO NOTHING RETURNING user_id::pg_catalog.text AS user_id",
	4, {TEXTOID, TEXTOID, TEXTOID, TEXTOID},
	NEWUSER_NCOLS, user_id_cols, NULL
};

/* 2.0: a user of the tenant ($5) */
static ItmPlan create_user_plan_2_0 = {
	"INSERT INTO invitetomedia.users (tenant_id, user_id, email, first_name, last_name, role)"
	" VALUES ($5, $1, $2, $3, $4, 'anonymous')"
	" ON CONFLICT DO NOTHING RETURNING user_id::pg_catalog.text AS user_id",
	5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID},
	NEWUSER_NCOLS, user_id_cols, NULL
};

/* The rare path: a user appeared concurrently for the invitee's email. */
#define FIND_USER_SQL(USER_KEY) \
	"SELECT us.user_id::pg_catalog.text AS user_id FROM invitetomedia.users us" \
	" WHERE " USER_KEY " OPERATOR(pg_catalog.=) $1"
static ItmPlan find_user_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {FIND_USER_SQL(USER_KEY_1_0), 1, {TEXTOID}, NEWUSER_NCOLS, user_id_cols, NULL},
	[ITM_API_1_0_1] = {FIND_USER_SQL(USER_KEY_1_0_1), 1, {TEXTOID}, NEWUSER_NCOLS, user_id_cols, NULL},
	[ITM_API_1_1] = {FIND_USER_SQL(USER_KEY_1_0_1), 1, {TEXTOID}, NEWUSER_NCOLS, user_id_cols, NULL},
	[ITM_API_2_0] = {FIND_USER_SQL(USER_KEY_1_0_1) " AND us.tenant_id OPERATOR(pg_catalog.=) $5",
	5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID}, NEWUSER_NCOLS, user_id_cols, NULL},
};

/*
 * 1.1: the record of a use taken through the table access method
 * (itm_direct.c), with the invitee's user_id, as the consume statement's
 * second half writes it.
 */
enum
{
	DREC_REDEMPTION_ID,
	DREC_USER_ID,
	DREC_NCOLS
};
static const ItmCol direct_record_cols[DREC_NCOLS] = {
	[DREC_REDEMPTION_ID] = {"redemption_id", INT8OID, false, "redemptions.redemption_id"},
	[DREC_USER_ID] = {"user_id", TEXTOID, true, "users.user_id"},
};
/* 2.0: the record of the tenant ($4) at the link's site ($5), a drawn id ($6) */
static ItmPlan direct_record_plan_2_0 = {
	"INSERT INTO invitetomedia.redemptions"
	"  (tenant_id, site_id, redemption_id, invite_id, status, device_id, user_id, event_seq)"
	" VALUES ($4, $5, $6, $1, 'ok', $3,"
	"         (SELECT us.user_id FROM invitetomedia.users us"
	"           WHERE us.tenant_id OPERATOR(pg_catalog.=) $4"
	"             AND " USER_KEY_1_0_1 " OPERATOR(pg_catalog.=) $2),"
	"         $7)"
	" RETURNING redemption_id::pg_catalog.int8 AS redemption_id,"
	"           user_id::pg_catalog.text AS user_id",
	7, {INT8OID, TEXTOID, TEXTOID, INT4OID, TEXTOID, INT8OID, INT8OID},
	DREC_NCOLS, direct_record_cols, NULL
};

static ItmPlan direct_record_plan = {
	"INSERT INTO invitetomedia.redemptions (invite_id, status, device_id, user_id)"
	" VALUES ($1, 'ok', $3,"
	"         (SELECT us.user_id FROM invitetomedia.users us"
	"           WHERE " USER_KEY_1_0_1 " OPERATOR(pg_catalog.=) $2))"
	" RETURNING redemption_id::pg_catalog.int8 AS redemption_id,"
	"           user_id::pg_catalog.text AS user_id",
	3, {INT8OID, TEXTOID, TEXTOID}, DREC_NCOLS, direct_record_cols, NULL
};

static ItmPlan set_redemption_user_plan = {
	"UPDATE invitetomedia.redemptions SET user_id = $2"
	" WHERE redemption_id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, TEXTOID}, 0, NULL, NULL
};

static ItmPlan set_redemption_user_plan_2_0 = {
	"UPDATE invitetomedia.redemptions SET user_id = $2"
	" WHERE tenant_id OPERATOR(pg_catalog.=) $3 AND redemption_id OPERATOR(pg_catalog.=) $1",
	3, {INT8OID, TEXTOID, INT4OID}, 0, NULL, NULL
};

/*
 * A consume with a device_id waits here for the link's row lock (held by a
 * consume or revoke in flight) before it looks for the device's earlier use.
 */
static ItmPlan lock_invite_plan = {
	"SELECT 1 FROM invitetomedia.invites i"
	" WHERE i.token_hash OPERATOR(pg_catalog.=) $1"
	"   FOR NO KEY UPDATE",
	1, {BYTEAOID}, 0, NULL, NULL
};

static ItmPlan lock_invite_plan_2_0 = {
	"SELECT 1 FROM invitetomedia.invites i"
	" WHERE i.tenant_id OPERATOR(pg_catalog.=) $4 AND i.token_hash OPERATOR(pg_catalog.=) $1"
	"   AND i.site_id OPERATOR(pg_catalog.=) $5"
	"   FOR NO KEY UPDATE",
	5, {BYTEAOID, TEXTOID, TEXTOID, INT4OID, TEXTOID}, 0, NULL, NULL
};

/* Why a consume took nothing (or whether this device rejoins). */
#define DIAGNOSE_SQL(USER_KEY, COLS_1_1) \
	"SELECT i.invite_id::pg_catalog.int8 AS invite_id,"			\
	"       i.media_id::pg_catalog.text AS media_id,"				\
	"       i.role::pg_catalog.text AS role,"						\
	"       i.first_name::pg_catalog.text AS first_name,"			\
	"       i.last_name::pg_catalog.text AS last_name,"				\
	"       i.max_uses::pg_catalog.int4 AS max_uses,"				\
	"       i.use_count::pg_catalog.int4 AS use_count,"				\
	"       i.expires_at::pg_catalog.timestamptz AS expires_at,"	\
	"       s.enabled::pg_catalog.bool AS enabled,"					\
	"       i.revoked_at IS NOT NULL AS revoked,"					\
	"       i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired," \
	"       pg_catalog.lower(i.email COLLATE \"C\") OPERATOR(pg_catalog.=) $2 AS email_matches," \
	"       ($3::pg_catalog.text IS NOT NULL AND EXISTS ("			\
	"          SELECT 1 FROM invitetomedia.redemptions r"			\
	"           WHERE r.invite_id OPERATOR(pg_catalog.=) i.invite_id" \
	"             AND r.device_id OPERATOR(pg_catalog.=) $3"		\
	"             AND r.status OPERATOR(pg_catalog.=) ANY (ARRAY['ok', 'rejoin']))) AS device_seen," \
	"       (SELECT us.user_id::pg_catalog.text FROM invitetomedia.users us" \
	"         WHERE " USER_KEY " OPERATOR(pg_catalog.=) $2) AS user_id," \
	COLS_1_1														\
	"  FROM invitetomedia.invites i CROSS JOIN invitetomedia.settings s" \
	" WHERE i.token_hash OPERATOR(pg_catalog.=) $1"

enum
{
	DX_INVITE_ID,
	DX_MEDIA_ID,
	DX_ROLE,
	DX_FIRST_NAME,
	DX_LAST_NAME,
	DX_MAX_USES,
	DX_USE_COUNT,
	DX_EXPIRES_AT,
	DX_ENABLED,
	DX_REVOKED,
	DX_EXPIRED,
	DX_EMAIL_MATCHES,
	DX_DEVICE_SEEN,
	DX_USER_ID,
	DX_NOT_YET,
	DX_LOCKED,
	DX_NCOLS
};
static const ItmCol diagnose_cols[DX_NCOLS] = {
	[DX_INVITE_ID] = {"invite_id", INT8OID, false, "invites.invite_id"},
	[DX_MEDIA_ID] = {"media_id", TEXTOID, true, "invites.media_id"},
	[DX_ROLE] = {"role", TEXTOID, true, "invites.role"},
	[DX_FIRST_NAME] = {"first_name", TEXTOID, true, "invites.first_name"},
	[DX_LAST_NAME] = {"last_name", TEXTOID, true, "invites.last_name"},
	[DX_MAX_USES] = {"max_uses", INT4OID, false, "invites.max_uses"},
	[DX_USE_COUNT] = {"use_count", INT4OID, false, "invites.use_count"},
	[DX_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, false, "invites.expires_at"},
	[DX_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},
	[DX_REVOKED] = {"revoked", BOOLOID, false, "invites.revoked_at"},
	[DX_EXPIRED] = {"expired", BOOLOID, false, "invites.expires_at"},
	[DX_EMAIL_MATCHES] = {"email_matches", BOOLOID, false, "invites.email"},
	[DX_DEVICE_SEEN] = {"device_seen", BOOLOID, false, "redemptions.device_id"},
	[DX_USER_ID] = {"user_id", TEXTOID, true, "users.user_id"},
	[DX_NOT_YET] = {"not_yet", BOOLOID, false, "invites.not_before"},
	[DX_LOCKED] = {"locked", BOOLOID, false, "invites.failed_attempts"},
};
#define DIAGNOSE_COLS_1_0 \
	"       false AS not_yet, false AS locked"
/* locked is NULL (an error naming the column) if failed_attempts is */
#define DIAGNOSE_COLS_1_1 \
	"       (i.not_before OPERATOR(pg_catalog.>) pg_catalog.now()) IS TRUE AS not_yet," \
	"       CASE WHEN i.failed_attempts IS NOT NULL THEN"			\
	"       " LOCKED_SQL " IS TRUE"										\
	"       END AS locked"
static ItmPlan consume_diagnose_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {DIAGNOSE_SQL(USER_KEY_1_0, DIAGNOSE_COLS_1_0), 3,
	{BYTEAOID, TEXTOID, TEXTOID}, DX_NCOLS, diagnose_cols, NULL},
	[ITM_API_1_0_1] = {DIAGNOSE_SQL(USER_KEY_1_0_1, DIAGNOSE_COLS_1_0), 3,
	{BYTEAOID, TEXTOID, TEXTOID}, DX_NCOLS, diagnose_cols, NULL},
	[ITM_API_1_1] = {DIAGNOSE_SQL(USER_KEY_1_0_1, DIAGNOSE_COLS_1_1), 3,
	{BYTEAOID, TEXTOID, TEXTOID}, DX_NCOLS, diagnose_cols, NULL},
	/* 2.0: the link at its tenant ($4) and site ($5), with the site's settings */
	[ITM_API_2_0] = {
		"SELECT i.invite_id::pg_catalog.int8 AS invite_id,"
		"       i.media_id::pg_catalog.text AS media_id,"
		"       i.role::pg_catalog.text AS role,"
		"       i.first_name::pg_catalog.text AS first_name,"
		"       i.last_name::pg_catalog.text AS last_name,"
		"       i.max_uses::pg_catalog.int4 AS max_uses,"
		"       i.use_count::pg_catalog.int4 AS use_count,"
		"       i.expires_at::pg_catalog.timestamptz AS expires_at,"
		"       s.enabled::pg_catalog.bool AS enabled,"
		"       i.revoked_at IS NOT NULL AS revoked,"
		"       i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired,"
		"       pg_catalog.lower(i.email COLLATE \"C\") OPERATOR(pg_catalog.=) $2 AS email_matches,"
		"       ($3::pg_catalog.text IS NOT NULL AND EXISTS ("
		"          SELECT 1 FROM invitetomedia.redemptions r"
		"           WHERE r.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
		"             AND r.invite_id OPERATOR(pg_catalog.=) i.invite_id"
		"             AND r.device_id OPERATOR(pg_catalog.=) $3"
		"             AND r.status OPERATOR(pg_catalog.=) ANY (ARRAY['ok', 'rejoin']))) AS device_seen,"
		"       (SELECT us.user_id::pg_catalog.text FROM invitetomedia.users us"
		"         WHERE us.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
		"           AND " USER_KEY_1_0_1 " OPERATOR(pg_catalog.=) $2) AS user_id,"
		DIAGNOSE_COLS_1_1
		"  FROM invitetomedia.invites i JOIN invitetomedia.sites s"
		"    ON s.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
		"   AND s.site_id OPERATOR(pg_catalog.=) i.site_id"
		" WHERE i.tenant_id OPERATOR(pg_catalog.=) $4 AND i.token_hash OPERATOR(pg_catalog.=) $1"
		"   AND i.site_id OPERATOR(pg_catalog.=) $5",
		5, {BYTEAOID, TEXTOID, TEXTOID, INT4OID, TEXTOID}, DX_NCOLS, diagnose_cols, NULL
	},
};

/* 1.1: a token replaced by invite_resend answers revoked. */
enum
{
	RET_INVITE_ID,
	RET_ENABLED,
	RET_NCOLS
};
static const ItmCol retired_cols[RET_NCOLS] = {
	[RET_INVITE_ID] = {"invite_id", INT8OID, false, "retired_tokens.invite_id"},
	[RET_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},
};
static ItmPlan retired_plan = {
	"SELECT rt.invite_id::pg_catalog.int8 AS invite_id,"
	"       s.enabled::pg_catalog.bool AS enabled"
	"  FROM invitetomedia.retired_tokens rt CROSS JOIN invitetomedia.settings s"
	" WHERE rt.token_hash OPERATOR(pg_catalog.=) $1",
	1, {BYTEAOID}, RET_NCOLS, retired_cols, NULL
};

/* 2.0: a retired token of the tenant ($4), whose link is of the site ($5) */
static ItmPlan retired_plan_2_0 = {
	"SELECT rt.invite_id::pg_catalog.int8 AS invite_id,"
	"       s.enabled::pg_catalog.bool AS enabled"
	"  FROM invitetomedia.retired_tokens rt"
	"  JOIN invitetomedia.invites i ON i.tenant_id OPERATOR(pg_catalog.=) rt.tenant_id"
	"   AND i.invite_id OPERATOR(pg_catalog.=) rt.invite_id"
	"  JOIN invitetomedia.sites s ON s.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
	"   AND s.site_id OPERATOR(pg_catalog.=) i.site_id"
	" WHERE rt.tenant_id OPERATOR(pg_catalog.=) $4 AND rt.token_hash OPERATOR(pg_catalog.=) $1"
	"   AND i.site_id OPERATOR(pg_catalog.=) $5",
	5, {BYTEAOID, TEXTOID, TEXTOID, INT4OID, TEXTOID}, RET_NCOLS, retired_cols, NULL
};

/*
 * 1.1: a wrong email counts towards the lockout, under the invite's row
 * lock and only while every status before email_mismatch still does not
 * apply: one UPDATE whose WHERE clause holds them, as the use's does.
 * Wrong emails racing for one link queue on its row lock and each sees
 * the count the others committed (READ COMMITTED's recheck), so a link
 * never counts more than lockout_attempts of them: the one that would
 * pass the threshold updates nothing, and its diagnosis, run again, says
 * locked.  Only while the token is the one that was typed: a resend in
 * between reset the counter for the new token.
 */
static ItmPlan mismatch_plan = {
	"UPDATE invitetomedia.invites i"
	"   SET failed_attempts = i.failed_attempts OPERATOR(pg_catalog.+) 1"
	" WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	"   AND i.token_hash OPERATOR(pg_catalog.=) $2"
	"   AND i.revoked_at IS NULL"
	"   AND i.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()"
	"   AND (i.not_before IS NULL OR i.not_before OPERATOR(pg_catalog.<=) pg_catalog.now())"
	"   AND i.failed_attempts IS NOT NULL"
	"   AND (SELECT s.enabled FROM invitetomedia.settings s)"
	"   AND (SELECT " LOCKED_SQL " FROM invitetomedia.settings s) IS NOT TRUE",
	2, {INT8OID, BYTEAOID}, 0, NULL, NULL
};

static ItmPlan mismatch_plan_2_0 = {
	"UPDATE invitetomedia.invites i"
	"   SET failed_attempts = i.failed_attempts OPERATOR(pg_catalog.+) 1"
	" WHERE i.tenant_id OPERATOR(pg_catalog.=) $3 AND i.invite_id OPERATOR(pg_catalog.=) $1"
	"   AND i.token_hash OPERATOR(pg_catalog.=) $2"
	"   AND i.revoked_at IS NULL"
	"   AND i.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()"
	"   AND (i.not_before IS NULL OR i.not_before OPERATOR(pg_catalog.<=) pg_catalog.now())"
	"   AND i.failed_attempts IS NOT NULL"
	"   AND (SELECT s.enabled FROM" SITE_OF_LINK_2_0("i") ")"
	"   AND (SELECT " LOCKED_SQL " FROM" SITE_OF_LINK_2_0("i") ") IS NOT TRUE",
	3, {INT8OID, BYTEAOID, INT4OID}, 0, NULL, NULL
};

/*
 * Records a refused attempt (or a rejoin), which holds no lock on the invite
 * until here.  FOR KEY SHARE makes a concurrent invite_purge wait for this
 * transaction, so its cleanup trigger sees the record; a purge that already
 * committed leaves nothing to record.  It does not conflict with consumes.
 */
static ItmPlan record_plan = {
	"INSERT INTO invitetomedia.redemptions (invite_id, status, device_id, user_id)"
	" SELECT i.invite_id, $2, $3, $4 FROM invitetomedia.invites i"
	"  WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	"    FOR KEY SHARE",
	4, {INT8OID, TEXTOID, TEXTOID, TEXTOID}, 0, NULL, NULL
};

/* 2.0: the record of the tenant ($5) and the link's site, with a drawn id ($6) */
static ItmPlan record_plan_2_0 = {
	"INSERT INTO invitetomedia.redemptions"
	"  (tenant_id, site_id, redemption_id, invite_id, status, device_id, user_id)"
	" SELECT i.tenant_id, i.site_id, $6, i.invite_id, $2, $3, $4"
	"   FROM invitetomedia.invites i"
	"  WHERE i.tenant_id OPERATOR(pg_catalog.=) $5 AND i.invite_id OPERATOR(pg_catalog.=) $1"
	"    FOR KEY SHARE",
	6, {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID}, 0, NULL, NULL
};

enum
{
	CHK_ENABLED,
	CHK_REVOKED,
	CHK_EXPIRED,
	CHK_MAX_USES,
	CHK_USE_COUNT,
	CHK_MEDIA_ID,
	CHK_MEDIA_TITLE,
	CHK_ROLE,
	CHK_EXPIRES_AT,
	CHK_NOT_YET,
	CHK_LOCKED,
	CHK_OPENS_AT,
	CHK_NCOLS
};
static const ItmCol check_cols[CHK_NCOLS] = {
	[CHK_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},
	[CHK_REVOKED] = {"revoked", BOOLOID, false, "invites.revoked_at"},
	[CHK_EXPIRED] = {"expired", BOOLOID, false, "invites.expires_at"},
	[CHK_MAX_USES] = {"max_uses", INT4OID, false, "invites.max_uses"},
	[CHK_USE_COUNT] = {"use_count", INT4OID, false, "invites.use_count"},
	[CHK_MEDIA_ID] = {"media_id", TEXTOID, true, "invites.media_id"},
	[CHK_MEDIA_TITLE] = {"media_title", TEXTOID, true, "media.title"},
	[CHK_ROLE] = {"role", TEXTOID, true, "invites.role"},
	[CHK_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true, "invites.expires_at"},
	[CHK_NOT_YET] = {"not_yet", BOOLOID, false, "invites.not_before"},
	[CHK_LOCKED] = {"locked", BOOLOID, false, "invites.failed_attempts"},
	[CHK_OPENS_AT] = {"opens_at", TIMESTAMPTZOID, true, "invites.not_before"},
};
#define CHECK_SQL(COLS_1_1) \
	"SELECT s.enabled::pg_catalog.bool AS enabled,"			\
	"       i.revoked_at IS NOT NULL AS revoked,"				\
	"       i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired," \
	"       i.max_uses::pg_catalog.int4 AS max_uses,"			\
	"       i.use_count::pg_catalog.int4 AS use_count,"			\
	"       i.media_id::pg_catalog.text AS media_id,"			\
	"       m.title::pg_catalog.text AS media_title,"			\
	"       i.role::pg_catalog.text AS role,"					\
	"       i.expires_at::pg_catalog.timestamptz AS expires_at," \
	COLS_1_1													\
	"  FROM invitetomedia.invites i CROSS JOIN invitetomedia.settings s" \
	"  LEFT JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) i.media_id" \
	" WHERE i.token_hash OPERATOR(pg_catalog.=) $1"
#define CHECK_COLS_1_0 \
	"       false AS not_yet, false AS locked, NULL::pg_catalog.timestamptz AS opens_at"
#define CHECK_COLS_1_1 \
	DIAGNOSE_COLS_1_1 ","										\
	"       i.not_before::pg_catalog.timestamptz AS opens_at"
static ItmPlan check_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {CHECK_SQL(CHECK_COLS_1_0), 1, {BYTEAOID}, CHK_NCOLS, check_cols, NULL},
	[ITM_API_1_0_1] = {CHECK_SQL(CHECK_COLS_1_0), 1, {BYTEAOID}, CHK_NCOLS, check_cols, NULL},
	[ITM_API_1_1] = {CHECK_SQL(CHECK_COLS_1_1), 1, {BYTEAOID}, CHK_NCOLS, check_cols, NULL},
	/* 2.0: the link at its tenant ($4) and site ($5), the tenant's media */
	[ITM_API_2_0] = {
		"SELECT s.enabled::pg_catalog.bool AS enabled,"
		"       i.revoked_at IS NOT NULL AS revoked,"
		"       i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired,"
		"       i.max_uses::pg_catalog.int4 AS max_uses,"
		"       i.use_count::pg_catalog.int4 AS use_count,"
		"       i.media_id::pg_catalog.text AS media_id,"
		"       m.title::pg_catalog.text AS media_title,"
		"       i.role::pg_catalog.text AS role,"
		"       i.expires_at::pg_catalog.timestamptz AS expires_at,"
		CHECK_COLS_1_1
		"  FROM invitetomedia.invites i JOIN invitetomedia.sites s"
		"    ON s.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
		"   AND s.site_id OPERATOR(pg_catalog.=) i.site_id"
		"  LEFT JOIN invitetomedia.media m ON m.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
		"   AND m.media_id OPERATOR(pg_catalog.=) i.media_id"
		" WHERE i.tenant_id OPERATOR(pg_catalog.=) $4 AND i.token_hash OPERATOR(pg_catalog.=) $1"
		"   AND i.site_id OPERATOR(pg_catalog.=) $5",
		5, {BYTEAOID, TEXTOID, TEXTOID, INT4OID, TEXTOID}, CHK_NCOLS, check_cols, NULL
	},
};

/*
 * Locks the invite: a revoke and a consume of the same link queue up.  The
 * columns (RVK_*, itm_internal.h) are a guest link's revoke's too.
 */
const ItmCol itm_revoke_lookup_cols[RVK_NCOLS] = {
	[RVK_INVITED_BY] = {"invited_by", TEXTOID, true, "invites.invited_by"},
	[RVK_MEDIA_ID] = {"media_id", TEXTOID, true, "invites.media_id"},
	[RVK_REVOKED] = {"revoked", BOOLOID, false, "invites.revoked_at"},
	[RVK_ACTOR_FOUND] = {"actor_found", BOOLOID, false, "users.user_id"},
	[RVK_ACTOR_ROLE] = {"actor_role", TEXTOID, true, "users.role"},
};
static ItmPlan revoke_lookup_plan = {
	"SELECT i.invited_by::pg_catalog.text AS invited_by,"
	"       i.media_id::pg_catalog.text AS media_id,"
	"       i.revoked_at IS NOT NULL AS revoked,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       u.role::pg_catalog.text AS actor_role"
	"  FROM invitetomedia.invites i"
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	"   FOR UPDATE OF i",
	2, {INT8OID, TEXTOID},
	RVK_NCOLS, itm_revoke_lookup_cols, NULL
};

/* 2.0: the link of the tenant ($3) at the site ($4); the tenant's user */
static ItmPlan revoke_lookup_plan_2_0 = {
	"SELECT i.invited_by::pg_catalog.text AS invited_by,"
	"       i.media_id::pg_catalog.text AS media_id,"
	"       i.revoked_at IS NOT NULL AS revoked,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       u.role::pg_catalog.text AS actor_role"
	"  FROM invitetomedia.invites i"
	"  LEFT JOIN invitetomedia.users u ON u.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
	"   AND u.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE i.tenant_id OPERATOR(pg_catalog.=) $3 AND i.invite_id OPERATOR(pg_catalog.=) $1"
	"   AND i.site_id OPERATOR(pg_catalog.=) $4"
	"   FOR UPDATE OF i",
	4, {INT8OID, TEXTOID, INT4OID, TEXTOID},
	RVK_NCOLS, itm_revoke_lookup_cols, NULL
};

enum
{
	MAY_ALLOWED,
	MAY_NCOLS
};
static const ItmCol revoke_may_cols[MAY_NCOLS] = {
	[MAY_ALLOWED] = {"allowed", BOOLOID, true, "may_invite()"},
};
static ItmPlan revoke_may_plan = {
	"SELECT invitetomedia.may_invite($1, $2)::pg_catalog.bool AS allowed",
	2, {TEXTOID, TEXTOID},
	MAY_NCOLS, revoke_may_cols, NULL
};

/* 2.0: the rule of the site ($3) */
static ItmPlan revoke_may_plan_2_0 = {
	"SELECT invitetomedia.may_invite_at($3, $1, $2)::pg_catalog.bool AS allowed",
	3, {TEXTOID, TEXTOID, TEXTOID},
	MAY_NCOLS, revoke_may_cols, NULL
};

static ItmPlan revoke_plan = {
	"WITH r AS ("
	"  UPDATE invitetomedia.invites SET revoked_at = pg_catalog.now(), revoked_by = $2"
	"   WHERE invite_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL"
	"  RETURNING invite_id"
	")"
	" DELETE FROM invitetomedia.outbox o USING r"
	"  WHERE o.invite_id OPERATOR(pg_catalog.=) r.invite_id AND o.sent_at IS NULL",
	2, {INT8OID, TEXTOID}, 0, NULL, NULL
};

static ItmPlan revoke_plan_2_0 = {
	"WITH r AS ("
	"  UPDATE invitetomedia.invites SET revoked_at = pg_catalog.now(), revoked_by = $2"
	"   WHERE tenant_id OPERATOR(pg_catalog.=) $3 AND invite_id OPERATOR(pg_catalog.=) $1"
	"     AND revoked_at IS NULL"
	"  RETURNING tenant_id, invite_id"
	")"
	" DELETE FROM invitetomedia.outbox o USING r"
	"  WHERE o.tenant_id OPERATOR(pg_catalog.=) r.tenant_id"
	"    AND o.invite_id OPERATOR(pg_catalog.=) r.invite_id AND o.sent_at IS NULL",
	4, {INT8OID, TEXTOID, INT4OID, TEXTOID}, 0, NULL, NULL
};

static ItmPlan purge_plan = {
	"DELETE FROM invitetomedia.invites"
	" WHERE expires_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR revoked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR used_up_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
	1, {INTERVALOID}, 0, NULL, NULL
};

/* 1.1: guest links finish the same three ways (an unlimited one never runs out) */
static ItmPlan guest_purge_plan = {
	"DELETE FROM invitetomedia.guest_links"
	" WHERE expires_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR revoked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR used_up_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
	1, {INTERVALOID}, 0, NULL, NULL
};

/*
 * 2.0: the caller's tenant's ($2) links, on every site of the tenant: the
 * purge is maintenance of the tenant's data, not of one instance's.
 */
static ItmPlan purge_plan_2_0 = {
	"DELETE FROM invitetomedia.invites"
	" WHERE tenant_id OPERATOR(pg_catalog.=) $2"
	"   AND (expires_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR revoked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR used_up_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1))",
	2, {INTERVALOID, INT4OID}, 0, NULL, NULL
};

static ItmPlan guest_purge_plan_2_0 = {
	"DELETE FROM invitetomedia.guest_links"
	" WHERE tenant_id OPERATOR(pg_catalog.=) $2"
	"   AND (expires_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR revoked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR used_up_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1))",
	2, {INTERVALOID, INT4OID}, 0, NULL, NULL
};

/*---- invite_create ---------------------------------------------------------*/

/* The arguments of invite_create, checked on their own. */
typedef struct CreateArgs
{
	char	   *media_id;
	char	   *inviter_id;
	char	   *email;
	char	   *first_name;
	char	   *last_name;
	char	   *role;
	bool		send_email;
	ItmApi		api;
	bool		scheduled;		/* 1.1: not_before given */
	Datum		not_before;
	ItmSite		site;			/* 2.0: the site it is created on */
} CreateArgs;

/* What invite_create read: settings, template, media, inviter, policies. */
typedef struct CreateContext
{
	bool		enabled;
	int32		link_duration;
	int32		link_reusability;
	char	   *base_url;
	char	   *template_name;	/* NULL: invites by email are disabled */
	bool		template_found;
	char	   *subject;
	char	   *body;
	bool		media_found;
	char	   *media_type;
	char	   *media_title;
	bool		inviter_found;
	char	   *inviter_name;
	bool		may_invite;
	bool		domain_allowed;
	int32		invites_per_hour;	/* 0: no limit */
} CreateContext;

/* The new link. */
typedef struct CreatedInvite
{
	int64		invite_id;
	char		token[ITM_TOKEN_LEN + 1];
	char	   *url;
	Datum		expires_at;
	char	   *expires_text;
} CreatedInvite;

/* Each argument's syntax (22023), after the NULL checks: nothing is read yet. */
static void
ReadCreateArgs(FunctionCallInfo fcinfo, CreateArgs *a)
{
	a->media_id = ItmIdArg(fcinfo, 0, "media_id");
	a->inviter_id = ItmIdArg(fcinfo, 1, "inviter_id");
	a->email = ItmEmailArg(fcinfo, 2, "email");
	a->first_name = ItmNameArg(fcinfo, 3, "first_name", ITM_NAME_MAX_CHARS, NULL);
	a->last_name = ItmNameArg(fcinfo, 4, "last_name", ITM_NAME_MAX_CHARS, NULL);
	a->role = ItmTextArg(fcinfo, 5, "role");
	a->send_email = PG_GETARG_BOOL(6);
	a->scheduled = a->api >= ITM_API_1_1 && PG_NARGS() > 7 && !PG_ARGISNULL(7);
	if (a->scheduled)
	{
		TimestampTz nb = PG_GETARG_TIMESTAMPTZ(7);

		if (TIMESTAMP_NOT_FINITE(nb))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("not_before must be a finite time"),
					 errhint("Pass the time the link opens, or NULL for a link that opens now.")));
		a->not_before = TimestampTzGetDatum(nb);
	}
	if (strcmp(a->role, "viewer") != 0 && strcmp(a->role, "moderator") != 0 &&
		strcmp(a->role, "speaker") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid role \"%s\"", ItmClip(a->role, 64)),
				 errhint("The role is viewer, moderator or speaker.")));
}

/* One statement reads everything the rules need. */
static void
ReadCreateContext(const CreateArgs *a, CreateContext *c)
{
	ItmPlan    *p = &create_context_plan[a->api];
	Datum		args[5];

	args[0] = CStringGetTextDatum(a->media_id);
	args[1] = CStringGetTextDatum(a->inviter_id);
	args[2] = CStringGetTextDatum(a->email);
	if (a->api == ITM_API_2_0)
	{
		args[3] = CStringGetTextDatum(a->site.site_id);
		args[4] = Int32GetDatum(a->site.tenant_id);
	}
	ItmRunPlan(p, args, NULL, false, SPI_OK_SELECT);
	if (a->api == ITM_API_2_0)
	{
		/* the site was read a moment ago in this transaction: a DBA dropped it */
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("site \"%s\" does not exist", a->site.site_id)));
	}
	else
		ItmRequireSettingsRow(SPI_processed);

	c->enabled = ItmColBool(p, CTX_ENABLED);
	c->link_duration = ItmColInt4(p, CTX_LINK_DURATION);
	c->link_reusability = ItmColInt4(p, CTX_LINK_REUSABILITY);
	c->base_url = ItmColText(p, CTX_LINK_BASE_URL);
	c->template_name = ItmColText(p, CTX_TEMPLATE_NAME);
	c->template_found = ItmColBool(p, CTX_TEMPLATE_FOUND);
	c->subject = ItmColText(p, CTX_SUBJECT);
	c->body = ItmColText(p, CTX_BODY);
	c->media_found = ItmColBool(p, CTX_MEDIA_FOUND);
	c->media_type = ItmColText(p, CTX_MEDIA_TYPE);
	c->media_title = ItmColText(p, CTX_MEDIA_TITLE);
	c->inviter_found = ItmColBool(p, CTX_INVITER_FOUND);
	c->inviter_name = ItmColText(p, CTX_INVITER_NAME);
	c->may_invite = ItmColBool(p, CTX_MAY_INVITE);
	c->domain_allowed = ItmColBool(p, CTX_DOMAIN_ALLOWED);
	c->invites_per_hour = ItmColInt4(p, CTX_INVITES_PER_HOUR);
}

/*
 * settings.invites_per_hour (1.1): refuses with 53400 a creation beyond the
 * limit by this actor in the last hour, invite and guest links together.
 * Creations by one actor queue on the actor's row (see lock_actor_plan).
 */
void
ItmCheckRateLimit(const char *actor_id, int32 per_hour, bool with_resends,
				  const ItmSite *site)
{
	ItmPlan    *p = site ? &rate_count_plan_2_0 :
		with_resends ? &rate_count_plan_1_1_1 : &rate_count_plan;
	Datum		args[2];
	int64		created;

	if (per_hour <= 0)
		return;
	args[0] = CStringGetTextDatum(actor_id);
	args[1] = site ? Int32GetDatum(site->tenant_id) : (Datum) 0;
	ItmRunPlan(site ? &lock_actor_plan_2_0 : &lock_actor_plan, args, NULL, false, SPI_OK_SELECT);
	ItmRunPlanAfterLock(p, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the rate count returned %llu rows",
			 (unsigned long long) SPI_processed);
	created = ItmColInt8(p, RATE_CREATED);
	if (created >= per_hour)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("user \"%s\" has reached the limit of %d new links per hour",
						ItmClip(actor_id, 100), per_hour),
				 with_resends ?
				 errdetail("%lld invite and guest links were created or mailed again by this user in the last hour; settings.invites_per_hour allows %d.",
						   (long long) created, per_hour) :
				 errdetail("%lld invite and guest links were created by this user in the last hour; settings.invites_per_hour allows %d.",
						   (long long) created, per_hour),
				 errhint("Try again later, or ask an administrator to raise settings.invites_per_hour.")));
}

static void CheckTemplate(const CreateContext *c);

/* The rules, in the documented order (README, invite_create). */
static void
CheckCreateRules(const CreateArgs *a, const CreateContext *c)
{
	ItmRequireEnabled(c->enabled);
	if (!c->media_found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("media \"%s\" does not exist", ItmClip(a->media_id, 100))));
	if (!c->inviter_found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", ItmClip(a->inviter_id, 100)),
				 errdetail("The inviter must be a user in invitetomedia.users.")));
	if (c->media_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.media.media_type is NULL for media \"%s\"",
						ItmClip(a->media_id, 100)),
				 errhint("Set the media's type.")));

	if (!ItmRoleAllowedForMedia(a->role, c->media_type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" is not allowed for media of type \"%s\"",
						a->role, ItmClip(c->media_type, 64)),
				 errdetail("On-demand media (video, audio, image, document, quiz) take viewer only; live media (webcast, simulive, diy_live, room) take viewer, moderator or speaker.")));

	/* the policies */
	if (!c->may_invite)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not invite to media \"%s\"",
						ItmClip(a->inviter_id, 100), ItmClip(a->media_id, 100)),
				 errdetail("Inviters are the media's owner, co-owners, co-editors and co-publishers who also pass settings.allowed_users_roles; see invitetomedia.may_invite().")));
	if (!c->domain_allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the domain of \"%s\" is restricted for new users", a->email),
				 errdetail("No user has this address, and its domain is listed, or lies under one listed, in settings.restrict_new_user_domains."),
				 errhint("Invite the person's existing account, or ask an administrator to change restrict_new_user_domains.")));

	/* the template, when the link goes out by email */
	if (a->send_email)
		CheckTemplate(c);
}

/* The invite email can be rendered: a template is chosen, exists, is whole. */
static void
CheckTemplate(const CreateContext *c)
{
	if (c->template_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invites by email are disabled"),
				 errdetail("settings.invite_email_template is NULL."),
				 errhint("Create the link without send_email, or ask an administrator to choose an email template.")));
	if (!c->template_found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the invite email template \"%s\" does not exist",
						ItmClip(c->template_name, 100)),
				 errdetail("settings.invite_email_template names a template that is not in invitetomedia.email_templates."),
				 errhint("Create the template, or set settings.invite_email_template to an existing one (or to NULL to disable invites by email).")));
	if (c->subject == NULL || c->body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the invite email template \"%s\" has no %s",
						ItmClip(c->template_name, 100), c->subject == NULL ? "subject" : "body"),
				 errdetail("settings.invite_email_template names a template whose subject or body is NULL."),
				 errhint("Give the template a subject and a body with {URL}.")));
}


/* A token from the strong random source; only its hash is stored. */
static void
InsertInvite(const CreateArgs *a, const CreateContext *c, CreatedInvite *inv)
{
	ItmPlan    *p = a->api == ITM_API_2_0 ? &create_insert_plan_2_0 :
		a->api == ITM_API_1_1 ? &create_insert_plan_1_1 : &create_insert_plan;
	Datum		args[13];
	char		nulls[13] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', 'n', ' ', ' ', ' '};
	int			draws;

	ItmNewToken(ITM_TOKEN_PREFIX, inv->token);
	inv->url = psprintf("%s%s", c->base_url, inv->token);

	args[0] = PointerGetDatum(ItmTokenHash(inv->token, ITM_TOKEN_LEN));
	args[1] = CStringGetTextDatum(a->media_id);
	args[2] = CStringGetTextDatum(a->role);
	args[3] = CStringGetTextDatum(a->email);
	args[4] = CStringGetTextDatum(a->first_name);
	args[5] = CStringGetTextDatum(a->last_name);
	args[6] = CStringGetTextDatum(a->inviter_id);
	args[7] = Int32GetDatum(c->link_duration);
	args[8] = Int32GetDatum(c->link_reusability);
	args[9] = (Datum) 0;
	if (a->scheduled)
	{
		args[9] = a->not_before;
		nulls[9] = ' ';
	}
	/*
	 * 1.1: through the table access method where it can (itm_direct.c).  Its
	 * whitelist holds 1.1.1's tables: a 2.0 database takes the statement.
	 */
	if (a->api == ITM_API_1_1)
	{
		TimestampTz expires_at;

		if (ItmDirectInsertInvite(DatumGetByteaPP(args[0]), a->media_id, a->role, a->email,
								  a->first_name, a->last_name, a->inviter_id,
								  c->link_duration, c->link_reusability,
								  a->scheduled, a->scheduled ? DatumGetTimestampTz(a->not_before) : 0,
								  &inv->invite_id, &expires_at))
		{
			Datum		utc;

			inv->expires_at = TimestampTzGetDatum(expires_at);
			/* the statement's to_char(expires_at AT TIME ZONE 'UTC', ...) */
			utc = DirectFunctionCall2(timestamptz_zone, CStringGetTextDatum("UTC"),
									  inv->expires_at);
			inv->expires_text =
				TextDatumGetCString(DirectFunctionCall2Coll(timestamp_to_char,
															DEFAULT_COLLATION_OID, utc,
															CStringGetTextDatum("YYYY-MM-DD HH24:MI \"UTC\"")));
			return;
		}
	}
	if (a->api == ITM_API_2_0)
	{
		args[10] = Int32GetDatum(a->site.tenant_id);
		args[11] = CStringGetTextDatum(a->site.site_id);
	}
	for (draws = 0;; draws++)
	{
		if (a->api == ITM_API_2_0)
			args[12] = Int64GetDatum(ItmRandomId());
		ItmRunPlan(p, args, nulls, false, SPI_OK_INSERT_RETURNING);
		/* 2.0: nothing inserted is a duplicate id (ON CONFLICT): draw again */
		if (SPI_processed == 0 && a->api == ITM_API_2_0 && draws < 3)
			continue;
		break;
	}
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the invite insert returned %llu rows",
			 (unsigned long long) SPI_processed);
	inv->invite_id = ItmColInt8(p, INS_INVITE_ID);
	inv->expires_at = ItmColDatum(p, INS_EXPIRES_AT, &(bool) {0});
	inv->expires_text = ItmColText(p, INS_EXPIRES_TEXT);
}

/* The invite's email, rendered and queued (itm_mail.c) in this transaction. */
static void
QueueInviteEmail(const CreateArgs *a, const CreateContext *c, const CreatedInvite *inv)
{
	const char *values[ITM_PH_COUNT];

	values[ITM_PH_URL] = inv->url;
	values[ITM_PH_FIRST_NAME] = a->first_name;
	values[ITM_PH_LAST_NAME] = a->last_name;
	values[ITM_PH_EMAIL] = a->email;
	values[ITM_PH_MEDIA_TITLE] = c->media_title ? c->media_title : "";
	values[ITM_PH_ROLE] = a->role;
	values[ITM_PH_EXPIRES_AT] = inv->expires_text;
	values[ITM_PH_INVITER_NAME] = c->inviter_name ? c->inviter_name : "";

	(void) ItmQueueMail(a->api == ITM_API_2_0 ? &a->site : NULL, inv->invite_id, a->email,
						psprintf("%s %s", a->first_name, a->last_name),
						ItmRenderSubject(c->subject, values), ItmRender(c->body, values));
}

static Datum
CreateImpl(FunctionCallInfo fcinfo, ItmApi api, bool with_resends, const char *site_id)
{
	static const char *const argnames[] = {
		"media_id", "inviter_id", "email", "first_name", "last_name", "role", "send_email"
	};
	CreateArgs	a;
	CreateContext c;
	CreatedInvite inv;
	Datum		result[5];
	bool		result_nulls[5] = {false, false, false, false, false};
	int			i;

	for (i = 0; i < (int) lengthof(argnames); i++)
		ItmRequireArg(fcinfo, i, argnames[i]);
	PreventCommandIfReadOnly("invite_create()");
	ItmMaterializeResult(fcinfo);

	/* all further allocations live until SPI_finish: one call's worth */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	memset(&a, 0, sizeof(a));
	a.api = api;
	ReadCreateArgs(fcinfo, &a);
	if (api == ITM_API_2_0)
		ItmResolveSite(site_id, &a.site);
	ReadCreateContext(&a, &c);
	CheckCreateRules(&a, &c);
	ItmCheckRateLimit(a.inviter_id, c.invites_per_hour, with_resends,
					  a.api == ITM_API_2_0 ? &a.site : NULL);
	InsertInvite(&a, &c, &inv);
	if (a.send_email)
		QueueInviteEmail(&a, &c, &inv);

	result[0] = Int64GetDatum(inv.invite_id);
	result[1] = CStringGetTextDatum(inv.token);
	result[2] = CStringGetTextDatum(inv.url);
	result[3] = inv.expires_at;
	result[4] = Int32GetDatum(c.link_reusability);
	ItmPutResultRow(fcinfo, result, result_nulls);

	explicit_bzero(inv.token, sizeof(inv.token));
	SPI_finish();
	return (Datum) 0;
}

/* 1.0 and 1.0.1 */
PG_FUNCTION_INFO_V1(invite_create);
Datum
invite_create(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_1_0_1, false, NULL);
}

/* 1.1: not_before, the rate limit */
PG_FUNCTION_INFO_V1(invite_create_1_1);
Datum
invite_create_1_1(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_1_1, false, NULL);
}

/* 1.1.1: mailed resends count towards the rate limit */
PG_FUNCTION_INFO_V1(invite_create_1_1_1);
Datum
invite_create_1_1_1(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_1_1, true, NULL);
}

/* 2.0: the 1.1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(invite_create_2_0);
Datum
invite_create_2_0(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_2_0, true, NULL);
}

/* 2.0: invite_create_at(site_id, ...1.1.1's arguments) */
PG_FUNCTION_INFO_V1(invite_create_at);
Datum
invite_create_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return CreateImpl(shifted, ITM_API_2_0, true, site_id);
}

/*---- invite_consume --------------------------------------------------------*/

typedef enum ConsumeStatus
{
	CS_NOT_FOUND,
	CS_DISABLED,
	CS_REVOKED,
	CS_EXPIRED,
	CS_NOT_YET,
	CS_LOCKED,
	CS_EMAIL_MISMATCH,
	CS_REJOIN,
	CS_EXHAUSTED,
	CS_OK
} ConsumeStatus;

static const char *const consume_status_names[] = {
	"not_found", "disabled", "revoked", "expired", "not_yet", "locked",
	"email_mismatch", "rejoin", "exhausted", "ok"
};
StaticAssertDecl(lengthof(consume_status_names) == CS_OK + 1,
				 "one name per consume status");

/* The result row's columns (invite_consume's RETURNS TABLE). */
enum
{
	CR_STATUS,
	CR_INVITE_ID,
	CR_MEDIA_ID,
	CR_ROLE,
	CR_USER_ID,
	CR_FIRST_NAME,
	CR_LAST_NAME,
	CR_USES_LEFT,
	CR_EXPIRES_AT,
	CR_NCOLS
};

/* One call: its arguments as the queries take them, and its answer. */
typedef struct ConsumeCall
{
	ItmApi		api;
	char	   *email_key;		/* typed email, trimmed, ASCII-lower-cased */
	/*
	 * token hash, email_key, device_id; 2.0: tenant, site, a drawn id, and
	 * the use's event_seq where the relay announces it (else NULL)
	 */
	Datum		args[7];
	char		nulls[7];
	bool		relay;
	ItmSite		site;			/* 2.0 */
	ConsumeStatus status;
	int64		invite_id;		/* when the link is known */
	char	   *user_id;		/* for the record of a rejoin */
	Datum		result[CR_NCOLS];
	bool		result_nulls[CR_NCOLS];
} ConsumeCall;

/* uses_left as returned: NULL for unlimited links */
static void
SetUsesLeft(Datum *result, bool *nulls, int col, int32 max_uses, int32 use_count)
{
	nulls[col] = (max_uses == -1);
	if (max_uses != -1)
		result[col] = Int32GetDatum(max_uses - use_count);
}

/*
 * Reads the link with consume_diagnose_plan and works out its status, the
 * first that applies in the documented order.  For a rejoin it fills the
 * result row.
 */
static void
DiagnoseConsume(ConsumeCall *call)
{
	ItmPlan    *p = &consume_diagnose_plan[call->api];
	int32		max_uses;
	int32		use_count;

	ItmRunPlan(p, call->args, call->nulls, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		call->status = CS_NOT_FOUND;
		/* 1.1: a token replaced by invite_resend */
		if (call->api >= ITM_API_1_1)
		{
			ItmPlan    *r = call->api == ITM_API_2_0 ? &retired_plan_2_0 : &retired_plan;

			ItmRunPlan(r, call->args, call->nulls, false, SPI_OK_SELECT);
			if (SPI_processed == 1)
			{
				/* the documented order: disabled comes first */
				call->status = ItmColBool(r, RET_ENABLED) ? CS_REVOKED : CS_DISABLED;
				call->invite_id = ItmColInt8(r, RET_INVITE_ID);
			}
		}
		return;
	}
	call->invite_id = ItmColInt8(p, DX_INVITE_ID);
	max_uses = ItmColInt4(p, DX_MAX_USES);
	use_count = ItmColInt4(p, DX_USE_COUNT);
	if (!ItmColBool(p, DX_ENABLED))
		call->status = CS_DISABLED;
	else if (ItmColBool(p, DX_REVOKED))
		call->status = CS_REVOKED;
	else if (ItmColBool(p, DX_EXPIRED))
		call->status = CS_EXPIRED;
	else if (ItmColBool(p, DX_NOT_YET))
		call->status = CS_NOT_YET;
	else if (ItmColBool(p, DX_LOCKED))
		call->status = CS_LOCKED;
	else if (!ItmColBool(p, DX_EMAIL_MATCHES))
		call->status = CS_EMAIL_MISMATCH;
	else if (ItmColBool(p, DX_DEVICE_SEEN))
		call->status = CS_REJOIN;
	else if (max_uses != -1 && use_count >= max_uses)
		call->status = CS_EXHAUSTED;
	else
		call->status = CS_OK;

	if (call->status == CS_REJOIN)
	{
		call->user_id = ItmColText(p, DX_USER_ID);
		call->result[CR_INVITE_ID] = Int64GetDatum(call->invite_id);
		call->result_nulls[CR_INVITE_ID] = false;
		ItmColToResult(p, DX_MEDIA_ID, call->result, call->result_nulls, CR_MEDIA_ID);
		ItmColToResult(p, DX_ROLE, call->result, call->result_nulls, CR_ROLE);
		ItmColToResult(p, DX_USER_ID, call->result, call->result_nulls, CR_USER_ID);
		ItmColToResult(p, DX_FIRST_NAME, call->result, call->result_nulls, CR_FIRST_NAME);
		ItmColToResult(p, DX_LAST_NAME, call->result, call->result_nulls, CR_LAST_NAME);
		ItmColToResult(p, DX_EXPIRES_AT, call->result, call->result_nulls, CR_EXPIRES_AT);
		SetUsesLeft(call->result, call->result_nulls, CR_USES_LEFT, max_uses, use_count);
	}
}

/*
 * The first use by an email no user has creates the user; returns the
 * user_id and puts it on the redemption record.
 */
static char *
EnsureInviteeUser(ConsumeCall *call, int64 redemption_id, Datum invite_email,
				  Datum first_name, bool first_name_null,
				  Datum last_name, bool last_name_null)
{
	char	   *user_id = ItmEnsureUser(call->api, call->site.tenant_id, call->email_key,
										invite_email, first_name, first_name_null,
										last_name, last_name_null);
	Datum		args[3];

	args[0] = Int64GetDatum(redemption_id);
	args[1] = CStringGetTextDatum(user_id);
	args[2] = Int32GetDatum(call->site.tenant_id);
	ItmRunPlan(call->api == ITM_API_2_0 ? &set_redemption_user_plan_2_0 : &set_redemption_user_plan,
			   args, NULL, false, SPI_OK_UPDATE);
	return user_id;
}

/*
 * The user an email names, created (role anonymous, with the names given)
 * if no user has it: an invitee's first use, a guest's first join.
 */
char *
ItmEnsureUser(ItmApi api, int32 tenant_id, const char *email_key, Datum email,
			  Datum first_name, bool first_name_null,
			  Datum last_name, bool last_name_null)
{
	ItmPlan    *p = api == ITM_API_2_0 ? &create_user_plan_2_0 : &create_user_plan;
	ItmPlan    *f = &find_user_plan[api];
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	args[0] = CStringGetTextDatum(email_key);
	args[1] = email;
	args[2] = first_name;
	args[3] = last_name;
	if (first_name_null)
		nulls[2] = 'n';
	if (last_name_null)
		nulls[3] = 'n';
	args[4] = Int32GetDatum(tenant_id);	/* 2.0 */
	ItmRunPlan(p, args, nulls, false, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 1)
		return ItmColText(p, NEWUSER_USER_ID);

	/*
	 * Not created: another session created it concurrently (take it), or
	 * another address owns this user_id.
	 */
	ItmRunPlan(f, args, nulls, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("could not create a user for \"%s\"", email_key),
				 errdetail("The user_id \"%s\" belongs to a user with another email address.",
						   email_key),
				 errhint("Give that user this email address, or change its user_id.")));
	return ItmColText(f, NEWUSER_USER_ID);
}

/*
 * A use taken through the table access method: writes its record (with
 * the invitee's user_id, creating the user on a first use) and fills the
 * result row, as the consume statement's answer would.
 */
static void
RecordDirectUse(ConsumeCall *call, const ItmDirectSite *site, const ItmDirectUse *use)
{
	ItmPlan    *p = site ? &direct_record_plan_2_0 : &direct_record_plan;
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	char	   *user_id;
	int64		redemption_id;

	call->status = CS_OK;
	call->invite_id = use->invite_id;
	/* 2.0: the drawn id ($6) and the relay's event_seq ($7), as TakeUse drew them */
	if (!ItmDirectRecordUse(use->invite_id, call->email_key,
							call->args[2], call->nulls[2] == 'n',
							site, DatumGetInt64(call->args[5]),
							call->args[6], call->nulls[6] == 'n',
							&redemption_id, &user_id))
	{
		args[0] = Int64GetDatum(use->invite_id);
		args[1] = call->args[1];
		args[2] = call->args[2];
		nulls[2] = call->nulls[2];
		args[3] = call->args[3];
		args[4] = call->args[4];
		args[5] = call->args[5];
		args[6] = call->args[6];
		nulls[6] = call->nulls[6];
		ItmDirectUseDone();
		ItmRunPlan(p, args, nulls, false, SPI_OK_INSERT_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "invitetomedia: the record of a use was not written");
		user_id = ItmColText(p, DREC_USER_ID);
		redemption_id = ItmColInt8(p, DREC_REDEMPTION_ID);
	}
	if (user_id == NULL)
		user_id = EnsureInviteeUser(call, redemption_id, use->email,
									use->first_name, use->first_name_null,
									use->last_name, use->last_name_null);

	call->result[CR_INVITE_ID] = Int64GetDatum(use->invite_id);
	call->result_nulls[CR_INVITE_ID] = false;
	call->result[CR_MEDIA_ID] = use->media_id;
	call->result_nulls[CR_MEDIA_ID] = use->media_id_null;
	call->result[CR_ROLE] = use->role;
	call->result_nulls[CR_ROLE] = use->role_null;
	call->result[CR_FIRST_NAME] = use->first_name;
	call->result_nulls[CR_FIRST_NAME] = use->first_name_null;
	call->result[CR_LAST_NAME] = use->last_name;
	call->result_nulls[CR_LAST_NAME] = use->last_name_null;
	call->result[CR_EXPIRES_AT] = TimestampTzGetDatum(use->expires_at);
	call->result_nulls[CR_EXPIRES_AT] = false;
	SetUsesLeft(call->result, call->result_nulls, CR_USES_LEFT, use->max_uses, use->use_count);
	call->result[CR_USER_ID] = CStringGetTextDatum(user_id);
	call->result_nulls[CR_USER_ID] = false;
}

/*
 * Takes a use with the one UPDATE that holds every condition; true if it
 * did (and fills the result row).  1.1 takes it through the table access
 * method where it can (itm_direct.c): the same conditions, the same lock.
 */
static bool
TakeUse(ConsumeCall *call)
{
	ItmPlan    *p = &consume_plan[call->api];
	char	   *user_id;
	int64		redemption_id;
	bool		isnull;
	Datum		email;
	Datum		first_name;
	Datum		last_name;
	bool		first_name_null;
	bool		last_name_null;
	ItmDirectSite site;

	if (call->api == ITM_API_2_0)
	{
		call->args[5] = Int64GetDatum(ItmRandomId());
		/*
		 * The relay's counter, drawn here rather than in the statement (a
		 * CASE there cost every use a subquery scan, relay or not: bench):
		 * after the xid, as the relay's bound needs (itm_relay.c).  A use
		 * neither path takes leaves a gap, which the relay skips.
		 */
		call->nulls[6] = 'n';
		if (call->relay)
		{
			Oid			seq = get_relname_relid("redemptions_event_seq",
												get_namespace_oid("invitetomedia", false));

			if (!OidIsValid(seq))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("invitetomedia.redemptions_event_seq does not exist"),
						 errhint("The event relay needs it: restore it, or remove this database from invitetomedia.relay_databases.")));
			(void) GetTopTransactionId();
			call->args[6] = DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seq));
			call->nulls[6] = ' ';
		}
	}

	/*
	 * 1.1 and 2.0 take the use through the table access method where they
	 * can (itm_direct.c): the same conditions, the same lock, the same
	 * record; 2.0 finds the link by its tenant and hash, at its site.
	 */
	if (call->api >= ITM_API_1_1)
	{
		ItmDirectUse use;
		const ItmDirectSite *where = NULL;

		if (call->api == ITM_API_2_0)
		{
			site.tenant_id = call->site.tenant_id;
			site.site_id = call->site.site_id;
			where = &site;
		}
		switch (ItmDirectTakeUse(DatumGetByteaPP(call->args[0]), call->email_key, where, &use))
		{
			case ITM_DIRECT_TAKEN:
				RecordDirectUse(call, where, &use);
				return true;
			case ITM_DIRECT_REFUSED:
				return false;
			case ITM_DIRECT_UNSUPPORTED:
				break;			/* the statement decides */
		}
	}

	ItmRunPlan(p, call->args, call->nulls, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;

	call->status = CS_OK;
	call->invite_id = ItmColInt8(p, USE_INVITE_ID);
	call->result[CR_INVITE_ID] = Int64GetDatum(call->invite_id);
	call->result_nulls[CR_INVITE_ID] = false;
	ItmColToResult(p, USE_MEDIA_ID, call->result, call->result_nulls, CR_MEDIA_ID);
	ItmColToResult(p, USE_ROLE, call->result, call->result_nulls, CR_ROLE);
	ItmColToResult(p, USE_FIRST_NAME, call->result, call->result_nulls, CR_FIRST_NAME);
	ItmColToResult(p, USE_LAST_NAME, call->result, call->result_nulls, CR_LAST_NAME);
	ItmColToResult(p, USE_EXPIRES_AT, call->result, call->result_nulls, CR_EXPIRES_AT);
	SetUsesLeft(call->result, call->result_nulls, CR_USES_LEFT,
				ItmColInt4(p, USE_MAX_USES), ItmColInt4(p, USE_USE_COUNT));

	user_id = ItmColText(p, USE_USER_ID);
	if (user_id == NULL)
	{
		redemption_id = ItmColInt8(p, USE_REDEMPTION_ID);
		email = ItmColDatum(p, USE_EMAIL, &isnull);
		first_name = ItmColDatum(p, USE_FIRST_NAME, &first_name_null);
		last_name = ItmColDatum(p, USE_LAST_NAME, &last_name_null);
		user_id = EnsureInviteeUser(call, redemption_id, email,
									first_name, first_name_null,
									last_name, last_name_null);
	}
	call->result[CR_USER_ID] = CStringGetTextDatum(user_id);
	call->result_nulls[CR_USER_ID] = false;
	return true;
}

/*
 * 1.1: counts a wrong email towards the lockout (mismatch_plan, under the
 * invite's row lock); false if it could not, because the link changed
 * since its diagnosis (another wrong email locked it, a revoke or a resend
 * committed): the caller diagnoses again.
 */
static bool
CountMismatch(ConsumeCall *call)
{
	Datum		margs[3];

	margs[0] = Int64GetDatum(call->invite_id);
	margs[1] = call->args[0];
	margs[2] = Int32GetDatum(call->site.tenant_id);
	ItmRunPlan(call->api == ITM_API_2_0 ? &mismatch_plan_2_0 : &mismatch_plan,
			   margs, NULL, false, SPI_OK_UPDATE);
	return SPI_processed == 1;
}

/* Every attempt on a known link that took no use is recorded. */
static void
RecordAttempt(ConsumeCall *call)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	args[0] = Int64GetDatum(call->invite_id);
	args[1] = CStringGetTextDatum(consume_status_names[call->status]);
	if (call->api == ITM_API_2_0)
	{
		args[4] = Int32GetDatum(call->site.tenant_id);
		args[5] = Int64GetDatum(ItmRandomId());
	}
	args[2] = call->args[2];
	nulls[2] = call->nulls[2];
	if (call->user_id)
		args[3] = CStringGetTextDatum(call->user_id);
	else
		nulls[3] = 'n';
	ItmRunPlan(call->api == ITM_API_2_0 ? &record_plan_2_0 : &record_plan,
			   args, nulls, false, SPI_OK_INSERT);
}

static Datum
ConsumeImpl(FunctionCallInfo fcinfo, ItmApi api, const char *site_id)
{
	ConsumeCall call;
	text	   *token;
	bool		has_device;
	bool		relay = false;
	int			attempt;
	int			i;

	ItmRequireArg(fcinfo, 0, "token");
	ItmRequireArg(fcinfo, 1, "email");
	ItmMaterializeResult(fcinfo);
	memset(&call, 0, sizeof(call));
	call.api = api;
	call.status = CS_NOT_FOUND;
	for (i = 0; i < CR_NCOLS; i++)
		call.result_nulls[i] = true;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* 2.0: the site first (a site of another tenant does not exist) */
	if (api == ITM_API_2_0)
	{
		ItmResolveSite(site_id, &call.site);
		call.args[3] = Int32GetDatum(call.site.tenant_id);
		call.args[4] = CStringGetTextDatum(call.site.site_id);
	}
	has_device = !PG_ARGISNULL(2);
	memset(call.nulls, ' ', sizeof(call.nulls));
	if (has_device)
		call.args[2] = CStringGetTextDatum(ItmIdArg(fcinfo, 2, "device_id"));
	else
		call.nulls[2] = 'n';

	/* a malformed or mistyped token (bad checksum): no table is read */
	token = PG_GETARG_TEXT_PP(0);
	if (!itm_token_valid(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)))
		goto done;

	/* from here on it writes: refuse clearly on a standby */
	PreventCommandIfReadOnly("invite_consume()");
	/*
	 * 1.1: who sends the accepted event; asked before the record's id is
	 * drawn.  The use's UPDATE comes before its record in the same
	 * statement, so the xid comes before the id, as the relay needs.
	 */
	if (api >= ITM_API_1_1)
		relay = ItmRelayAnnounces();

	call.relay = relay;
	call.email_key = ItmEmailKey(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	call.args[0] = PointerGetDatum(ItmTokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));
	call.args[1] = CStringGetTextDatum(call.email_key);

	/*
	 * A device that already redeemed this link rejoins without taking a
	 * use.  The look for its earlier use comes after the row lock, in a
	 * statement of its own, so that it sees a racing use by the same device
	 * that committed while this one waited (see the file's header).
	 */
	if (has_device)
	{
		ItmRunPlan(api == ITM_API_2_0 ? &lock_invite_plan_2_0 : &lock_invite_plan,
				   call.args, call.nulls, false, SPI_OK_SELECT);
		DiagnoseConsume(&call);
		if (call.status == CS_EMAIL_MISMATCH && api >= ITM_API_1_1 &&
			!CountMismatch(&call))
			call.status = CS_OK;	/* the link changed: the loop looks again */
		if (call.status != CS_OK)
			goto refused;
	}

	/*
	 * Normally one round: the UPDATE takes a use or the diagnosis says why
	 * not.  A second round is needed only if the row changed in between in a
	 * way that makes a use possible again (a concurrent consume rolled back).
	 */
	for (attempt = 0; attempt < 3; attempt++)
	{
		if (TakeUse(&call))
			goto done;
		DiagnoseConsume(&call);
		/* 1.1: a wrong email counts, or the link changed: look again */
		if (call.status == CS_EMAIL_MISMATCH && api >= ITM_API_1_1 &&
			!CountMismatch(&call))
			continue;
		if (call.status != CS_OK)
			goto refused;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not consume the invite because of concurrent updates"),
			 errhint("Try again.")));

refused:
	if (call.status != CS_NOT_FOUND)
		RecordAttempt(&call);

done:
	/* 1.1: tell the application (any role may LISTEN: the id only) */
	if (call.status == CS_OK && api >= ITM_API_1_1 && !relay)
	{
		if (api == ITM_API_2_0)
			ItmNotifyTenantEvent(ITM_EVENT_INVITE_ACCEPTED, call.site.tenant_id, call.invite_id);
		else
			ItmNotifyEvent(ITM_EVENT_INVITE_ACCEPTED, call.invite_id);
	}
	call.result[CR_STATUS] = CStringGetTextDatum(consume_status_names[call.status]);
	call.result_nulls[CR_STATUS] = false;
	ItmPutResultRow(fcinfo, call.result, call.result_nulls);
	SPI_finish();
	return (Datum) 0;
}

/* The 1.0 SQL function: a 1.0 database's users index is on lower(email). */
PG_FUNCTION_INFO_V1(invite_consume);
Datum
invite_consume(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_1_0, NULL);
}

PG_FUNCTION_INFO_V1(invite_consume_1_0_1);
Datum
invite_consume_1_0_1(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_1_0_1, NULL);
}

/* 1.1: scheduled links, lockout, retired tokens, the accepted event */
PG_FUNCTION_INFO_V1(invite_consume_1_1);
Datum
invite_consume_1_1(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_1_1, NULL);
}

/* 2.0: the 1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(invite_consume_2_0);
Datum
invite_consume_2_0(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_2_0, NULL);
}

/* 2.0: invite_consume_at(site_id, token, email, device_id) */
PG_FUNCTION_INFO_V1(invite_consume_at);
Datum
invite_consume_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return ConsumeImpl(shifted, ITM_API_2_0, site_id);
}

/*---- invite_check ----------------------------------------------------------*/

/*
 * invite_check's status: consume's order, without the email and device
 * checks; *fill: ok and not_yet describe the link.
 */
static const char *
CheckStatus(bool enabled, bool revoked, bool expired, bool not_yet, bool locked,
			int32 max_uses, int32 use_count, bool *fill)
{
	*fill = false;
	if (!enabled)
		return "disabled";
	if (revoked)
		return "revoked";
	if (expired)
		return "expired";
	if (not_yet)
	{
		*fill = true;
		return "not_yet";
	}
	if (locked)
		return "locked";
	if (max_uses != -1 && use_count >= max_uses)
		return "exhausted";
	*fill = true;
	return "ok";
}

/*
 * 1.0 answers six columns; 1.1 adds opens_at, not_yet (which fills the
 * columns as ok does, for the lobby's countdown) and locked, and answers
 * revoked for a token replaced by invite_resend.
 */
static Datum
CheckImpl(FunctionCallInfo fcinfo, ItmApi api, const char *site_id)
{
	ItmPlan    *p = &check_plan[api];
	text	   *token;
	const char *status = "not_found";
	int			ncols = api >= ITM_API_1_1 ? 7 : 6;
	Datum		result[7];
	bool		result_nulls[7] = {false, true, true, true, true, true, true};

	ItmSite		site = {0, NULL};

	ItmRequireArg(fcinfo, 0, "token");
	ItmMaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* 2.0: the site first (a site of another tenant does not exist) */
	if (api == ITM_API_2_0)
		ItmResolveSite(site_id, &site);

	/* a malformed or mistyped token (bad checksum): no table is read */
	token = PG_GETARG_TEXT_PP(0);
	if (itm_token_valid(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)))
	{
		Datum		args[5];
		char		nulls[5] = {' ', 'n', 'n', ' ', ' '};
		ItmDirectInvite di;
		ItmDirectResult dr = ITM_DIRECT_UNSUPPORTED;
		bool		fill = false;

		args[0] = PointerGetDatum(ItmTokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));
		if (api == ITM_API_2_0)
		{
			args[3] = Int32GetDatum(site.tenant_id);
			args[4] = CStringGetTextDatum(site.site_id);
		}
		/*
		 * 1.1 and 2.0 read the invite through the table access method where
		 * they can (2.0: by its tenant and hash, at its site)
		 */
		if (api == ITM_API_1_1)
			dr = ItmDirectReadInvite(DatumGetByteaPP(args[0]), NULL, &di);
		else if (api == ITM_API_2_0)
		{
			ItmDirectSite where = {site.tenant_id, site.site_id};

			dr = ItmDirectReadInvite(DatumGetByteaPP(args[0]), &where, &di);
		}
		if (dr == ITM_DIRECT_UNSUPPORTED)
		{
			ItmRunPlan(p, args, nulls, true, SPI_OK_SELECT);
			if (SPI_processed == 1)
			{
				dr = ITM_DIRECT_TAKEN;
				di.enabled = ItmColBool(p, CHK_ENABLED);
				di.revoked = ItmColBool(p, CHK_REVOKED);
				di.expired = ItmColBool(p, CHK_EXPIRED);
				di.not_yet = ItmColBool(p, CHK_NOT_YET);
				di.locked = ItmColBool(p, CHK_LOCKED);
				di.max_uses = ItmColInt4(p, CHK_MAX_USES);
				di.use_count = ItmColInt4(p, CHK_USE_COUNT);
				di.media_id = ItmColDatum(p, CHK_MEDIA_ID, &di.media_id_null);
				di.media_title = ItmColDatum(p, CHK_MEDIA_TITLE, &di.media_title_null);
				di.role = ItmColDatum(p, CHK_ROLE, &di.role_null);
				di.expires_at = ItmColDatum(p, CHK_EXPIRES_AT, &di.expires_at_null);
				di.opens_at = ItmColDatum(p, CHK_OPENS_AT, &di.opens_at_null);
			}
		}
		if (dr == ITM_DIRECT_TAKEN)
		{
			status = CheckStatus(di.enabled, di.revoked, di.expired, di.not_yet,
								 di.locked, di.max_uses, di.use_count, &fill);
			if (fill)
			{
				result[1] = di.media_id;
				result_nulls[1] = di.media_id_null;
				result[2] = di.media_title;
				result_nulls[2] = di.media_title_null;
				result[3] = di.role;
				result_nulls[3] = di.role_null;
				result[4] = di.expires_at;
				result_nulls[4] = di.expires_at_null;
				SetUsesLeft(result, result_nulls, 5, di.max_uses, di.use_count);
				if (ncols > 6)
				{
					result[6] = di.opens_at;
					result_nulls[6] = di.opens_at_null;
				}
			}
		}
		else if (api >= ITM_API_1_1)
		{
			ItmPlan    *r = api == ITM_API_2_0 ? &retired_plan_2_0 : &retired_plan;

			ItmRunPlan(r, args, nulls, true, SPI_OK_SELECT);
			if (SPI_processed == 1)
				status = ItmColBool(r, RET_ENABLED) ? "revoked" : "disabled";
		}
	}
	result[0] = CStringGetTextDatum(status);
	ItmPutResultRow(fcinfo, result, result_nulls);
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(invite_check);
Datum
invite_check(PG_FUNCTION_ARGS)
{
	return CheckImpl(fcinfo, ITM_API_1_0_1, NULL);
}

PG_FUNCTION_INFO_V1(invite_check_1_1);
Datum
invite_check_1_1(PG_FUNCTION_ARGS)
{
	return CheckImpl(fcinfo, ITM_API_1_1, NULL);
}

/* 2.0: the 1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(invite_check_2_0);
Datum
invite_check_2_0(PG_FUNCTION_ARGS)
{
	return CheckImpl(fcinfo, ITM_API_2_0, NULL);
}

/* 2.0: invite_check_at(site_id, token) */
PG_FUNCTION_INFO_V1(invite_check_at);
Datum
invite_check_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return CheckImpl(shifted, ITM_API_2_0, site_id);
}

/*
 * Who may change a link: its inviter, an administrator, or anyone who may
 * invite to its media (invite_revoke's rule).
 */
static bool MayInviteNow(const char *actor_id, const char *media_id, const ItmSite *site);

static bool
MayManageLink(const char *actor_id, const char *actor_role,
			  const char *created_by, const char *media_id, const ItmSite *site)
{
	if (created_by != NULL && strcmp(created_by, actor_id) == 0)
		return true;
	if (actor_role != NULL && (strcmp(actor_role, "admin") == 0 ||
							   strcmp(actor_role, "unmoderated_admin") == 0))
		return true;
	return MayInviteNow(actor_id, media_id, site);
}

/* may_invite(actor, media) as the rule says now (NULL: no) */
static bool
MayInviteNow(const char *actor_id, const char *media_id, const ItmSite *site)
{
	ItmPlan    *p = site ? &revoke_may_plan_2_0 : &revoke_may_plan;
	Datum		margs[3];

	if (media_id == NULL)
		return false;
	margs[0] = CStringGetTextDatum(actor_id);
	margs[1] = CStringGetTextDatum(media_id);
	margs[2] = site ? CStringGetTextDatum(site->site_id) : (Datum) 0;
	ItmRunPlan(p, margs, NULL, false, SPI_OK_SELECT);
	return SPI_processed == 1 && ItmColBool(p, MAY_ALLOWED);
}

/*---- invite_revoke ---------------------------------------------------------*/

/*
 * The inviter (creator), an administrator, or anyone who may invite to the
 * media revokes; true if revoked now, false if it already was.
 */
Datum
ItmRevokeLink(FunctionCallInfo fcinfo, const ItmRevokeKind *k, ItmApi api, const char *site_id)
{
	ItmPlan    *p = api == ITM_API_2_0 ? k->lookup_2_0 : k->lookup;
	int64		id;
	char	   *actor_id;
	bool		already;
	Datum		args[4];
	ItmSite		site = {0, NULL};

	ItmRequireArg(fcinfo, 0, k->id_arg);
	ItmRequireArg(fcinfo, 1, "actor_id");
	PreventCommandIfReadOnly(k->function);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	id = PG_GETARG_INT64(0);
	actor_id = ItmIdArg(fcinfo, 1, "actor_id");
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(actor_id);
	if (api == ITM_API_2_0)
	{
		/* a link of another tenant or site does not exist, as an unknown id */
		ItmResolveSite(site_id, &site);
		args[2] = Int32GetDatum(site.tenant_id);
		args[3] = CStringGetTextDatum(site.site_id);
	}
	ItmRunPlan(p, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s %lld does not exist", k->noun, (long long) id)));
	already = ItmColBool(p, RVK_REVOKED);
	if (!ItmColBool(p, RVK_ACTOR_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", ItmClip(actor_id, 100))));
	if (!MayManageLink(actor_id, ItmColText(p, RVK_ACTOR_ROLE),
					   ItmColText(p, RVK_INVITED_BY), ItmColText(p, RVK_MEDIA_ID),
					   api == ITM_API_2_0 ? &site : NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not revoke %s %lld",
						ItmClip(actor_id, 100), k->noun, (long long) id),
				 errdetail("%s", k->who_detail)));

	if (!already)
		ItmRunPlan(api == ITM_API_2_0 ? k->revoke_2_0 : k->revoke, args, NULL, false,
				   k->revoke_rc);
	SPI_finish();
	PG_RETURN_BOOL(!already);
}

PG_FUNCTION_INFO_V1(invite_revoke);
Datum
invite_revoke(PG_FUNCTION_ARGS)
{
	static const ItmRevokeKind kind = {
		"invite_revoke()", "invite_id", "invite",
		"The inviter, administrators and those who may invite to the media may revoke its links.",
		&revoke_lookup_plan, &revoke_plan, SPI_OK_DELETE,
		&revoke_lookup_plan_2_0, &revoke_plan_2_0
	};

	return ItmRevokeLink(fcinfo, &kind, ITM_API_1_1, NULL);
}

static const ItmRevokeKind invite_revoke_kind_2_0 = {
	"invite_revoke()", "invite_id", "invite",
	"The inviter, administrators and those who may invite to the media may revoke its links.",
	&revoke_lookup_plan, &revoke_plan, SPI_OK_DELETE,
	&revoke_lookup_plan_2_0, &revoke_plan_2_0
};

/* 2.0: the 1.0 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(invite_revoke_2_0);
Datum
invite_revoke_2_0(PG_FUNCTION_ARGS)
{
	return ItmRevokeLink(fcinfo, &invite_revoke_kind_2_0, ITM_API_2_0, NULL);
}

/* 2.0: invite_revoke_at(site_id, invite_id, actor_id) */
PG_FUNCTION_INFO_V1(invite_revoke_at);
Datum
invite_revoke_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return ItmRevokeLink(shifted, &invite_revoke_kind_2_0, ITM_API_2_0, site_id);
}

/*---- invite_resend (1.1) ---------------------------------------------------*/

/*
 * Everything a resend needs, with the invite's row lock: a consume of the
 * old token waits for the resend, then finds no link with that token (and
 * answers revoked: see retired_plan).
 */
enum
{
	RS_INVITED_BY,
	RS_MEDIA_ID,
	RS_REVOKED,
	RS_EXHAUSTED,
	RS_EMAIL,
	RS_FIRST_NAME,
	RS_LAST_NAME,
	RS_ROLE,
	RS_TOKEN_HASH,
	RS_ACTOR_FOUND,
	RS_ACTOR_ROLE,
	RS_ENABLED,
	RS_LINK_DURATION,
	RS_LINK_BASE_URL,
	RS_TEMPLATE_NAME,
	RS_TEMPLATE_FOUND,
	RS_SUBJECT,
	RS_BODY,
	RS_MEDIA_TITLE,
	RS_INVITER_NAME,
	RS_INVITES_PER_HOUR,
	RS_NCOLS
};
static const ItmCol resend_lookup_cols[RS_NCOLS] = {
	[RS_INVITED_BY] = {"invited_by", TEXTOID, true, "invites.invited_by"},
	[RS_MEDIA_ID] = {"media_id", TEXTOID, true, "invites.media_id"},
	[RS_REVOKED] = {"revoked", BOOLOID, false, "invites.revoked_at"},
	[RS_EXHAUSTED] = {"exhausted", BOOLOID, false, "invites.use_count"},
	[RS_EMAIL] = {"email", TEXTOID, false, "invites.email"},
	[RS_FIRST_NAME] = {"first_name", TEXTOID, false, "invites.first_name"},
	[RS_LAST_NAME] = {"last_name", TEXTOID, false, "invites.last_name"},
	[RS_ROLE] = {"role", TEXTOID, false, "invites.role"},
	[RS_TOKEN_HASH] = {"token_hash", BYTEAOID, false, "invites.token_hash"},
	[RS_ACTOR_FOUND] = {"actor_found", BOOLOID, false, "users.user_id"},
	[RS_ACTOR_ROLE] = {"actor_role", TEXTOID, true, "users.role"},
	[RS_ENABLED] = {"enabled", BOOLOID, false, "settings.enabled"},
	[RS_LINK_DURATION] = {"link_duration", INT4OID, false, "settings.link_duration"},
	[RS_LINK_BASE_URL] = {"link_base_url", TEXTOID, false, "settings.link_base_url"},
	[RS_TEMPLATE_NAME] = {"template_name", TEXTOID, true, "settings.invite_email_template"},
	[RS_TEMPLATE_FOUND] = {"template_found", BOOLOID, false, "email_templates.name"},
	[RS_SUBJECT] = {"subject", TEXTOID, true, "email_templates.subject"},
	[RS_BODY] = {"body", TEXTOID, true, "email_templates.body"},
	[RS_MEDIA_TITLE] = {"media_title", TEXTOID, true, "media.title"},
	[RS_INVITER_NAME] = {"inviter_name", TEXTOID, true, "users.first_name"},
	[RS_INVITES_PER_HOUR] = {"invites_per_hour", INT4OID, false, "settings.invites_per_hour"},
};
static ItmPlan resend_lookup_plan = {
	"SELECT i.invited_by::pg_catalog.text AS invited_by,"
	"       i.media_id::pg_catalog.text AS media_id,"
	"       i.revoked_at IS NOT NULL AS revoked,"
	"       (i.max_uses OPERATOR(pg_catalog.<>) -1"
	"        AND i.use_count OPERATOR(pg_catalog.>=) i.max_uses) IS TRUE AS exhausted,"
	"       i.email::pg_catalog.text AS email,"
	"       i.first_name::pg_catalog.text AS first_name,"
	"       i.last_name::pg_catalog.text AS last_name,"
	"       i.role::pg_catalog.text AS role,"
	"       i.token_hash::pg_catalog.bytea AS token_hash,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       u.role::pg_catalog.text AS actor_role,"
	"       s.enabled::pg_catalog.bool AS enabled,"
	"       s.link_duration::pg_catalog.int4 AS link_duration,"
	"       s.link_base_url::pg_catalog.text AS link_base_url,"
	"       s.invite_email_template::pg_catalog.text AS template_name,"
	"       t.name IS NOT NULL AS template_found,"
	"       t.subject::pg_catalog.text AS subject,"
	"       t.body::pg_catalog.text AS body,"
	"       m.title::pg_catalog.text AS media_title,"
	"       pg_catalog.concat_ws(' ', iu.first_name, iu.last_name)::pg_catalog.text AS inviter_name,"
	"       s.invites_per_hour::pg_catalog.int4 AS invites_per_hour"
	"  FROM invitetomedia.invites i"
	"  LEFT JOIN invitetomedia.settings s ON true"
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2"
	"  LEFT JOIN invitetomedia.email_templates t"
	"         ON t.name OPERATOR(pg_catalog.=) s.invite_email_template"
	"  LEFT JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) i.media_id"
	"  LEFT JOIN invitetomedia.users iu ON iu.user_id OPERATOR(pg_catalog.=) i.invited_by"
	" WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	"   FOR UPDATE OF i",
	2, {INT8OID, TEXTOID}, RS_NCOLS, resend_lookup_cols, NULL
};

/* 2.0: the link of the tenant ($3) at the site ($4), with the site's settings */
static ItmPlan resend_lookup_plan_2_0 = {
	"SELECT i.invited_by::pg_catalog.text AS invited_by,"
	"       i.media_id::pg_catalog.text AS media_id,"
	"       i.revoked_at IS NOT NULL AS revoked,"
	"       (i.max_uses OPERATOR(pg_catalog.<>) -1"
	"        AND i.use_count OPERATOR(pg_catalog.>=) i.max_uses) IS TRUE AS exhausted,"
	"       i.email::pg_catalog.text AS email,"
	"       i.first_name::pg_catalog.text AS first_name,"
	"       i.last_name::pg_catalog.text AS last_name,"
	"       i.role::pg_catalog.text AS role,"
	"       i.token_hash::pg_catalog.bytea AS token_hash,"
	"       u.user_id IS NOT NULL AS actor_found,"
	"       u.role::pg_catalog.text AS actor_role,"
	"       s.enabled::pg_catalog.bool AS enabled,"
	"       s.link_duration::pg_catalog.int4 AS link_duration,"
	"       s.link_base_url::pg_catalog.text AS link_base_url,"
	"       s.invite_email_template::pg_catalog.text AS template_name,"
	"       t.name IS NOT NULL AS template_found,"
	"       t.subject::pg_catalog.text AS subject,"
	"       t.body::pg_catalog.text AS body,"
	"       m.title::pg_catalog.text AS media_title,"
	"       pg_catalog.concat_ws(' ', iu.first_name, iu.last_name)::pg_catalog.text AS inviter_name,"
	"       s.invites_per_hour::pg_catalog.int4 AS invites_per_hour"
	"  FROM invitetomedia.invites i"
	"  JOIN invitetomedia.sites s ON s.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
	"   AND s.site_id OPERATOR(pg_catalog.=) i.site_id"
	"  LEFT JOIN invitetomedia.users u ON u.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
	"   AND u.user_id OPERATOR(pg_catalog.=) $2"
	"  LEFT JOIN invitetomedia.email_templates t"
	"         ON t.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
	"        AND t.site_id OPERATOR(pg_catalog.=) s.site_id"
	"        AND t.name OPERATOR(pg_catalog.=) s.invite_email_template"
	"  LEFT JOIN invitetomedia.media m ON m.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
	"   AND m.media_id OPERATOR(pg_catalog.=) i.media_id"
	"  LEFT JOIN invitetomedia.users iu ON iu.tenant_id OPERATOR(pg_catalog.=) i.tenant_id"
	"   AND iu.user_id OPERATOR(pg_catalog.=) i.invited_by"
	" WHERE i.tenant_id OPERATOR(pg_catalog.=) $3 AND i.invite_id OPERATOR(pg_catalog.=) $1"
	"   AND i.site_id OPERATOR(pg_catalog.=) $4"
	"   FOR UPDATE OF i",
	4, {INT8OID, TEXTOID, INT4OID, TEXTOID}, RS_NCOLS, resend_lookup_cols, NULL
};

enum
{
	RSU_EXPIRES_AT,
	RSU_EXPIRES_TEXT,
	RSU_MAX_USES,
	RSU_NCOLS
};
static const ItmCol resend_update_cols[RSU_NCOLS] = {
	[RSU_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, false, "invites.expires_at"},
	[RSU_EXPIRES_TEXT] = {"expires_text", TEXTOID, false, "invites.expires_at"},
	[RSU_MAX_USES] = {"max_uses", INT4OID, false, "invites.max_uses"},
};
/* the new token, a new expiry from now (or the opening), a fresh lockout count */
static ItmPlan resend_update_plan = {
	"UPDATE invitetomedia.invites i"
	"   SET token_hash = $2, failed_attempts = 0,"
	"       expires_at = GREATEST(pg_catalog.now(), i.not_before)"
	"                    OPERATOR(pg_catalog.+) pg_catalog.make_interval(mins => $3)"
	" WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	" RETURNING i.expires_at::pg_catalog.timestamptz AS expires_at,"
	"   pg_catalog.to_char(i.expires_at::pg_catalog.timestamptz AT TIME ZONE 'UTC',"
	"                      'YYYY-MM-DD HH24:MI \"UTC\"') AS expires_text,"
	"   i.max_uses::pg_catalog.int4 AS max_uses",
	3, {INT8OID, BYTEAOID, INT4OID}, RSU_NCOLS, resend_update_cols, NULL
};

static ItmPlan resend_update_plan_2_0 = {
	"UPDATE invitetomedia.invites i"
	"   SET token_hash = $2, failed_attempts = 0,"
	"       expires_at = GREATEST(pg_catalog.now(), i.not_before)"
	"                    OPERATOR(pg_catalog.+) pg_catalog.make_interval(mins => $3)"
	" WHERE i.tenant_id OPERATOR(pg_catalog.=) $4 AND i.invite_id OPERATOR(pg_catalog.=) $1"
	" RETURNING i.expires_at::pg_catalog.timestamptz AS expires_at,"
	"   pg_catalog.to_char(i.expires_at::pg_catalog.timestamptz AT TIME ZONE 'UTC',"
	"                      'YYYY-MM-DD HH24:MI \"UTC\"') AS expires_text,"
	"   i.max_uses::pg_catalog.int4 AS max_uses",
	4, {INT8OID, BYTEAOID, INT4OID, INT4OID}, RSU_NCOLS, resend_update_cols, NULL
};

static ItmPlan retire_token_plan_2_0 = {
	"INSERT INTO invitetomedia.retired_tokens (tenant_id, site_id, token_hash, invite_id)"
	" VALUES ($3, $4, $1, $2) ON CONFLICT DO NOTHING",
	4, {BYTEAOID, INT8OID, INT4OID, TEXTOID}, 0, NULL, NULL
};

static ItmPlan record_resend_plan_2_0 = {
	"INSERT INTO invitetomedia.resends"
	"  (tenant_id, site_id, resend_id, invite_id, actor_id, emailed)"
	" VALUES ($4, $5, $6, $1, $2, $3)",
	6, {INT8OID, TEXTOID, BOOLOID, INT4OID, TEXTOID, INT8OID}, 0, NULL, NULL
};

static ItmPlan drop_unsent_plan_2_0 = {
	"DELETE FROM invitetomedia.outbox o"
	" WHERE o.tenant_id OPERATOR(pg_catalog.=) $2 AND o.invite_id OPERATOR(pg_catalog.=) $1"
	"   AND o.sent_at IS NULL",
	2, {INT8OID, INT4OID}, 0, NULL, NULL
};

static ItmPlan retire_token_plan = {
	"INSERT INTO invitetomedia.retired_tokens (token_hash, invite_id) VALUES ($1, $2)"
	" ON CONFLICT DO NOTHING",
	2, {BYTEAOID, INT8OID}, 0, NULL, NULL
};

/* 1.1.1: every resend is recorded; the mailed ones count towards the rate limit */
static ItmPlan record_resend_plan = {
	"INSERT INTO invitetomedia.resends (invite_id, actor_id, emailed) VALUES ($1, $2, $3)",
	3, {INT8OID, TEXTOID, BOOLOID}, 0, NULL, NULL
};

static ItmPlan drop_unsent_plan = {
	"DELETE FROM invitetomedia.outbox o"
	" WHERE o.invite_id OPERATOR(pg_catalog.=) $1 AND o.sent_at IS NULL",
	1, {INT8OID}, 0, NULL, NULL
};

/*
 * A resend gives access again (a new token, a new expiry): 1.1.1 asks for
 * the right to invite now, as a create would (1.1 let the inviter resend
 * after losing it), and counts a mailed resend towards the rate limit.
 */
static Datum
ResendImpl(FunctionCallInfo fcinfo, bool v111, ItmApi api, const char *site_id)
{
	bool		v2 = api == ITM_API_2_0;
	ItmPlan    *p = v2 ? &resend_lookup_plan_2_0 : &resend_lookup_plan;
	ItmPlan    *up = v2 ? &resend_update_plan_2_0 : &resend_update_plan;
	CreateArgs	a;
	CreateContext c;
	CreatedInvite inv;
	int64		invite_id;
	char	   *actor_id;
	char	   *actor_role;
	char	   *invited_by;
	bool		revoked;
	bool		exhausted;
	bool		isnull;
	Datum		old_hash;
	Datum		args[6];
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};
	int32		max_uses;
	int32		per_hour;

	ItmRequireArg(fcinfo, 0, "invite_id");
	ItmRequireArg(fcinfo, 1, "actor_id");
	ItmRequireArg(fcinfo, 2, "send_email");
	PreventCommandIfReadOnly("invite_resend()");
	ItmMaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	memset(&a, 0, sizeof(a));
	memset(&c, 0, sizeof(c));
	invite_id = PG_GETARG_INT64(0);
	actor_id = ItmIdArg(fcinfo, 1, "actor_id");
	a.send_email = PG_GETARG_BOOL(2);
	a.api = v2 ? ITM_API_2_0 : ITM_API_1_1;
	/* 2.0: a link of another tenant or site does not exist, as an unknown id */
	if (v2)
		ItmResolveSite(site_id, &a.site);

	args[0] = Int64GetDatum(invite_id);
	args[1] = CStringGetTextDatum(actor_id);
	if (v2)
	{
		args[2] = Int32GetDatum(a.site.tenant_id);
		args[3] = CStringGetTextDatum(a.site.site_id);
	}
	ItmRunPlan(p, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invite %lld does not exist", (long long) invite_id)));
	if (!ItmColBool(p, RS_ACTOR_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", ItmClip(actor_id, 100))));
	invited_by = ItmColText(p, RS_INVITED_BY);
	a.media_id = ItmColText(p, RS_MEDIA_ID);
	actor_role = ItmColText(p, RS_ACTOR_ROLE);
	revoked = ItmColBool(p, RS_REVOKED);
	exhausted = ItmColBool(p, RS_EXHAUSTED);
	a.email = ItmColText(p, RS_EMAIL);
	a.first_name = ItmColText(p, RS_FIRST_NAME);
	a.last_name = ItmColText(p, RS_LAST_NAME);
	a.role = ItmColText(p, RS_ROLE);
	old_hash = datumCopy(ItmColDatum(p, RS_TOKEN_HASH, &isnull), false, -1);
	c.enabled = ItmColBool(p, RS_ENABLED);
	c.link_duration = ItmColInt4(p, RS_LINK_DURATION);
	c.base_url = ItmColText(p, RS_LINK_BASE_URL);
	c.template_name = ItmColText(p, RS_TEMPLATE_NAME);
	c.template_found = ItmColBool(p, RS_TEMPLATE_FOUND);
	c.subject = ItmColText(p, RS_SUBJECT);
	c.body = ItmColText(p, RS_BODY);
	c.media_title = ItmColText(p, RS_MEDIA_TITLE);
	c.inviter_name = ItmColText(p, RS_INVITER_NAME);
	per_hour = ItmColInt4(p, RS_INVITES_PER_HOUR);

	if (!MayManageLink(actor_id, actor_role, invited_by, a.media_id, v2 ? &a.site : NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not resend invite %lld",
						ItmClip(actor_id, 100), (long long) invite_id),
				 errdetail("The inviter, administrators and those who may invite to the media may resend its links.")));
	/* 1.1.1: the right to invite to the media, which a NULL media_id cannot name */
	if (v111 && a.media_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.invites.media_id is NULL for invite %lld", (long long) invite_id),
				 errdetail("The extension's schema declares it NOT NULL; the constraint was dropped, or the row was written where constraints are not checked."),
				 errhint("Set the invite's media_id, and restore the NOT NULL constraint.")));
	if (v111 && !MayInviteNow(actor_id, a.media_id, v2 ? &a.site : NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not resend invite %lld: they may not invite to media \"%s\" now",
						ItmClip(actor_id, 100), (long long) invite_id, ItmClip(a.media_id, 100)),
				 errdetail("A resend opens the link again, so it needs what a new invite needs (may_invite()); revoking stays allowed."),
				 errhint("Ask someone who may invite to the media to resend it, or revoke it.")));
	ItmRequireEnabled(c.enabled);
	if (revoked)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invite %lld is revoked", (long long) invite_id),
				 errhint("Create a new invite for the person.")));
	if (exhausted)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invite %lld has no uses left", (long long) invite_id),
				 errdetail("A resend keeps the uses taken; a link whose uses are all taken stays used."),
				 errhint("Create a new invite for the person.")));
	if (a.send_email)
		CheckTemplate(&c);
	if (v111 && a.send_email)
		ItmCheckRateLimit(actor_id, per_hour, true, v2 ? &a.site : NULL);

	/* the new token; the old one is kept as a hash only, to answer revoked */
	ItmNewToken(ITM_TOKEN_PREFIX, inv.token);
	inv.invite_id = invite_id;
	inv.url = psprintf("%s%s", c.base_url, inv.token);
	args[0] = Int64GetDatum(invite_id);
	args[1] = PointerGetDatum(ItmTokenHash(inv.token, ITM_TOKEN_LEN));
	args[2] = Int32GetDatum(c.link_duration);
	args[3] = Int32GetDatum(a.site.tenant_id);	/* 2.0 */
	ItmRunPlan(up, args, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the resend update returned %llu rows",
			 (unsigned long long) SPI_processed);
	inv.expires_at = ItmColDatum(up, RSU_EXPIRES_AT, &isnull);
	inv.expires_text = ItmColText(up, RSU_EXPIRES_TEXT);
	max_uses = ItmColInt4(up, RSU_MAX_USES);

	args[0] = old_hash;
	args[1] = Int64GetDatum(invite_id);
	args[2] = Int32GetDatum(a.site.tenant_id);	/* 2.0 */
	args[3] = v2 ? CStringGetTextDatum(a.site.site_id) : (Datum) 0;
	ItmRunPlan(v2 ? &retire_token_plan_2_0 : &retire_token_plan, args, NULL, false,
			   SPI_OK_INSERT);
	args[0] = Int64GetDatum(invite_id);
	args[1] = Int32GetDatum(a.site.tenant_id);	/* 2.0 */
	ItmRunPlan(v2 ? &drop_unsent_plan_2_0 : &drop_unsent_plan, args, NULL, false,
			   SPI_OK_DELETE);
	if (a.send_email)
		QueueInviteEmail(&a, &c, &inv);
	if (v111)
	{
		args[0] = Int64GetDatum(invite_id);
		args[1] = CStringGetTextDatum(actor_id);
		args[2] = BoolGetDatum(a.send_email);
		if (v2)
		{
			args[3] = Int32GetDatum(a.site.tenant_id);
			args[4] = CStringGetTextDatum(a.site.site_id);
			args[5] = Int64GetDatum(ItmRandomId());
		}
		ItmRunPlan(v2 ? &record_resend_plan_2_0 : &record_resend_plan, args, NULL, false,
				   SPI_OK_INSERT);
	}

	result[0] = CStringGetTextDatum(inv.token);
	result[1] = CStringGetTextDatum(inv.url);
	result[2] = inv.expires_at;
	result[3] = Int32GetDatum(max_uses);
	ItmPutResultRow(fcinfo, result, result_nulls);
	explicit_bzero(inv.token, sizeof(inv.token));
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(invite_resend);
Datum
invite_resend(PG_FUNCTION_ARGS)
{
	return ResendImpl(fcinfo, false, ITM_API_1_1, NULL);
}

PG_FUNCTION_INFO_V1(invite_resend_1_1_1);
Datum
invite_resend_1_1_1(PG_FUNCTION_ARGS)
{
	return ResendImpl(fcinfo, true, ITM_API_1_1, NULL);
}

/* 2.0: the 1.1.1 signature, on the default site of the caller's tenant */
PG_FUNCTION_INFO_V1(invite_resend_2_0);
Datum
invite_resend_2_0(PG_FUNCTION_ARGS)
{
	return ResendImpl(fcinfo, true, ITM_API_2_0, NULL);
}

/* 2.0: invite_resend_at(site_id, invite_id, actor_id, send_email) */
PG_FUNCTION_INFO_V1(invite_resend_at);
Datum
invite_resend_at(PG_FUNCTION_ARGS)
{
	char	   *site_id;
	FunctionCallInfo shifted = ItmShiftSiteArg(fcinfo, &site_id);

	return ResendImpl(shifted, true, ITM_API_2_0, site_id);
}

/*---- invite_purge ----------------------------------------------------------*/

static Datum PurgeImpl(FunctionCallInfo fcinfo, ItmApi api);

PG_FUNCTION_INFO_V1(invite_purge);
Datum
invite_purge(PG_FUNCTION_ARGS)
{
	return PurgeImpl(fcinfo, ITM_API_1_0_1);
}

/* 1.1: guest links too */
PG_FUNCTION_INFO_V1(invite_purge_1_1);
Datum
invite_purge_1_1(PG_FUNCTION_ARGS)
{
	return PurgeImpl(fcinfo, ITM_API_1_1);
}

/* 2.0: the links of the caller's tenant */
PG_FUNCTION_INFO_V1(invite_purge_2_0);
Datum
invite_purge_2_0(PG_FUNCTION_ARGS)
{
	return PurgeImpl(fcinfo, ITM_API_2_0);
}

static Datum
PurgeImpl(FunctionCallInfo fcinfo, ItmApi api)
{
	Interval   *keep;
	TimestampTz now;
	TimestampTz cutoff;
	uint64		purged;
	Datum		args[2];
	bool		v2 = api == ITM_API_2_0;

	ItmRequireArg(fcinfo, 0, "keep");
	PreventCommandIfReadOnly("invite_purge()");
	keep = PG_GETARG_INTERVAL_P(0);

	/*
	 * An infinite keep ('infinity', '-infinity': intervals since 17) is
	 * refused, so that the function answers the same on every major (on
	 * 15 and 16 such a text is not an interval at all).
	 *
	 * What counts is the cutoff the query computes, now() - keep: an
	 * interval such as '-3 mons 91 days' compares as positive (a month
	 * counts 30 days there) yet puts the cutoff in the future.
	 */
	if (INTERVAL_NOT_FINITE(keep))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep must be finite"),
				 errhint("Pass how long finished links are kept, e.g. '30 days'; to keep them all, do not purge.")));
	now = GetCurrentTransactionStartTimestamp();
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(now),
													 IntervalPGetDatum(keep)));
	if (cutoff > now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep must not be negative"),
				 errhint("Links finished before now() - keep are purged, so that must not be later than now: pass how long finished links are kept, e.g. '30 days', or '0' to purge them all now.")));

	/*
	 * Purges queue on each other: two DELETEs of overlapping links can
	 * visit them in different orders and deadlock (the soak found one).
	 * The second purge's statement starts after the first committed, so it
	 * does not even see the links already gone.
	 */
	DirectFunctionCall2(pg_advisory_xact_lock_int4,
						Int32GetDatum(PURGE_LOCK_CLASS), Int32GetDatum(0));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = IntervalPGetDatum(keep);
	if (v2)
	{
		int32		tenant_id;

		if (!ItmBoundTenant(&tenant_id))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" acts for no tenant",
							GetUserNameFromId(GetOuterUserId(), false)),
					 errhint("An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.")));
		args[1] = Int32GetDatum(tenant_id);
	}
	ItmRunPlan(v2 ? &purge_plan_2_0 : &purge_plan, args, NULL, false, SPI_OK_DELETE);
	purged = SPI_processed;
	if (api >= ITM_API_1_1)
	{
		ItmRunPlan(v2 ? &guest_purge_plan_2_0 : &guest_purge_plan, args, NULL, false,
				   SPI_OK_DELETE);
		purged += SPI_processed;
	}
	SPI_finish();
	PG_RETURN_INT64((int64) purged);
}

