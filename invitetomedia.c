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
 * IDENTIFICATION
 *	  invitetomedia.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "itm_compat.h"
#include "itm_direct.h"
#include "itm_relay.h"
#include "src/itm_text.h"

ITM_MODULE_MAGIC("invitetomedia", ITM_VERSION);

void		_PG_init(void);

void
_PG_init(void)
{
	ItmDirectInit();
	ItmRelayInit();
}

#define NOTIFY_CHANNEL "invitetomedia_email"
#define ACCEPTED_CHANNEL "invitetomedia_accepted"

/* The schema an SQL function was declared by: see "Versions" above. */
typedef enum ItmApi
{
	ITM_API_1_0 = 0,
	ITM_API_1_0_1,
	ITM_API_1_1,
	ITM_API_COUNT
} ItmApi;

/* One result column of a saved query. */
typedef struct ItmCol
{
	const char *name;			/* its name in the query's SELECT list */
	Oid			type;			/* the type the query casts it to */
	bool		nullable;		/* NULL is a legitimate value here */
	const char *source;			/* what it reads, for errors ("invites.email") */
} ItmCol;

/* A prepared statement kept for the life of the backend. */
typedef struct ItmPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[10];
	int			ncols;			/* result columns (0: none are read) */
	const ItmCol *cols;
	SPIPlanPtr	plan;
} ItmPlan;

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

/*
 * How a user is found by the invitee's email: ASCII case-insensitively in
 * 1.0.1, whose index is on lower(email COLLATE "C"); 1.0's index is on
 * lower(email), which its look-up keeps using.
 */
#define USER_KEY_1_0	"pg_catalog.lower(us.email)"
#define USER_KEY_1_0_1	"pg_catalog.lower(us.email COLLATE \"C\")"

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
static ItmPlan consume_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {CONSUME_SQL(USER_KEY_1_0, "", ""), 3, {BYTEAOID, TEXTOID, TEXTOID},
	USE_NCOLS, consume_cols, NULL},
	[ITM_API_1_0_1] = {CONSUME_SQL(USER_KEY_1_0_1, "", ""), 3, {BYTEAOID, TEXTOID, TEXTOID},
	USE_NCOLS, consume_cols, NULL},
	[ITM_API_1_1] = {CONSUME_SQL(USER_KEY_1_0_1, CONSUME_SET_1_1, CONSUME_WHERE_1_1), 3,
	{BYTEAOID, TEXTOID, TEXTOID}, USE_NCOLS, consume_cols, NULL},
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

/* The rare path: a user appeared concurrently for the invitee's email. */
#define FIND_USER_SQL(USER_KEY) \
	"SELECT us.user_id::pg_catalog.text AS user_id FROM invitetomedia.users us" \
	" WHERE " USER_KEY " OPERATOR(pg_catalog.=) $1"
static ItmPlan find_user_plan[ITM_API_COUNT] = {
	[ITM_API_1_0] = {FIND_USER_SQL(USER_KEY_1_0), 1, {TEXTOID}, NEWUSER_NCOLS, user_id_cols, NULL},
	[ITM_API_1_0_1] = {FIND_USER_SQL(USER_KEY_1_0_1), 1, {TEXTOID}, NEWUSER_NCOLS, user_id_cols, NULL},
	[ITM_API_1_1] = {FIND_USER_SQL(USER_KEY_1_0_1), 1, {TEXTOID}, NEWUSER_NCOLS, user_id_cols, NULL},
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
};

/* Locks the invite: a revoke and a consume of the same link queue up. */
enum
{
	RVK_INVITED_BY,
	RVK_MEDIA_ID,
	RVK_REVOKED,
	RVK_ACTOR_FOUND,
	RVK_ACTOR_ROLE,
	RVK_NCOLS
};
static const ItmCol revoke_lookup_cols[RVK_NCOLS] = {
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
	RVK_NCOLS, revoke_lookup_cols, NULL
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

/*---- running plans and reading their results ----------------------------*/

/* The plan whose rows SPI_tuptable holds: the column readers check it. */
static const ItmPlan *current_result = NULL;

/*
 * Checks a result's row type against the columns named beside the query.
 * The casts in the query fix the types whatever a DBA did to the tables,
 * so a mismatch is a bug in this file.
 */
static void
CheckResultDesc(const ItmPlan *p, TupleDesc desc, bool check_names)
{
	int			i;

	if (desc == NULL || desc->natts != p->ncols)
		elog(ERROR, "invitetomedia: query returns %d columns, expected %d: %.60s",
			 desc ? desc->natts : 0, p->ncols, p->sql);
	for (i = 0; i < p->ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->atttypid != p->cols[i].type ||
			(check_names && strcmp(NameStr(att->attname), p->cols[i].name) != 0))
			elog(ERROR, "invitetomedia: result column %d is \"%s\" of type %u, expected \"%s\" of type %u",
				 i + 1, NameStr(att->attname), att->atttypid,
				 p->cols[i].name, p->cols[i].type);
	}
}

static ItmPlan guest_diagnose_plan_1_1_1;

/*
 * Statements kept to their generic plan.  Without 1.1's user sub-select the
 * plan cache judged a custom plan of the guest diagnosis (the device's
 * sub-selects folded away when there is none) always worth its planning,
 * and planned it at every join: 711k instructions a join on the SQL path
 * against 546k in 1.1 (bench/callgrind.sh).  Its generic plan is the one a
 * join needs.
 */
static int
PlanCursorOptions(const ItmPlan *p)
{
	return p == &guest_diagnose_plan_1_1_1 ? CURSOR_OPT_GENERIC_PLAN : 0;
}

/* Prepares the statement the first time this backend needs it. */
static SPIPlanPtr
GetPlan(ItmPlan *p)
{
	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(p->sql, p->nargs, p->argtypes,
											  PlanCursorOptions(p));
		List	   *sources;

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		sources = SPI_plan_get_plan_sources(plan);
		if (p->ncols > 0)
		{
			if (list_length(sources) != 1)
				elog(ERROR, "invitetomedia: a saved query must be one statement");
			CheckResultDesc(p, ((CachedPlanSource *) linitial(sources))->resultDesc, true);
		}
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		p->plan = plan;
	}
	return p->plan;
}

/*
 * Runs a saved plan; nulls uses SPI's convention (' ' or 'n').  snapshot:
 * InvalidSnapshot for the usual one (see RunPlanAfterLock).
 */
static void
RunPlanSnapshot(ItmPlan *p, Datum *values, const char *nulls, bool read_only,
				int expected, Snapshot snapshot)
{
	int			rc = snapshot == InvalidSnapshot ?
		SPI_execute_plan(GetPlan(p), values, nulls, read_only, 0) :
		SPI_execute_snapshot(GetPlan(p), values, nulls, snapshot, InvalidSnapshot,
							 read_only, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan returned %s, expected %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expected));
	current_result = NULL;
	if (p->ncols > 0)
	{
		if (SPI_tuptable == NULL)
			elog(ERROR, "invitetomedia: query returned no result set");
		/* a re-planned query could in principle change shape: cheap to see */
		CheckResultDesc(p, SPI_tuptable->tupdesc, false);
		current_result = p;
	}
}

static void
RunPlan(ItmPlan *p, Datum *values, const char *nulls, bool read_only, int expected)
{
	RunPlanSnapshot(p, values, nulls, read_only, expected, InvalidSnapshot);
}

/*
 * A count that must see what committed while this transaction waited for a
 * row lock (the creation limits).  Under READ COMMITTED each statement takes
 * a new snapshot anyway; under REPEATABLE READ and SERIALIZABLE the
 * transaction's snapshot predates the wait, so the latest one is used, as
 * PostgreSQL's own foreign-key checks do.
 */
static void
RunPlanAfterLock(ItmPlan *p, Datum *values, const char *nulls, int expected)
{
	RunPlanSnapshot(p, values, nulls, false, expected,
					IsolationUsesXactSnapshot() ? GetLatestSnapshot() : InvalidSnapshot);
}

/*
 * Column col of the first result row of p.  A NULL in a column that may
 * not hold one is an error naming what it reads: a NOT NULL constraint was
 * dropped, or rows were written where constraints do not fire.
 */
static Datum
Col(const ItmPlan *p, int col, bool *isnull)
{
	Datum		d;

	if (current_result != p || col < 0 || col >= p->ncols || SPI_processed < 1)
		elog(ERROR, "invitetomedia: column %d read from the wrong result", col);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col + 1, isnull);
	if (*isnull && !p->cols[col].nullable)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.%s is NULL", p->cols[col].source),
				 errdetail("The extension's schema declares it NOT NULL; the constraint was dropped, or the row was written where constraints are not checked."),
				 errhint("Set a value, and restore the NOT NULL constraint.")));
	return d;
}

/* A boolean column; a NULL (where one may be) counts as false. */
static bool
ColBool(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = Col(p, col, &isnull);

	return !isnull && DatumGetBool(d);
}

static int32
ColInt4(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = Col(p, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

static int64
ColInt8(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = Col(p, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* A text column as a C string; NULL stays NULL (where it may be one). */
static char *
ColText(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = Col(p, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* A column copied into a result row (the types match: see CheckResultDesc). */
static void
ColToResult(const ItmPlan *p, int col, Datum *values, bool *nulls, int rescol)
{
	values[rescol] = Col(p, col, &nulls[rescol]);
}

/*---- arguments and results ---------------------------------------------*/

/*
 * A query that reads the settings row returned nrows rows: anything but one
 * means a DBA deleted the row or added rows where constraints do not fire.
 */
static void
RequireSettingsRow(uint64 nrows)
{
	if (nrows != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invitetomedia.settings holds %llu rows instead of one",
						(unsigned long long) nrows),
				 errhint(nrows == 0 ?
						 "Restore it with INSERT INTO invitetomedia.settings DEFAULT VALUES, then set it up again." :
						 "Delete the extra rows, keeping the one with singleton = true.")));
}

/* settings.enabled, as every function that makes or changes links checks it */
static void
RequireEnabled(bool enabled)
{
	if (!enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invitetomedia is disabled"),
				 errhint("An administrator enables it with UPDATE invitetomedia.settings SET enabled = true.")));
}


/* Sets up the materialize-mode result of a set-returning function. */
static void
MaterializeResult(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcxt;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	/*
	 * The executor usually tells the row type it expects (and checks the
	 * result against it); building it from the catalog is the fallback.  A
	 * copy either way: the executor frees setDesc after the call.
	 */
	if (rsinfo->expectedDesc != NULL)
		tupdesc = rsinfo->expectedDesc;
	else if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(false, false, work_mem);
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	MemoryContextSwitchTo(oldcxt);
}

static void
PutResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The named argument, refusing NULL with 22004. */
static void
RequireArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
}

/*
 * A text argument as a C string; refuses characters no name, id or
 * address may hold (CR and LF first among them: header injection).
 */
static char *
TextArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	text	   *t = PG_GETARG_TEXT_PP(argno);
	const char *s = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	int32_t		cp = itm_text_forbidden(s, len);

	if (cp >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s contains the forbidden character U+%04X", argname, (unsigned int) cp),
				 errdetail("Control characters (such as CR and LF), line separators, bidirectional formatting marks and invisible spaces are not accepted.")));
	return text_to_cstring(t);
}

/*
 * At most maxbytes of s for an error message, cut on a character boundary;
 * a NULL (a column the DBA let be NULL) shows as such.
 */
static char *
Clip(const char *s, int maxbytes)
{
	int			len;
	int			cut;

	if (s == NULL)
		return pstrdup("(NULL)");
	len = strlen(s);

	if (len <= maxbytes)
		return pstrdup(s);
	cut = pg_mbcliplen(s, len, maxbytes);
	return psprintf("%.*s...", cut, s);
}

/* An id argument: no forbidden characters, at most ITM_ID_MAX_LEN bytes. */
static char *
IdArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *s = TextArg(fcinfo, argno, argname);

	if (strlen(s) > ITM_ID_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("At most %d bytes are accepted.", ITM_ID_MAX_LEN)));
	return s;
}

/*
 * A name: trimmed, not empty, at most maxchars characters (a person's:
 * ITM_NAME_MAX_CHARS).  empty_hint, if any, says what to write instead.
 */
static char *
NameArg(FunctionCallInfo fcinfo, int argno, const char *argname, size_t maxchars,
		const char *empty_hint)
{
	char	   *raw = TextArg(fcinfo, argno, argname);
	const char *s = raw;
	size_t		len = strlen(raw);
	size_t		nchars;

	itm_trim_spaces(&s, &len);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname),
				 empty_hint ? errhint("%s", empty_hint) : 0));
	nchars = itm_utf8_chars(s, len);
	if (nchars > maxchars)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("At most %zu characters are accepted; got %zu.",
						   maxchars, nchars)));
	return pnstrdup(s, len);
}

/* An email address: trimmed and checked by itm_email_check. */
static char *
EmailArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *raw = TextArg(fcinfo, argno, argname);
	const char *s = raw;
	size_t		len = strlen(raw);
	int			dcode;
	int			code;

	itm_trim_spaces(&s, &len);
	code = itm_email_check(s, len, NULL, &dcode);
	if (code != ITM_EMAIL_OK)
	{
		const char *at = memchr(s, '@', len);
		const char *hint = NULL;

		/*
		 * The detail names the character class at fault; the hint names the
		 * syntax the address used, which the parser does not accept.
		 */
		if (code == ITM_EMAIL_NON_ASCII || dcode == ITM_DOMAIN_NON_ASCII)
			hint = "Write an internationalised domain in its punycode (xn--) form.";
		else if (memchr(s, '(', len) != NULL || memchr(s, ')', len) != NULL)
			hint = "Comments (text in parentheses) are not accepted: write the bare address.";
		else if (at != NULL && at + 1 < s + len && at[1] == '[')
			hint = "IP literals (such as [192.0.2.1]) are not accepted: write the domain name.";
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address \"%s\"", Clip(raw, 100)),
				 errdetail("%s%s%s", itm_email_problem(code),
						   code == ITM_EMAIL_DOMAIN ? " " : "",
						   code == ITM_EMAIL_DOMAIN ? itm_domain_problem(dcode) : ""),
				 hint ? errhint("%s", hint) : 0));
	}
	return pnstrdup(s, len);
}

/* Trimmed and ASCII-lower-cased, the way invite emails are compared. */
static char *
EmailKey(const char *s)
{
	size_t		len = strlen(s);
	char	   *out;
	size_t		i;

	itm_trim_spaces(&s, &len);
	out = pnstrdup(s, len);
	for (i = 0; i < len; i++)
		out[i] = pg_ascii_tolower((unsigned char) out[i]);
	return out;
}

static bytea *
TokenHash(const char *token, size_t len)
{
	bytea	   *hash = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	SET_VARSIZE(hash, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) token, len) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(hash), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute SHA-256 of the token: %s",
			 ctx ? pg_cryptohash_error(ctx) : "out of memory");
	pg_cryptohash_free(ctx);
	return hash;
}

static bool
RoleAllowedForMedia(const char *role, const char *media_type)
{
	bool		live = strcmp(media_type, "webcast") == 0 ||
		strcmp(media_type, "simulive") == 0 ||
		strcmp(media_type, "diy_live") == 0 ||
		strcmp(media_type, "room") == 0;

	if (strcmp(role, "viewer") == 0)
		return true;
	return live && (strcmp(role, "moderator") == 0 || strcmp(role, "speaker") == 0);
}

/* Renders a template into a palloc'd string (see itm_render). */
static char *
Render(const char *tmpl, const char *const values[ITM_PH_COUNT])
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
static char *
RenderSubject(const char *tmpl, const char *const values[ITM_PH_COUNT])
{
	const char *subject_values[ITM_PH_COUNT];
	char	   *out;
	int			k;

	for (k = 0; k < ITM_PH_COUNT; k++)
		subject_values[k] = values[k];
	subject_values[ITM_PH_URL] = "{URL}";
	out = Render(tmpl, subject_values);
	out[itm_single_line(out, strlen(out))] = '\0';
	return out;
}

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
	a->media_id = IdArg(fcinfo, 0, "media_id");
	a->inviter_id = IdArg(fcinfo, 1, "inviter_id");
	a->email = EmailArg(fcinfo, 2, "email");
	a->first_name = NameArg(fcinfo, 3, "first_name", ITM_NAME_MAX_CHARS, NULL);
	a->last_name = NameArg(fcinfo, 4, "last_name", ITM_NAME_MAX_CHARS, NULL);
	a->role = TextArg(fcinfo, 5, "role");
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
				 errmsg("invalid role \"%s\"", Clip(a->role, 64)),
				 errhint("The role is viewer, moderator or speaker.")));
}

/* One statement reads everything the rules need. */
static void
ReadCreateContext(const CreateArgs *a, CreateContext *c)
{
	ItmPlan    *p = &create_context_plan[a->api];
	Datum		args[3];

	args[0] = CStringGetTextDatum(a->media_id);
	args[1] = CStringGetTextDatum(a->inviter_id);
	args[2] = CStringGetTextDatum(a->email);
	RunPlan(p, args, NULL, false, SPI_OK_SELECT);
	RequireSettingsRow(SPI_processed);

	c->enabled = ColBool(p, CTX_ENABLED);
	c->link_duration = ColInt4(p, CTX_LINK_DURATION);
	c->link_reusability = ColInt4(p, CTX_LINK_REUSABILITY);
	c->base_url = ColText(p, CTX_LINK_BASE_URL);
	c->template_name = ColText(p, CTX_TEMPLATE_NAME);
	c->template_found = ColBool(p, CTX_TEMPLATE_FOUND);
	c->subject = ColText(p, CTX_SUBJECT);
	c->body = ColText(p, CTX_BODY);
	c->media_found = ColBool(p, CTX_MEDIA_FOUND);
	c->media_type = ColText(p, CTX_MEDIA_TYPE);
	c->media_title = ColText(p, CTX_MEDIA_TITLE);
	c->inviter_found = ColBool(p, CTX_INVITER_FOUND);
	c->inviter_name = ColText(p, CTX_INVITER_NAME);
	c->may_invite = ColBool(p, CTX_MAY_INVITE);
	c->domain_allowed = ColBool(p, CTX_DOMAIN_ALLOWED);
	c->invites_per_hour = ColInt4(p, CTX_INVITES_PER_HOUR);
}

/*
 * settings.invites_per_hour (1.1): refuses with 53400 a creation beyond the
 * limit by this actor in the last hour, invite and guest links together.
 * Creations by one actor queue on the actor's row (see lock_actor_plan).
 */
static void
CheckRateLimit(const char *actor_id, int32 per_hour, bool with_resends)
{
	ItmPlan    *p = with_resends ? &rate_count_plan_1_1_1 : &rate_count_plan;
	Datum		args[1];
	int64		created;

	if (per_hour <= 0)
		return;
	args[0] = CStringGetTextDatum(actor_id);
	RunPlan(&lock_actor_plan, args, NULL, false, SPI_OK_SELECT);
	RunPlanAfterLock(p, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the rate count returned %llu rows",
			 (unsigned long long) SPI_processed);
	created = ColInt8(p, RATE_CREATED);
	if (created >= per_hour)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("user \"%s\" has reached the limit of %d new links per hour",
						Clip(actor_id, 100), per_hour),
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
	RequireEnabled(c->enabled);
	if (!c->media_found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("media \"%s\" does not exist", Clip(a->media_id, 100))));
	if (!c->inviter_found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", Clip(a->inviter_id, 100)),
				 errdetail("The inviter must be a user in invitetomedia.users.")));
	if (c->media_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.media.media_type is NULL for media \"%s\"",
						Clip(a->media_id, 100)),
				 errhint("Set the media's type.")));

	if (!RoleAllowedForMedia(a->role, c->media_type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" is not allowed for media of type \"%s\"",
						a->role, Clip(c->media_type, 64)),
				 errdetail("On-demand media (video, audio, image, document, quiz) take viewer only; live media (webcast, simulive, diy_live, room) take viewer, moderator or speaker.")));

	/* the policies */
	if (!c->may_invite)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not invite to media \"%s\"",
						Clip(a->inviter_id, 100), Clip(a->media_id, 100)),
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
						Clip(c->template_name, 100)),
				 errdetail("settings.invite_email_template names a template that is not in invitetomedia.email_templates."),
				 errhint("Create the template, or set settings.invite_email_template to an existing one (or to NULL to disable invites by email).")));
	if (c->subject == NULL || c->body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the invite email template \"%s\" has no %s",
						Clip(c->template_name, 100), c->subject == NULL ? "subject" : "body"),
				 errdetail("settings.invite_email_template names a template whose subject or body is NULL."),
				 errhint("Give the template a subject and a body with {URL}.")));
}

/* The link's secret: a token from the strong random source. */
static void
NewToken(const char *prefix, char token[ITM_TOKEN_LEN + 1])
{
	unsigned char random[ITM_TOKEN_RANDOM_BYTES];

	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token")));
	itm_token_encode_prefix(random, prefix, token);
	explicit_bzero(random, sizeof(random));
}

/* A token from the strong random source; only its hash is stored. */
static void
InsertInvite(const CreateArgs *a, const CreateContext *c, CreatedInvite *inv)
{
	ItmPlan    *p = a->api >= ITM_API_1_1 ? &create_insert_plan_1_1 : &create_insert_plan;
	Datum		args[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', 'n'};

	NewToken(ITM_TOKEN_PREFIX, inv->token);
	inv->url = psprintf("%s%s", c->base_url, inv->token);

	args[0] = PointerGetDatum(TokenHash(inv->token, ITM_TOKEN_LEN));
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
	/* 1.1: through the table access method where it can (itm_direct.c) */
	if (a->api >= ITM_API_1_1)
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
	RunPlan(p, args, nulls, false, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the invite insert returned %llu rows",
			 (unsigned long long) SPI_processed);
	inv->invite_id = ColInt8(p, INS_INVITE_ID);
	inv->expires_at = Col(p, INS_EXPIRES_AT, &(bool) {0});
	inv->expires_text = ColText(p, INS_EXPIRES_TEXT);
}

/* The email goes into the outbox in this transaction; NOTIFY wakes a sender. */
static void
QueueInviteEmail(const CreateArgs *a, const CreateContext *c, const CreatedInvite *inv)
{
	ItmPlan    *p = &create_outbox_plan;
	const char *values[ITM_PH_COUNT];
	Datum		args[5];
	int64		message_id;
	bool		relay = ItmRelayAnnounces();	/* before the message's id */

	values[ITM_PH_URL] = inv->url;
	values[ITM_PH_FIRST_NAME] = a->first_name;
	values[ITM_PH_LAST_NAME] = a->last_name;
	values[ITM_PH_EMAIL] = a->email;
	values[ITM_PH_MEDIA_TITLE] = c->media_title ? c->media_title : "";
	values[ITM_PH_ROLE] = a->role;
	values[ITM_PH_EXPIRES_AT] = inv->expires_text;
	values[ITM_PH_INVITER_NAME] = c->inviter_name ? c->inviter_name : "";

	/* the event relay needs the xid before the id (the invite's write gave it) */
	(void) GetTopTransactionId();
	args[0] = Int64GetDatum(inv->invite_id);
	args[1] = CStringGetTextDatum(a->email);
	args[2] = CStringGetTextDatum(psprintf("%s %s", a->first_name, a->last_name));
	args[3] = CStringGetTextDatum(RenderSubject(c->subject, values));
	args[4] = CStringGetTextDatum(Render(c->body, values));
	RunPlan(p, args, NULL, false, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the outbox insert returned %llu rows",
			 (unsigned long long) SPI_processed);
	message_id = ColInt8(p, OUT_MESSAGE_ID);

	/*
	 * A wake-up call only: any role may LISTEN, so no token, no address.
	 * Sent by the relay after the commit where it runs (itm_relay.c).
	 */
	if (!relay)
		Async_Notify(NOTIFY_CHANNEL, psprintf(INT64_FORMAT, message_id));
}

static Datum
CreateImpl(FunctionCallInfo fcinfo, ItmApi api, bool with_resends)
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
		RequireArg(fcinfo, i, argnames[i]);
	PreventCommandIfReadOnly("invite_create()");
	MaterializeResult(fcinfo);

	/* all further allocations live until SPI_finish: one call's worth */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	memset(&a, 0, sizeof(a));
	a.api = api;
	ReadCreateArgs(fcinfo, &a);
	ReadCreateContext(&a, &c);
	CheckCreateRules(&a, &c);
	CheckRateLimit(a.inviter_id, c.invites_per_hour, with_resends);
	InsertInvite(&a, &c, &inv);
	if (a.send_email)
		QueueInviteEmail(&a, &c, &inv);

	result[0] = Int64GetDatum(inv.invite_id);
	result[1] = CStringGetTextDatum(inv.token);
	result[2] = CStringGetTextDatum(inv.url);
	result[3] = inv.expires_at;
	result[4] = Int32GetDatum(c.link_reusability);
	PutResultRow(fcinfo, result, result_nulls);

	explicit_bzero(inv.token, sizeof(inv.token));
	SPI_finish();
	return (Datum) 0;
}

/* 1.0 and 1.0.1 */
PG_FUNCTION_INFO_V1(invite_create);
Datum
invite_create(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_1_0_1, false);
}

/* 1.1: not_before, the rate limit */
PG_FUNCTION_INFO_V1(invite_create_1_1);
Datum
invite_create_1_1(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_1_1, false);
}

/* 1.1.1: mailed resends count towards the rate limit */
PG_FUNCTION_INFO_V1(invite_create_1_1_1);
Datum
invite_create_1_1_1(PG_FUNCTION_ARGS)
{
	return CreateImpl(fcinfo, ITM_API_1_1, true);
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
	Datum		args[3];		/* token hash, email_key, device_id */
	char		nulls[3];
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

	RunPlan(p, call->args, call->nulls, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		call->status = CS_NOT_FOUND;
		/* 1.1: a token replaced by invite_resend */
		if (call->api >= ITM_API_1_1)
		{
			RunPlan(&retired_plan, call->args, NULL, false, SPI_OK_SELECT);
			if (SPI_processed == 1)
			{
				/* the documented order: disabled comes first */
				call->status = ColBool(&retired_plan, RET_ENABLED) ? CS_REVOKED : CS_DISABLED;
				call->invite_id = ColInt8(&retired_plan, RET_INVITE_ID);
			}
		}
		return;
	}
	call->invite_id = ColInt8(p, DX_INVITE_ID);
	max_uses = ColInt4(p, DX_MAX_USES);
	use_count = ColInt4(p, DX_USE_COUNT);
	if (!ColBool(p, DX_ENABLED))
		call->status = CS_DISABLED;
	else if (ColBool(p, DX_REVOKED))
		call->status = CS_REVOKED;
	else if (ColBool(p, DX_EXPIRED))
		call->status = CS_EXPIRED;
	else if (ColBool(p, DX_NOT_YET))
		call->status = CS_NOT_YET;
	else if (ColBool(p, DX_LOCKED))
		call->status = CS_LOCKED;
	else if (!ColBool(p, DX_EMAIL_MATCHES))
		call->status = CS_EMAIL_MISMATCH;
	else if (ColBool(p, DX_DEVICE_SEEN))
		call->status = CS_REJOIN;
	else if (max_uses != -1 && use_count >= max_uses)
		call->status = CS_EXHAUSTED;
	else
		call->status = CS_OK;

	if (call->status == CS_REJOIN)
	{
		call->user_id = ColText(p, DX_USER_ID);
		call->result[CR_INVITE_ID] = Int64GetDatum(call->invite_id);
		call->result_nulls[CR_INVITE_ID] = false;
		ColToResult(p, DX_MEDIA_ID, call->result, call->result_nulls, CR_MEDIA_ID);
		ColToResult(p, DX_ROLE, call->result, call->result_nulls, CR_ROLE);
		ColToResult(p, DX_USER_ID, call->result, call->result_nulls, CR_USER_ID);
		ColToResult(p, DX_FIRST_NAME, call->result, call->result_nulls, CR_FIRST_NAME);
		ColToResult(p, DX_LAST_NAME, call->result, call->result_nulls, CR_LAST_NAME);
		ColToResult(p, DX_EXPIRES_AT, call->result, call->result_nulls, CR_EXPIRES_AT);
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
	ItmPlan    *p = &create_user_plan;
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char	   *user_id;

	args[0] = CStringGetTextDatum(call->email_key);
	args[1] = invite_email;
	args[2] = first_name;
	args[3] = last_name;
	if (first_name_null)
		nulls[2] = 'n';
	if (last_name_null)
		nulls[3] = 'n';
	RunPlan(p, args, nulls, false, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 1)
		user_id = ColText(p, NEWUSER_USER_ID);
	else
	{
		/*
		 * Not created: another session created it concurrently (take it), or
		 * another address owns this user_id.
		 */
		ItmPlan    *f = &find_user_plan[call->api];

		args[0] = CStringGetTextDatum(call->email_key);
		RunPlan(f, args, NULL, false, SPI_OK_SELECT);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("could not create a user for \"%s\"", call->email_key),
					 errdetail("The user_id \"%s\" belongs to a user with another email address.",
							   call->email_key),
					 errhint("Give that user this email address, or change its user_id.")));
		user_id = ColText(f, NEWUSER_USER_ID);
	}
	args[0] = Int64GetDatum(redemption_id);
	args[1] = CStringGetTextDatum(user_id);
	RunPlan(&set_redemption_user_plan, args, NULL, false, SPI_OK_UPDATE);
	return user_id;
}

/*
 * A use taken through the table access method: writes its record (with
 * the invitee's user_id, creating the user on a first use) and fills the
 * result row, as the consume statement's answer would.
 */
static void
RecordDirectUse(ConsumeCall *call, const ItmDirectUse *use)
{
	ItmPlan    *p = &direct_record_plan;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	char	   *user_id;
	int64		redemption_id;

	call->status = CS_OK;
	call->invite_id = use->invite_id;
	if (!ItmDirectRecordUse(use->invite_id, call->email_key,
							call->args[2], call->nulls[2] == 'n',
							&redemption_id, &user_id))
	{
		args[0] = Int64GetDatum(use->invite_id);
		args[1] = call->args[1];
		args[2] = call->args[2];
		nulls[2] = call->nulls[2];
		ItmDirectUseDone();
		RunPlan(p, args, nulls, false, SPI_OK_INSERT_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "invitetomedia: the record of a use was not written");
		user_id = ColText(p, DREC_USER_ID);
		redemption_id = ColInt8(p, DREC_REDEMPTION_ID);
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

	if (call->api >= ITM_API_1_1)
	{
		ItmDirectUse use;

		switch (ItmDirectTakeUse(DatumGetByteaPP(call->args[0]), call->email_key, &use))
		{
			case ITM_DIRECT_TAKEN:
				RecordDirectUse(call, &use);
				return true;
			case ITM_DIRECT_REFUSED:
				return false;
			case ITM_DIRECT_UNSUPPORTED:
				break;			/* the statement decides */
		}
	}

	RunPlan(p, call->args, call->nulls, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;

	call->status = CS_OK;
	call->invite_id = ColInt8(p, USE_INVITE_ID);
	call->result[CR_INVITE_ID] = Int64GetDatum(call->invite_id);
	call->result_nulls[CR_INVITE_ID] = false;
	ColToResult(p, USE_MEDIA_ID, call->result, call->result_nulls, CR_MEDIA_ID);
	ColToResult(p, USE_ROLE, call->result, call->result_nulls, CR_ROLE);
	ColToResult(p, USE_FIRST_NAME, call->result, call->result_nulls, CR_FIRST_NAME);
	ColToResult(p, USE_LAST_NAME, call->result, call->result_nulls, CR_LAST_NAME);
	ColToResult(p, USE_EXPIRES_AT, call->result, call->result_nulls, CR_EXPIRES_AT);
	SetUsesLeft(call->result, call->result_nulls, CR_USES_LEFT,
				ColInt4(p, USE_MAX_USES), ColInt4(p, USE_USE_COUNT));

	user_id = ColText(p, USE_USER_ID);
	if (user_id == NULL)
	{
		redemption_id = ColInt8(p, USE_REDEMPTION_ID);
		email = Col(p, USE_EMAIL, &isnull);
		first_name = Col(p, USE_FIRST_NAME, &first_name_null);
		last_name = Col(p, USE_LAST_NAME, &last_name_null);
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
	Datum		margs[2];

	margs[0] = Int64GetDatum(call->invite_id);
	margs[1] = call->args[0];
	RunPlan(&mismatch_plan, margs, NULL, false, SPI_OK_UPDATE);
	return SPI_processed == 1;
}

/* Every attempt on a known link that took no use is recorded. */
static void
RecordAttempt(ConsumeCall *call)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	args[0] = Int64GetDatum(call->invite_id);
	args[1] = CStringGetTextDatum(consume_status_names[call->status]);
	args[2] = call->args[2];
	nulls[2] = call->nulls[2];
	if (call->user_id)
		args[3] = CStringGetTextDatum(call->user_id);
	else
		nulls[3] = 'n';
	RunPlan(&record_plan, args, nulls, false, SPI_OK_INSERT);
}

static Datum
ConsumeImpl(FunctionCallInfo fcinfo, ItmApi api)
{
	ConsumeCall call;
	text	   *token;
	bool		has_device;
	bool		relay = false;
	int			attempt;
	int			i;

	RequireArg(fcinfo, 0, "token");
	RequireArg(fcinfo, 1, "email");
	MaterializeResult(fcinfo);
	memset(&call, 0, sizeof(call));
	call.api = api;
	call.status = CS_NOT_FOUND;
	for (i = 0; i < CR_NCOLS; i++)
		call.result_nulls[i] = true;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	has_device = !PG_ARGISNULL(2);
	call.nulls[0] = call.nulls[1] = call.nulls[2] = ' ';
	if (has_device)
		call.args[2] = CStringGetTextDatum(IdArg(fcinfo, 2, "device_id"));
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

	call.email_key = EmailKey(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	call.args[0] = PointerGetDatum(TokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));
	call.args[1] = CStringGetTextDatum(call.email_key);

	/*
	 * A device that already redeemed this link rejoins without taking a
	 * use.  The look for its earlier use comes after the row lock, in a
	 * statement of its own, so that it sees a racing use by the same device
	 * that committed while this one waited (see the file's header).
	 */
	if (has_device)
	{
		RunPlan(&lock_invite_plan, call.args, call.nulls, false, SPI_OK_SELECT);
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
		Async_Notify(ACCEPTED_CHANNEL,
					 psprintf("{\"kind\":\"invite\",\"id\":" INT64_FORMAT "}", call.invite_id));
	call.result[CR_STATUS] = CStringGetTextDatum(consume_status_names[call.status]);
	call.result_nulls[CR_STATUS] = false;
	PutResultRow(fcinfo, call.result, call.result_nulls);
	SPI_finish();
	return (Datum) 0;
}

/* The 1.0 SQL function: a 1.0 database's users index is on lower(email). */
PG_FUNCTION_INFO_V1(invite_consume);
Datum
invite_consume(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_1_0);
}

PG_FUNCTION_INFO_V1(invite_consume_1_0_1);
Datum
invite_consume_1_0_1(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_1_0_1);
}

/* 1.1: scheduled links, lockout, retired tokens, the accepted event */
PG_FUNCTION_INFO_V1(invite_consume_1_1);
Datum
invite_consume_1_1(PG_FUNCTION_ARGS)
{
	return ConsumeImpl(fcinfo, ITM_API_1_1);
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
CheckImpl(FunctionCallInfo fcinfo, ItmApi api)
{
	ItmPlan    *p = &check_plan[api];
	text	   *token;
	const char *status = "not_found";
	int			ncols = api >= ITM_API_1_1 ? 7 : 6;
	Datum		result[7];
	bool		result_nulls[7] = {false, true, true, true, true, true, true};

	RequireArg(fcinfo, 0, "token");
	MaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* a malformed or mistyped token (bad checksum): no table is read */
	token = PG_GETARG_TEXT_PP(0);
	if (itm_token_valid(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)))
	{
		Datum		args[1];
		ItmDirectInvite di;
		ItmDirectResult dr = ITM_DIRECT_UNSUPPORTED;
		bool		fill = false;

		args[0] = PointerGetDatum(TokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));
		/* 1.1 reads the invite through the table access method where it can */
		if (api >= ITM_API_1_1)
			dr = ItmDirectReadInvite(DatumGetByteaPP(args[0]), &di);
		if (dr == ITM_DIRECT_UNSUPPORTED)
		{
			RunPlan(p, args, NULL, true, SPI_OK_SELECT);
			if (SPI_processed == 1)
			{
				dr = ITM_DIRECT_TAKEN;
				di.enabled = ColBool(p, CHK_ENABLED);
				di.revoked = ColBool(p, CHK_REVOKED);
				di.expired = ColBool(p, CHK_EXPIRED);
				di.not_yet = ColBool(p, CHK_NOT_YET);
				di.locked = ColBool(p, CHK_LOCKED);
				di.max_uses = ColInt4(p, CHK_MAX_USES);
				di.use_count = ColInt4(p, CHK_USE_COUNT);
				di.media_id = Col(p, CHK_MEDIA_ID, &di.media_id_null);
				di.media_title = Col(p, CHK_MEDIA_TITLE, &di.media_title_null);
				di.role = Col(p, CHK_ROLE, &di.role_null);
				di.expires_at = Col(p, CHK_EXPIRES_AT, &di.expires_at_null);
				di.opens_at = Col(p, CHK_OPENS_AT, &di.opens_at_null);
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
			RunPlan(&retired_plan, args, NULL, true, SPI_OK_SELECT);
			if (SPI_processed == 1)
				status = ColBool(&retired_plan, RET_ENABLED) ? "revoked" : "disabled";
		}
	}
	result[0] = CStringGetTextDatum(status);
	PutResultRow(fcinfo, result, result_nulls);
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(invite_check);
Datum
invite_check(PG_FUNCTION_ARGS)
{
	return CheckImpl(fcinfo, ITM_API_1_0_1);
}

PG_FUNCTION_INFO_V1(invite_check_1_1);
Datum
invite_check_1_1(PG_FUNCTION_ARGS)
{
	return CheckImpl(fcinfo, ITM_API_1_1);
}

/*
 * Who may change a link: its inviter, an administrator, or anyone who may
 * invite to its media (invite_revoke's rule).
 */
static bool MayInviteNow(const char *actor_id, const char *media_id);

static bool
MayManageLink(const char *actor_id, const char *actor_role,
			  const char *created_by, const char *media_id)
{
	if (created_by != NULL && strcmp(created_by, actor_id) == 0)
		return true;
	if (actor_role != NULL && (strcmp(actor_role, "admin") == 0 ||
							   strcmp(actor_role, "unmoderated_admin") == 0))
		return true;
	return MayInviteNow(actor_id, media_id);
}

/* may_invite(actor, media) as the rule says now (NULL: no) */
static bool
MayInviteNow(const char *actor_id, const char *media_id)
{
	Datum		margs[2];

	if (media_id == NULL)
		return false;
	margs[0] = CStringGetTextDatum(actor_id);
	margs[1] = CStringGetTextDatum(media_id);
	RunPlan(&revoke_may_plan, margs, NULL, false, SPI_OK_SELECT);
	return SPI_processed == 1 && ColBool(&revoke_may_plan, MAY_ALLOWED);
}

/*---- invite_revoke ---------------------------------------------------------*/

/* What differs between revoking an invite and revoking a guest link. */
typedef struct RevokeKind
{
	const char *function;		/* for PreventCommandIfReadOnly */
	const char *id_arg;
	const char *noun;			/* "invite", "guest link" */
	const char *who_detail;
	ItmPlan    *lookup;			/* RVK_* columns, row locked */
	ItmPlan    *revoke;
	int			revoke_rc;
} RevokeKind;

/*
 * The inviter (creator), an administrator, or anyone who may invite to the
 * media revokes; true if revoked now, false if it already was.
 */
static Datum
RevokeImpl(FunctionCallInfo fcinfo, const RevokeKind *k)
{
	ItmPlan    *p = k->lookup;
	int64		id;
	char	   *actor_id;
	bool		already;
	Datum		args[2];

	RequireArg(fcinfo, 0, k->id_arg);
	RequireArg(fcinfo, 1, "actor_id");
	PreventCommandIfReadOnly(k->function);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	id = PG_GETARG_INT64(0);
	actor_id = IdArg(fcinfo, 1, "actor_id");
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(actor_id);
	RunPlan(p, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s %lld does not exist", k->noun, (long long) id)));
	already = ColBool(p, RVK_REVOKED);
	if (!ColBool(p, RVK_ACTOR_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", Clip(actor_id, 100))));
	if (!MayManageLink(actor_id, ColText(p, RVK_ACTOR_ROLE),
					   ColText(p, RVK_INVITED_BY), ColText(p, RVK_MEDIA_ID)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not revoke %s %lld",
						Clip(actor_id, 100), k->noun, (long long) id),
				 errdetail("%s", k->who_detail)));

	if (!already)
		RunPlan(k->revoke, args, NULL, false, k->revoke_rc);
	SPI_finish();
	PG_RETURN_BOOL(!already);
}

PG_FUNCTION_INFO_V1(invite_revoke);
Datum
invite_revoke(PG_FUNCTION_ARGS)
{
	static const RevokeKind kind = {
		"invite_revoke()", "invite_id", "invite",
		"The inviter, administrators and those who may invite to the media may revoke its links.",
		&revoke_lookup_plan, &revoke_plan, SPI_OK_DELETE
	};

	return RevokeImpl(fcinfo, &kind);
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
ResendImpl(FunctionCallInfo fcinfo, bool v111)
{
	ItmPlan    *p = &resend_lookup_plan;
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
	Datum		args[3];
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};
	int32		max_uses;
	int32		per_hour;

	RequireArg(fcinfo, 0, "invite_id");
	RequireArg(fcinfo, 1, "actor_id");
	RequireArg(fcinfo, 2, "send_email");
	PreventCommandIfReadOnly("invite_resend()");
	MaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	memset(&a, 0, sizeof(a));
	memset(&c, 0, sizeof(c));
	invite_id = PG_GETARG_INT64(0);
	actor_id = IdArg(fcinfo, 1, "actor_id");
	a.send_email = PG_GETARG_BOOL(2);
	a.api = ITM_API_1_1;

	args[0] = Int64GetDatum(invite_id);
	args[1] = CStringGetTextDatum(actor_id);
	RunPlan(p, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invite %lld does not exist", (long long) invite_id)));
	if (!ColBool(p, RS_ACTOR_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", Clip(actor_id, 100))));
	invited_by = ColText(p, RS_INVITED_BY);
	a.media_id = ColText(p, RS_MEDIA_ID);
	actor_role = ColText(p, RS_ACTOR_ROLE);
	revoked = ColBool(p, RS_REVOKED);
	exhausted = ColBool(p, RS_EXHAUSTED);
	a.email = ColText(p, RS_EMAIL);
	a.first_name = ColText(p, RS_FIRST_NAME);
	a.last_name = ColText(p, RS_LAST_NAME);
	a.role = ColText(p, RS_ROLE);
	old_hash = datumCopy(Col(p, RS_TOKEN_HASH, &isnull), false, -1);
	c.enabled = ColBool(p, RS_ENABLED);
	c.link_duration = ColInt4(p, RS_LINK_DURATION);
	c.base_url = ColText(p, RS_LINK_BASE_URL);
	c.template_name = ColText(p, RS_TEMPLATE_NAME);
	c.template_found = ColBool(p, RS_TEMPLATE_FOUND);
	c.subject = ColText(p, RS_SUBJECT);
	c.body = ColText(p, RS_BODY);
	c.media_title = ColText(p, RS_MEDIA_TITLE);
	c.inviter_name = ColText(p, RS_INVITER_NAME);
	per_hour = ColInt4(p, RS_INVITES_PER_HOUR);

	if (!MayManageLink(actor_id, actor_role, invited_by, a.media_id))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not resend invite %lld",
						Clip(actor_id, 100), (long long) invite_id),
				 errdetail("The inviter, administrators and those who may invite to the media may resend its links.")));
	/* 1.1.1: the right to invite to the media, which a NULL media_id cannot name */
	if (v111 && a.media_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.invites.media_id is NULL for invite %lld", (long long) invite_id),
				 errdetail("The extension's schema declares it NOT NULL; the constraint was dropped, or the row was written where constraints are not checked."),
				 errhint("Set the invite's media_id, and restore the NOT NULL constraint.")));
	if (v111 && !MayInviteNow(actor_id, a.media_id))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not resend invite %lld: they may not invite to media \"%s\" now",
						Clip(actor_id, 100), (long long) invite_id, Clip(a.media_id, 100)),
				 errdetail("A resend opens the link again, so it needs what a new invite needs (may_invite()); revoking stays allowed."),
				 errhint("Ask someone who may invite to the media to resend it, or revoke it.")));
	RequireEnabled(c.enabled);
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
		CheckRateLimit(actor_id, per_hour, true);

	/* the new token; the old one is kept as a hash only, to answer revoked */
	NewToken(ITM_TOKEN_PREFIX, inv.token);
	inv.invite_id = invite_id;
	inv.url = psprintf("%s%s", c.base_url, inv.token);
	args[0] = Int64GetDatum(invite_id);
	args[1] = PointerGetDatum(TokenHash(inv.token, ITM_TOKEN_LEN));
	args[2] = Int32GetDatum(c.link_duration);
	RunPlan(&resend_update_plan, args, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the resend update returned %llu rows",
			 (unsigned long long) SPI_processed);
	inv.expires_at = Col(&resend_update_plan, RSU_EXPIRES_AT, &isnull);
	inv.expires_text = ColText(&resend_update_plan, RSU_EXPIRES_TEXT);
	max_uses = ColInt4(&resend_update_plan, RSU_MAX_USES);

	args[0] = old_hash;
	args[1] = Int64GetDatum(invite_id);
	RunPlan(&retire_token_plan, args, NULL, false, SPI_OK_INSERT);
	args[0] = Int64GetDatum(invite_id);
	RunPlan(&drop_unsent_plan, args, NULL, false, SPI_OK_DELETE);
	if (a.send_email)
		QueueInviteEmail(&a, &c, &inv);
	if (v111)
	{
		args[0] = Int64GetDatum(invite_id);
		args[1] = CStringGetTextDatum(actor_id);
		args[2] = BoolGetDatum(a.send_email);
		RunPlan(&record_resend_plan, args, NULL, false, SPI_OK_INSERT);
	}

	result[0] = CStringGetTextDatum(inv.token);
	result[1] = CStringGetTextDatum(inv.url);
	result[2] = inv.expires_at;
	result[3] = Int32GetDatum(max_uses);
	PutResultRow(fcinfo, result, result_nulls);
	explicit_bzero(inv.token, sizeof(inv.token));
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(invite_resend);
Datum
invite_resend(PG_FUNCTION_ARGS)
{
	return ResendImpl(fcinfo, false);
}

PG_FUNCTION_INFO_V1(invite_resend_1_1_1);
Datum
invite_resend_1_1_1(PG_FUNCTION_ARGS)
{
	return ResendImpl(fcinfo, true);
}

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

/* advisory lock class (the two-key form's first key): "ITMG" */
#define GUEST_DEVICE_LOCK_CLASS 0x49544D47
/* invite_purge's advisory lock: "ITMP" */
#define PURGE_LOCK_CLASS 0x49544D50

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

#define GUEST_LINKS_PER_MEDIA	3
#define GUEST_NAME_MAX_CHARS	200

static Datum
GuestCreateImpl(FunctionCallInfo fcinfo, bool with_resends)
{
	ItmPlan    *p = &guest_context_plan;
	char	   *media_id;
	char	   *actor_id;
	char	   *name;
	char		token[ITM_TOKEN_LEN + 1];
	char	   *base_url;
	int32		per_hour;
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};

	RequireArg(fcinfo, 0, "media_id");
	RequireArg(fcinfo, 1, "actor_id");
	RequireArg(fcinfo, 2, "name");
	PreventCommandIfReadOnly("guest_link_create()");
	MaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the arguments on their own (22023) */
	media_id = IdArg(fcinfo, 0, "media_id");
	actor_id = IdArg(fcinfo, 1, "actor_id");
	name = NameArg(fcinfo, 2, "name", GUEST_NAME_MAX_CHARS,
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
	RunPlan(p, args, NULL, false, SPI_OK_SELECT);
	RequireSettingsRow(SPI_processed);
	RequireEnabled(ColBool(p, GCTX_ENABLED));
	if (!ColBool(p, GCTX_MEDIA_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("media \"%s\" does not exist", Clip(media_id, 100))));
	if (!ColBool(p, GCTX_ACTOR_FOUND))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", Clip(actor_id, 100)),
				 errdetail("The creator must be a user in invitetomedia.users.")));
	if (!ColBool(p, GCTX_MAY_INVITE))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not create guest links to media \"%s\"",
						Clip(actor_id, 100), Clip(media_id, 100)),
				 errdetail("Guest links are created by those who may invite: the media's owner, co-owners, co-editors and co-publishers who also pass settings.allowed_users_roles; see invitetomedia.may_invite().")));
	base_url = ColText(p, GCTX_LINK_BASE_URL);
	per_hour = ColInt4(p, GCTX_INVITES_PER_HOUR);

	CheckRateLimit(actor_id, per_hour, with_resends);

	args[0] = CStringGetTextDatum(media_id);
	RunPlan(&lock_media_plan, args, NULL, false, SPI_OK_SELECT);
	RunPlanAfterLock(&guest_usable_plan, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the guest link count returned %llu rows",
			 (unsigned long long) SPI_processed);
	if (ColInt8(&guest_usable_plan, GUS_USABLE) >= GUEST_LINKS_PER_MEDIA)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("media \"%s\" already has %d usable guest links: at most %d are allowed",
						Clip(media_id, 100), GUEST_LINKS_PER_MEDIA, GUEST_LINKS_PER_MEDIA),
				 errdetail("A guest link is usable while it is not revoked, not expired and has clicks left."),
				 errhint("Revoke one with guest_link_revoke() first.")));

	NewToken(ITM_GUEST_TOKEN_PREFIX, token);
	args[0] = PointerGetDatum(TokenHash(token, ITM_TOKEN_LEN));
	args[1] = CStringGetTextDatum(media_id);
	args[2] = CStringGetTextDatum(name);
	args[3] = CStringGetTextDatum(actor_id);
	args[4] = PG_ARGISNULL(4) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(4));
	nulls[4] = PG_ARGISNULL(4) ? 'n' : ' ';
	args[5] = PG_ARGISNULL(3) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(3));
	nulls[5] = PG_ARGISNULL(3) ? 'n' : ' ';
	RunPlan(&guest_insert_plan, args, nulls, false, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the guest link insert returned %llu rows",
			 (unsigned long long) SPI_processed);

	result[0] = Int64GetDatum(ColInt8(&guest_insert_plan, GINS_GUEST_LINK_ID));
	result[1] = CStringGetTextDatum(token);
	result[2] = CStringGetTextDatum(psprintf("%s%s", base_url, token));
	ColToResult(&guest_insert_plan, GINS_EXPIRES_AT, result, result_nulls, 3);
	PutResultRow(fcinfo, result, result_nulls);
	explicit_bzero(token, sizeof(token));
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(guest_link_create);
Datum
guest_link_create(PG_FUNCTION_ARGS)
{
	return GuestCreateImpl(fcinfo, false);
}

/* 1.1.1: mailed resends count towards the rate limit */
PG_FUNCTION_INFO_V1(guest_link_create_1_1_1);
Datum
guest_link_create_1_1_1(PG_FUNCTION_ARGS)
{
	return GuestCreateImpl(fcinfo, true);
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
static ItmPlan guest_diagnose_plan_1_1_1 = {
	GUEST_DIAGNOSE_SQL("j.join_id::pg_catalog.int8", "device_join_id",
					   "NULL::pg_catalog.text", "guest_allowed"),
	4, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID}, GDX_NCOLS, guest_diagnose_cols_1_1_1, NULL
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
	Datum		args[4];		/* token hash, device_id, email_key, email */
	char		nulls[4];
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
	ItmPlan    *p = j->guest_only ? &guest_diagnose_plan_1_1_1 : &guest_diagnose_plan;
	int32		clicks;
	bool		isnull;
	Datum		limit;

	/* without a device, through the table access method where it can */
	if (j->nulls[1] == 'n')
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
	/* after the device's advisory lock: see its earlier join at any isolation */
	if (j->nulls[1] == ' ')
		RunPlanAfterLock(p, j->args, j->nulls, SPI_OK_SELECT);
	else
		RunPlan(p, j->args, j->nulls, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		j->status = GS_NOT_FOUND;
		return;
	}
	j->guest_link_id = ColInt8(p, GDX_GUEST_LINK_ID);
	limit = Col(p, GDX_CLICK_LIMIT, &isnull);
	j->limited = !isnull;
	clicks = ColInt4(p, GDX_CLICKS);
	j->user_id = ColText(p, GDX_USER_ID);
	if (!ColBool(p, GDX_ENABLED))
		j->status = GS_DISABLED;
	else if (ColBool(p, GDX_REVOKED))
		j->status = GS_REVOKED;
	else if (ColBool(p, GDX_EXPIRED))
		j->status = GS_EXPIRED;
	else if (ColBool(p, GDX_DEVICE_SEEN))
		j->status = GS_REJOIN;
	else if (!ColBool(p, GDX_DOMAIN_ALLOWED))
		j->status = GS_DOMAIN_RESTRICTED;
	else if (j->limited && clicks >= DatumGetInt32(limit))
		j->status = GS_EXHAUSTED;
	else
		j->status = GS_OK;

	/* the row as ok and rejoin return it (user_id and clicks_left: later) */
	j->result[GR_GUEST_LINK_ID] = Int64GetDatum(j->guest_link_id);
	j->result_nulls[GR_GUEST_LINK_ID] = false;
	ColToResult(p, GDX_MEDIA_ID, j->result, j->result_nulls, GR_MEDIA_ID);
	ColToResult(p, GDX_EXPIRES_AT, j->result, j->result_nulls, GR_EXPIRES_AT);
	j->result_nulls[GR_CLICKS_LEFT] = !j->limited;
	if (j->limited)
		j->result[GR_CLICKS_LEFT] = Int32GetDatum(Max(DatumGetInt32(limit) - clicks, 0));
	if (j->status == GS_REJOIN && j->guest_only)
	{
		Datum		d = Col(p, GDX_DEVICE_USER_ID, &j->join_id_null);

		j->join_id = j->join_id_null ? 0 : DatumGetInt64(d);
	}
	else if (j->status == GS_REJOIN)
	{
		char	   *device_user = ColText(p, GDX_DEVICE_USER_ID);

		if (device_user != NULL)
			j->user_id = device_user;
	}
}

/* A missing user is created as invite_consume creates one. */
static char *
EnsureGuestUser(GuestJoin *j)
{
	Datum		args[4];

	if (j->user_id != NULL)
		return j->user_id;
	args[0] = CStringGetTextDatum(j->email_key);
	args[1] = CStringGetTextDatum(j->email);
	args[2] = CStringGetTextDatum(j->first_name);
	args[3] = CStringGetTextDatum(j->last_name);
	RunPlan(&create_user_plan, args, NULL, false, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 1)
		return ColText(&create_user_plan, NEWUSER_USER_ID);
	RunPlan(&find_user_plan[ITM_API_1_1], args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("could not create a user for \"%s\"", j->email_key),
				 errdetail("The user_id \"%s\" belongs to a user with another email address.",
						   j->email_key),
				 errhint("Give that user this email address, or change its user_id.")));
	return ColText(&find_user_plan[ITM_API_1_1], NEWUSER_USER_ID);
}

/* Takes a click (or the shared lock of an unlimited link); true if it did. */
static bool
TakeGuestClick(GuestJoin *j)
{
	Datum		args[1];

	args[0] = Int64GetDatum(j->guest_link_id);
	if (j->limited)
	{
		RunPlan(&guest_take_plan, args, NULL, false, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed != 1)
			return false;
		j->result[GR_CLICKS_LEFT] = Int32GetDatum(ColInt4(&guest_take_plan, GTK_CLICKS_LEFT));
		j->result_nulls[GR_CLICKS_LEFT] = false;
		return true;
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
	RunPlan(&guest_share_plan, args, NULL, false, SPI_OK_SELECT);
	return SPI_processed == 1;
}

static void
RecordGuestJoin(GuestJoin *j)
{
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

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
	if (j->status == GS_OK &&
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
	if (j->guest_only && j->status == GS_OK)
	{
		RunPlan(&guest_record_plan_1_1_1, args, nulls, false, SPI_OK_INSERT_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "invitetomedia: the record of a join was not written");
		j->join_id = ColInt8(&guest_record_plan_1_1_1, GREC_JOIN_ID);
		j->join_id_null = false;
	}
	else
		RunPlan(&guest_record_plan, args, nulls, false, SPI_OK_INSERT);
}

static Datum
GuestJoinImpl(FunctionCallInfo fcinfo, bool guest_only)
{
	GuestJoin	j;
	text	   *token;
	bool		relay = false;
	int			attempt;
	int			i;

	RequireArg(fcinfo, 0, "token");
	RequireArg(fcinfo, 1, "email");
	RequireArg(fcinfo, 2, "first_name");
	RequireArg(fcinfo, 3, "last_name");
	MaterializeResult(fcinfo);
	memset(&j, 0, sizeof(j));
	j.status = GS_NOT_FOUND;
	j.guest_only = guest_only;
	j.join_id_null = true;
	for (i = 0; i < GR_NCOLS; i++)
		j.result_nulls[i] = true;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* what the guest typed (22023): nothing is read or written before */
	j.email = EmailArg(fcinfo, 1, "email");
	j.first_name = NameArg(fcinfo, 2, "first_name", ITM_NAME_MAX_CHARS, NULL);
	j.last_name = NameArg(fcinfo, 3, "last_name", ITM_NAME_MAX_CHARS, NULL);
	j.email_key = EmailKey(j.email);
	j.nulls[0] = j.nulls[1] = j.nulls[2] = j.nulls[3] = ' ';
	if (PG_ARGISNULL(4))
		j.nulls[1] = 'n';
	else
		j.args[1] = CStringGetTextDatum(IdArg(fcinfo, 4, "device_id"));
	j.args[2] = CStringGetTextDatum(j.email_key);
	j.args[3] = CStringGetTextDatum(j.email);

	/* a malformed, mistyped or invite token: no table is read */
	token = PG_GETARG_TEXT_PP(0);
	if (!itm_token_valid_prefix(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token),
								ITM_GUEST_TOKEN_PREFIX))
		goto done;
	PreventCommandIfReadOnly("guest_link_join()");
	relay = ItmRelayAnnounces();	/* before the join's id: itm_relay.c */
	j.args[0] = PointerGetDatum(TokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));

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
		Async_Notify(ACCEPTED_CHANNEL,
					 psprintf("{\"kind\":\"guest_link\",\"id\":" INT64_FORMAT "}",
							  j.guest_link_id));

done:
	j.result[GR_STATUS] = CStringGetTextDatum(guest_status_names[j.status]);
	j.result_nulls[GR_STATUS] = false;
	PutResultRow(fcinfo, j.result, j.result_nulls);
	SPI_finish();
	return (Datum) 0;
}

/* 1.1: the joiner becomes (or is found as) a user, returned as user_id */
PG_FUNCTION_INFO_V1(guest_link_join);
Datum
guest_link_join(PG_FUNCTION_ARGS)
{
	return GuestJoinImpl(fcinfo, false);
}

/* 1.1.1: a guest is a guest: user_id NULL, join_id the identity */
PG_FUNCTION_INFO_V1(guest_link_join_1_1_1);
Datum
guest_link_join_1_1_1(PG_FUNCTION_ARGS)
{
	return GuestJoinImpl(fcinfo, true);
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
	RVK_NCOLS, revoke_lookup_cols, NULL
};

static ItmPlan guest_revoke_plan = {
	"UPDATE invitetomedia.guest_links SET revoked_at = pg_catalog.now(), revoked_by = $2"
	" WHERE guest_link_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL",
	2, {INT8OID, TEXTOID}, 0, NULL, NULL
};

PG_FUNCTION_INFO_V1(guest_link_revoke);
Datum
guest_link_revoke(PG_FUNCTION_ARGS)
{
	static const RevokeKind kind = {
		"guest_link_revoke()", "guest_link_id", "guest link",
		"The link's creator, administrators and those who may invite to the media may revoke its links.",
		&guest_revoke_lookup_plan, &guest_revoke_plan, SPI_OK_UPDATE
	};

	return RevokeImpl(fcinfo, &kind);
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

static Datum
PurgeImpl(FunctionCallInfo fcinfo, ItmApi api)
{
	Interval   *keep;
	TimestampTz now;
	TimestampTz cutoff;
	uint64		purged;
	Datum		args[1];

	RequireArg(fcinfo, 0, "keep");
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
	RunPlan(&purge_plan, args, NULL, false, SPI_OK_DELETE);
	purged = SPI_processed;
	if (api >= ITM_API_1_1)
	{
		RunPlan(&guest_purge_plan, args, NULL, false, SPI_OK_DELETE);
		purged += SPI_processed;
	}
	SPI_finish();
	PG_RETURN_INT64((int64) purged);
}

/*---- invites_write_guard ---------------------------------------------------*/

/*
 * Statement trigger on invitetomedia.invites: only its owner (the API
 * functions run as the owner) or a member of the owning role writes links.
 * A role a DBA granted INSERT, UPDATE, DELETE or TRUNCATE would otherwise
 * bypass what invite_create enforces (settings, roles, domains) or undo a
 * revoke.  In C: it fires for every consume's UPDATE.
 */
PG_FUNCTION_INFO_V1(invites_write_guard);
Datum
invites_write_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		elog(ERROR, "invites_write_guard: must be fired BEFORE, FOR EACH STATEMENT");

	if (!object_ownercheck(RelationRelationId, RelationGetRelid(trigdata->tg_relation), GetUserId()))
	{
		if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
			op = "INSERT";
		else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			op = "UPDATE";
		else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
			op = "DELETE";
		else
			op = "TRUNCATE";
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s on invitetomedia.%s is reserved to its owner",
						op, RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("Links are written only through the API, which applies the settings and the policies."),
				 errhint("Use invite_create(), invite_revoke() or invite_purge().")));
	}
	return PointerGetDatum(NULL);
}

/*---- normalize_domain ------------------------------------------------------*/

PG_FUNCTION_INFO_V1(normalize_domain);
Datum
normalize_domain(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	char	   *out;
	int			code;
	size_t		i;

	itm_trim_spaces(&s, &len);
	if (len > 0 && s[0] == '@')
	{
		s++;
		len--;
	}
	code = itm_domain_check(s, len);
	if (code != ITM_DOMAIN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid domain \"%s\"", Clip(text_to_cstring(t), 100)),
				 errdetail("%s", itm_domain_problem(code)),
				 errhint(code == ITM_DOMAIN_NON_ASCII ?
						 "Write an internationalised domain in its punycode (xn--) form." :
						 "Write a domain such as university.edu, without @ or spaces.")));
	out = pnstrdup(s, len);
	for (i = 0; i < len; i++)
		out[i] = pg_ascii_tolower((unsigned char) out[i]);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, len));
}
