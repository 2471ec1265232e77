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
 * domain_allowed(), which are also the row-level security policies.
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
 * Redemption records have no foreign key to invites on purpose: the key
 * check would take a share lock on the invite row for every consume, and
 * share locks from many sessions on one hot row become multixacts.
 *
 * Every query is prepared once per backend with SPI_prepare/SPI_keepplan
 * and is fully schema-qualified, operators included; the functions run as
 * SECURITY DEFINER with search_path = pg_catalog, pg_temp (see the install
 * script), so nothing a caller plants in public or pg_temp is ever called.
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
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "src/itm_text.h"

#if PG_VERSION_NUM >= 150000
#define ItmCryptohashError(ctx) pg_cryptohash_error(ctx)
#else
#define ItmCryptohashError(ctx) "unknown error"
#endif

PG_MODULE_MAGIC;

#define NOTIFY_CHANNEL "invitetomedia_email"

/* A prepared statement kept for the life of the backend. */
typedef struct ItmPlan
{
	SPIPlanPtr	plan;
	const char *sql;
	int			nargs;
	Oid			argtypes[9];
} ItmPlan;

/*---- saved plans -------------------------------------------------------*/

/*
 * Everything invite_create needs to decide, in one round trip: settings,
 * template, media, inviter, and the two policies exactly as a DBA reads
 * them (may_invite() and domain_allowed()).  The errors are raised in the
 * documented order whatever this evaluated.
 */
static ItmPlan create_context_plan = {
	NULL,
	"SELECT s.enabled, s.link_duration, s.link_reusability, s.link_base_url,"
	"       s.invite_email_template IS NULL, t.subject, t.body,"
	"       m.media_id IS NOT NULL, m.media_type, m.title,"
	"       u.user_id IS NOT NULL,"
	"       pg_catalog.concat_ws(' ', u.first_name, u.last_name),"
	"       invitetomedia.may_invite($2, $1), invitetomedia.domain_allowed($3)"
	"  FROM invitetomedia.settings s"
	"  LEFT JOIN invitetomedia.email_templates t"
	"         ON t.name OPERATOR(pg_catalog.=) s.invite_email_template"
	"  LEFT JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) $1"
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static ItmPlan create_insert_plan = {
	NULL,
	"INSERT INTO invitetomedia.invites"
	"  (token_hash, media_id, role, email, first_name, last_name, invited_by,"
	"   expires_at, max_uses)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7,"
	"   pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(mins => $8), $9)"
	" RETURNING invite_id, expires_at,"
	"   pg_catalog.to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')",
	9, {BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID}
};

static ItmPlan create_outbox_plan = {
	NULL,
	"INSERT INTO invitetomedia.outbox (invite_id, to_email, to_name, subject, body)"
	" VALUES ($1, $2, $3, $4, $5) RETURNING message_id",
	5, {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};

/*
 * The use itself: one UPDATE carrying every condition, then the redemption
 * record with the invitee's user_id, in the same statement.  $2 is the typed
 * email, trimmed and lower-cased.  A user that does not exist yet is created
 * by a second statement (create_user_plan): only a first use by a new email
 * pays for it.
 */
static ItmPlan consume_plan = {
	NULL,
	"WITH upd AS ("
	"  UPDATE invitetomedia.invites i"
	"     SET use_count = i.use_count OPERATOR(pg_catalog.+) 1,"
	"         used_up_at = CASE WHEN i.max_uses OPERATOR(pg_catalog.<>) -1"
	"                            AND i.use_count OPERATOR(pg_catalog.+) 1"
	"                                OPERATOR(pg_catalog.>=) i.max_uses"
	"                           THEN pg_catalog.now() END"
	"   WHERE i.token_hash OPERATOR(pg_catalog.=) $1"
	"     AND i.revoked_at IS NULL"
	"     AND i.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()"
	"     AND pg_catalog.lower(i.email) OPERATOR(pg_catalog.=) $2"
	"     AND (i.max_uses OPERATOR(pg_catalog.=) -1"
	"          OR i.use_count OPERATOR(pg_catalog.<) i.max_uses)"
	"     AND (SELECT s.enabled FROM invitetomedia.settings s)"
	"  RETURNING i.invite_id, i.media_id, i.role, i.email, i.first_name,"
	"            i.last_name, i.max_uses, i.use_count, i.expires_at"
	"), rec AS ("
	"  INSERT INTO invitetomedia.redemptions (invite_id, status, device_id, user_id)"
	"  SELECT upd.invite_id, 'ok', $3,"
	"         (SELECT us.user_id FROM invitetomedia.users us"
	"           WHERE pg_catalog.lower(us.email) OPERATOR(pg_catalog.=) $2)"
	"    FROM upd"
	"  RETURNING redemption_id, user_id"
	")"
	" SELECT upd.invite_id, upd.media_id, upd.role, rec.user_id, upd.first_name,"
	"        upd.last_name, upd.max_uses, upd.use_count, upd.expires_at,"
	"        rec.redemption_id, upd.email"
	"   FROM upd, rec",
	3, {BYTEAOID, TEXTOID, TEXTOID}
};

/*
 * First use by an email no user has: user_id = the lower-cased email, role
 * anonymous, names from the invite.  Nothing is returned on a conflict: a
 * concurrent first use created the user, or another address owns the id.
 */
static ItmPlan create_user_plan = {
	NULL,
	"INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)"
	" VALUES (pg_catalog.lower($1), $1, $2, $3, 'anonymous')"
	" ON CONFLICT DO NOTHING RETURNING user_id",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

/* Why a consume took nothing (or whether this device rejoins). */
static ItmPlan consume_diagnose_plan = {
	NULL,
	"SELECT i.invite_id, i.media_id, i.role, i.first_name, i.last_name,"
	"       i.max_uses, i.use_count, i.expires_at,"
	"       s.enabled, i.revoked_at IS NOT NULL,"
	"       i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now(),"
	"       pg_catalog.lower(i.email) OPERATOR(pg_catalog.=) $2,"
	"       ($3::text IS NOT NULL AND EXISTS ("
	"          SELECT 1 FROM invitetomedia.redemptions r"
	"           WHERE r.invite_id OPERATOR(pg_catalog.=) i.invite_id"
	"             AND r.device_id OPERATOR(pg_catalog.=) $3"
	"             AND r.status OPERATOR(pg_catalog.=) ANY (ARRAY['ok', 'rejoin']))),"
	"       (SELECT us.user_id FROM invitetomedia.users us"
	"         WHERE pg_catalog.lower(us.email) OPERATOR(pg_catalog.=)"
	"               pg_catalog.lower(i.email))"
	"  FROM invitetomedia.invites i CROSS JOIN invitetomedia.settings s"
	" WHERE i.token_hash OPERATOR(pg_catalog.=) $1",
	3, {BYTEAOID, TEXTOID, TEXTOID}
};

/*
 * Records a refused attempt (or a rejoin), which holds no lock on the invite
 * until here.  FOR KEY SHARE makes a concurrent invite_purge wait for this
 * transaction, so its cleanup trigger sees the record; a purge that already
 * committed leaves nothing to record.  It does not conflict with consumes.
 */
static ItmPlan record_plan = {
	NULL,
	"INSERT INTO invitetomedia.redemptions (invite_id, status, device_id, user_id)"
	" SELECT i.invite_id, $2, $3, $4 FROM invitetomedia.invites i"
	"  WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	"    FOR KEY SHARE",
	4, {INT8OID, TEXTOID, TEXTOID, TEXTOID}
};

/* The rare path: a user appeared concurrently for the invitee's email. */
static ItmPlan find_user_plan = {
	NULL,
	"SELECT us.user_id FROM invitetomedia.users us"
	" WHERE pg_catalog.lower(us.email) OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static ItmPlan set_redemption_user_plan = {
	NULL,
	"UPDATE invitetomedia.redemptions SET user_id = $2"
	" WHERE redemption_id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, TEXTOID}
};

static ItmPlan check_plan = {
	NULL,
	"SELECT s.enabled, i.revoked_at IS NOT NULL,"
	"       i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now(),"
	"       i.max_uses, i.use_count, i.media_id, m.title, i.role, i.expires_at"
	"  FROM invitetomedia.invites i CROSS JOIN invitetomedia.settings s"
	"  LEFT JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) i.media_id"
	" WHERE i.token_hash OPERATOR(pg_catalog.=) $1",
	1, {BYTEAOID}
};

/* Locks the invite: a revoke and a consume of the same link queue up. */
static ItmPlan revoke_lookup_plan = {
	NULL,
	"SELECT i.invited_by, i.media_id, i.revoked_at IS NOT NULL,"
	"       u.user_id IS NOT NULL, u.role"
	"  FROM invitetomedia.invites i"
	"  LEFT JOIN invitetomedia.users u ON u.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE i.invite_id OPERATOR(pg_catalog.=) $1"
	"   FOR UPDATE OF i",
	2, {INT8OID, TEXTOID}
};

static ItmPlan revoke_may_plan = {
	NULL,
	"SELECT invitetomedia.may_invite($1, $2)",
	2, {TEXTOID, TEXTOID}
};

static ItmPlan revoke_plan = {
	NULL,
	"WITH r AS ("
	"  UPDATE invitetomedia.invites SET revoked_at = pg_catalog.now(), revoked_by = $2"
	"   WHERE invite_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL"
	"  RETURNING invite_id"
	")"
	" DELETE FROM invitetomedia.outbox o USING r"
	"  WHERE o.invite_id OPERATOR(pg_catalog.=) r.invite_id AND o.sent_at IS NULL",
	2, {INT8OID, TEXTOID}
};

static ItmPlan purge_plan = {
	NULL,
	"DELETE FROM invitetomedia.invites"
	" WHERE expires_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR revoked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"    OR used_up_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)",
	1, {INTERVALOID}
};

/*---- helpers -------------------------------------------------------------*/

/* Prepares the statement the first time this backend needs it. */
static SPIPlanPtr
GetPlan(ItmPlan *p)
{
	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(p->sql, p->nargs, p->argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		p->plan = plan;
	}
	return p->plan;
}

/* Runs a saved plan; nulls uses SPI's convention (' ' or 'n'). */
static void
RunPlan(ItmPlan *p, Datum *values, const char *nulls, bool read_only, int expected)
{
	int			rc = SPI_execute_plan(GetPlan(p), values, nulls, read_only, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan returned %s, expected %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expected));
}

static Datum
ColDatum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static bool
ColBool(int col)
{
	bool		isnull;
	Datum		d = ColDatum(0, col, &isnull);

	return !isnull && DatumGetBool(d);
}

/* NULL-safe text column as a C string (NULL stays NULL). */
static char *
ColText(int col)
{
	bool		isnull;
	Datum		d = ColDatum(0, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
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

/* At most maxbytes of s for an error message, cut on a character boundary. */
static char *
Clip(const char *s, int maxbytes)
{
	int			len = strlen(s);
	int			cut;

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

/* A person's name: trimmed, not empty, at most ITM_NAME_MAX_CHARS characters. */
static char *
NameArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *raw = TextArg(fcinfo, argno, argname);
	const char *s = raw;
	size_t		len = strlen(raw);
	size_t		nchars;

	itm_trim_spaces(&s, &len);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	nchars = itm_utf8_chars(s, len);
	if (nchars > ITM_NAME_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("At most %d characters are accepted; got %zu.",
						   ITM_NAME_MAX_CHARS, nchars)));
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
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address \"%s\"", Clip(raw, 100)),
				 errdetail("%s%s%s", itm_email_problem(code),
						   code == ITM_EMAIL_DOMAIN ? " " : "",
						   code == ITM_EMAIL_DOMAIN ? itm_domain_problem(dcode) : ""),
				 (code == ITM_EMAIL_NON_ASCII || dcode == ITM_DOMAIN_NON_ASCII) ?
				 errhint("Write an internationalised domain in its punycode (xn--) form.") : 0));
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
			 ctx ? ItmCryptohashError(ctx) : "out of memory");
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

/*---- invite_create ---------------------------------------------------------*/

PG_FUNCTION_INFO_V1(invite_create);
Datum
invite_create(PG_FUNCTION_ARGS)
{
	static const char *const argnames[] = {
		"media_id", "inviter_id", "email", "first_name", "last_name", "role", "send_email"
	};
	char	   *media_id,
			   *inviter_id,
			   *email,
			   *first_name,
			   *last_name,
			   *role;
	bool		send_email;
	int			link_duration,
				link_reusability;
	char	   *base_url,
			   *subject_tmpl,
			   *body_tmpl,
			   *media_type,
			   *media_title,
			   *inviter_name;
	bool		template_unset;
	bool		may_invite;
	bool		domain_allowed;
	unsigned char random[ITM_TOKEN_RANDOM_BYTES];
	char		token[ITM_TOKEN_LEN + 1];
	char	   *url;
	int64		invite_id;
	Datum		expires_at;
	char	   *expires_text;
	Datum		args[9];
	Datum		result[5];
	bool		result_nulls[5] = {false, false, false, false, false};
	int			i;

	for (i = 0; i < 7; i++)
		RequireArg(fcinfo, i, argnames[i]);
	PreventCommandIfReadOnly("invite_create()");
	MaterializeResult(fcinfo);

	/* all further allocations live until SPI_finish: one call's worth */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the arguments, on their own: nothing read yet */
	media_id = IdArg(fcinfo, 0, "media_id");
	inviter_id = IdArg(fcinfo, 1, "inviter_id");
	email = EmailArg(fcinfo, 2, "email");
	first_name = NameArg(fcinfo, 3, "first_name");
	last_name = NameArg(fcinfo, 4, "last_name");
	role = TextArg(fcinfo, 5, "role");
	send_email = PG_GETARG_BOOL(6);
	if (strcmp(role, "viewer") != 0 && strcmp(role, "moderator") != 0 &&
		strcmp(role, "speaker") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid role \"%s\"", Clip(role, 64)),
				 errhint("The role is viewer, moderator or speaker.")));

	/* settings, media, inviter, template, policies */
	args[0] = CStringGetTextDatum(media_id);
	args[1] = CStringGetTextDatum(inviter_id);
	args[2] = CStringGetTextDatum(email);
	RunPlan(&create_context_plan, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia.settings does not hold exactly one row");
	if (!ColBool(1))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invitetomedia is disabled"),
				 errhint("An administrator enables it with UPDATE invitetomedia.settings SET enabled = true.")));
	link_duration = DatumGetInt32(ColDatum(0, 2, &(bool){0}));
	link_reusability = DatumGetInt32(ColDatum(0, 3, &(bool){0}));
	base_url = ColText(4);
	template_unset = ColBool(5);
	subject_tmpl = ColText(6);
	body_tmpl = ColText(7);
	if (!ColBool(8))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("media \"%s\" does not exist", Clip(media_id, 100))));
	media_type = ColText(9);
	media_title = ColText(10);
	if (!ColBool(11))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", Clip(inviter_id, 100)),
				 errdetail("The inviter must be a user in invitetomedia.users.")));
	inviter_name = ColText(12);
	may_invite = ColBool(13);
	domain_allowed = ColBool(14);

	if (!RoleAllowedForMedia(role, media_type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" is not allowed for media of type \"%s\"", role, media_type),
				 errdetail("On-demand media (video, audio, image, document, quiz) take viewer only; live media (webcast, simulive, diy_live, room) take viewer, moderator or speaker.")));

	/* the policies */
	if (!may_invite)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not invite to media \"%s\"",
						Clip(inviter_id, 100), Clip(media_id, 100)),
				 errdetail("Inviters are the media's owner, co-owners, co-editors and co-publishers who also pass settings.allowed_users_roles; see invitetomedia.may_invite().")));
	if (!domain_allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the domain of \"%s\" is restricted for new users", email),
				 errdetail("No user has this address, and its domain is listed, or lies under one listed, in settings.restrict_new_user_domains."),
				 errhint("Invite the person's existing account, or ask an administrator to change restrict_new_user_domains.")));

	if (send_email && template_unset)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invites by email are disabled"),
				 errdetail("settings.invite_email_template is NULL."),
				 errhint("Create the link without send_email, or ask an administrator to choose an email template.")));

	/* the token: only its hash is stored */
	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token")));
	itm_token_encode(random, token);
	explicit_bzero(random, sizeof(random));
	url = psprintf("%s%s", base_url, token);

	args[0] = PointerGetDatum(TokenHash(token, ITM_TOKEN_LEN));
	args[1] = CStringGetTextDatum(media_id);
	args[2] = CStringGetTextDatum(role);
	args[3] = CStringGetTextDatum(email);
	args[4] = CStringGetTextDatum(first_name);
	args[5] = CStringGetTextDatum(last_name);
	args[6] = CStringGetTextDatum(inviter_id);
	args[7] = Int32GetDatum(link_duration);
	args[8] = Int32GetDatum(link_reusability);
	RunPlan(&create_insert_plan, args, NULL, false, SPI_OK_INSERT_RETURNING);
	invite_id = DatumGetInt64(ColDatum(0, 1, &(bool){0}));
	expires_at = ColDatum(0, 2, &(bool){0});
	expires_text = ColText(3);

	if (send_email)
	{
		const char *values[ITM_PH_COUNT];
		int64		message_id;

		values[ITM_PH_URL] = url;
		values[ITM_PH_FIRST_NAME] = first_name;
		values[ITM_PH_LAST_NAME] = last_name;
		values[ITM_PH_EMAIL] = email;
		values[ITM_PH_MEDIA_TITLE] = media_title ? media_title : "";
		values[ITM_PH_ROLE] = role;
		values[ITM_PH_EXPIRES_AT] = expires_text;
		values[ITM_PH_INVITER_NAME] = inviter_name;

		args[0] = Int64GetDatum(invite_id);
		args[1] = CStringGetTextDatum(email);
		args[2] = CStringGetTextDatum(psprintf("%s %s", first_name, last_name));
		args[3] = CStringGetTextDatum(Render(subject_tmpl, values));
		args[4] = CStringGetTextDatum(Render(body_tmpl, values));
		RunPlan(&create_outbox_plan, args, NULL, false, SPI_OK_INSERT_RETURNING);
		message_id = DatumGetInt64(ColDatum(0, 1, &(bool){0}));

		/* a wake-up call only: any role may LISTEN, so no token, no address */
		Async_Notify(NOTIFY_CHANNEL, psprintf(INT64_FORMAT, message_id));
	}

	result[0] = Int64GetDatum(invite_id);
	result[1] = CStringGetTextDatum(token);
	result[2] = CStringGetTextDatum(url);
	result[3] = expires_at;
	result[4] = Int32GetDatum(link_reusability);
	PutResultRow(fcinfo, result, result_nulls);

	explicit_bzero(token, sizeof(token));
	SPI_finish();
	return (Datum) 0;
}

/*---- invite_consume --------------------------------------------------------*/

typedef enum ConsumeStatus
{
	CS_NOT_FOUND,
	CS_DISABLED,
	CS_REVOKED,
	CS_EXPIRED,
	CS_EMAIL_MISMATCH,
	CS_REJOIN,
	CS_EXHAUSTED,
	CS_OK
} ConsumeStatus;

static const char *const consume_status_names[] = {
	"not_found", "disabled", "revoked", "expired", "email_mismatch",
	"rejoin", "exhausted", "ok"
};

/*
 * Reads the link with consume_diagnose_plan and works out its status, the
 * first that applies in the documented order.  Leaves the row in
 * SPI_tuptable for the caller.
 */
static ConsumeStatus
DiagnoseConsume(Datum *args, const char *nulls)
{
	bool		isnull;
	int32		max_uses;
	int32		use_count;

	RunPlan(&consume_diagnose_plan, args, nulls, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return CS_NOT_FOUND;
	if (!ColBool(9))
		return CS_DISABLED;
	if (ColBool(10))
		return CS_REVOKED;
	if (ColBool(11))
		return CS_EXPIRED;
	if (!ColBool(12))
		return CS_EMAIL_MISMATCH;
	if (ColBool(13))
		return CS_REJOIN;
	max_uses = DatumGetInt32(ColDatum(0, 6, &isnull));
	use_count = DatumGetInt32(ColDatum(0, 7, &isnull));
	if (max_uses != -1 && use_count >= max_uses)
		return CS_EXHAUSTED;
	return CS_OK;
}

/* uses_left as returned: NULL for unlimited links */
static void
SetUsesLeft(Datum *result, bool *nulls, int col, int32 max_uses, int32 use_count)
{
	nulls[col] = (max_uses == -1);
	if (max_uses != -1)
		result[col] = Int32GetDatum(max_uses - use_count);
}

PG_FUNCTION_INFO_V1(invite_consume);
Datum
invite_consume(PG_FUNCTION_ARGS)
{
	text	   *token;
	char	   *email_key;
	char	   *device_id = NULL;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	Datum		result[9];
	bool		result_nulls[9];
	ConsumeStatus status = CS_NOT_FOUND;
	int			attempt;
	int			i;

	RequireArg(fcinfo, 0, "token");
	RequireArg(fcinfo, 1, "email");
	MaterializeResult(fcinfo);
	for (i = 0; i < 9; i++)
	{
		result[i] = (Datum) 0;
		result_nulls[i] = true;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (!PG_ARGISNULL(2))
		device_id = IdArg(fcinfo, 2, "device_id");

	/* a malformed, mistyped or forged token: no table is read */
	token = PG_GETARG_TEXT_PP(0);
	if (!itm_token_valid(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)))
		goto done;

	/* from here on it writes: refuse clearly on a standby */
	PreventCommandIfReadOnly("invite_consume()");

	email_key = EmailKey(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	args[0] = PointerGetDatum(TokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));
	args[1] = CStringGetTextDatum(email_key);
	if (device_id)
		args[2] = CStringGetTextDatum(device_id);
	else
		nulls[2] = 'n';

	/*
	 * A device that already redeemed this link rejoins without taking a use;
	 * that needs a look before the UPDATE.
	 */
	if (device_id)
	{
		status = DiagnoseConsume(args, nulls);
		if (status != CS_OK)
			goto refused;
	}

	/*
	 * Normally one round: the UPDATE takes a use or the diagnosis says why
	 * not.  A second round is needed only if the row changed in between in a
	 * way that makes a use possible again (a concurrent consume rolled back).
	 */
	for (attempt = 0; attempt < 3; attempt++)
	{
		RunPlan(&consume_plan, args, nulls, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		isnull;
			int64		invite_id = DatumGetInt64(ColDatum(0, 1, &isnull));
			char	   *user_id = ColText(4);
			int32		max_uses = DatumGetInt32(ColDatum(0, 7, &isnull));
			int32		use_count = DatumGetInt32(ColDatum(0, 8, &isnull));

			status = CS_OK;
			result[1] = Int64GetDatum(invite_id);
			result[2] = ColDatum(0, 2, &result_nulls[2]);
			result[3] = ColDatum(0, 3, &result_nulls[3]);
			result[5] = ColDatum(0, 5, &result_nulls[5]);
			result[6] = ColDatum(0, 6, &result_nulls[6]);
			result[8] = ColDatum(0, 9, &result_nulls[8]);
			result_nulls[1] = false;
			SetUsesLeft(result, result_nulls, 7, max_uses, use_count);

			if (user_id == NULL)
			{
				int64		redemption_id = DatumGetInt64(ColDatum(0, 10, &isnull));
				Datum		uargs[3];

				/* a first use by a new email: create the user */
				uargs[0] = ColDatum(0, 11, &isnull);
				uargs[1] = result[5];
				uargs[2] = result[6];
				RunPlan(&create_user_plan, uargs, NULL, false, SPI_OK_INSERT_RETURNING);
				if (SPI_processed == 1)
					user_id = ColText(1);
				else
				{
					/*
					 * Not created: another session created it concurrently
					 * (take it), or another address owns this user_id.
					 */
					uargs[0] = CStringGetTextDatum(email_key);
					RunPlan(&find_user_plan, uargs, NULL, false, SPI_OK_SELECT);
					if (SPI_processed != 1)
						ereport(ERROR,
								(errcode(ERRCODE_UNIQUE_VIOLATION),
								 errmsg("could not create a user for \"%s\"", email_key),
								 errdetail("The user_id \"%s\" belongs to a user with another email address.", email_key),
								 errhint("Give that user this email address, or change its user_id.")));
					user_id = ColText(1);
				}
				uargs[0] = Int64GetDatum(redemption_id);
				uargs[1] = CStringGetTextDatum(user_id);
				RunPlan(&set_redemption_user_plan, uargs, NULL, false, SPI_OK_UPDATE);
			}
			result[4] = CStringGetTextDatum(user_id);
			result_nulls[4] = false;
			goto done;
		}

		status = DiagnoseConsume(args, nulls);
		if (status != CS_OK)
			goto refused;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not consume the invite because of concurrent updates"),
			 errhint("Try again.")));

refused:
	if (status != CS_NOT_FOUND)
	{
		/* every attempt on a known link is recorded: invite_id, when, status, device */
		bool		isnull;
		int64		invite_id = DatumGetInt64(ColDatum(0, 1, &isnull));
		char	   *user_id = NULL;
		Datum		rargs[4];
		char		rnulls[4] = {' ', ' ', ' ', ' '};

		if (status == CS_REJOIN)
		{
			user_id = ColText(14);
			result[1] = Int64GetDatum(invite_id);
			result[2] = ColDatum(0, 2, &result_nulls[2]);
			result[3] = ColDatum(0, 3, &result_nulls[3]);
			result[5] = ColDatum(0, 4, &result_nulls[5]);
			result[6] = ColDatum(0, 5, &result_nulls[6]);
			result[8] = ColDatum(0, 8, &result_nulls[8]);
			if (user_id)
			{
				result[4] = CStringGetTextDatum(user_id);
				result_nulls[4] = false;
			}
			result_nulls[1] = false;
			SetUsesLeft(result, result_nulls, 7,
						DatumGetInt32(ColDatum(0, 6, &isnull)),
						DatumGetInt32(ColDatum(0, 7, &isnull)));
		}
		rargs[0] = Int64GetDatum(invite_id);
		rargs[1] = CStringGetTextDatum(consume_status_names[status]);
		rargs[2] = args[2];
		rnulls[2] = nulls[2];
		if (user_id)
			rargs[3] = CStringGetTextDatum(user_id);
		else
			rnulls[3] = 'n';
		RunPlan(&record_plan, rargs, rnulls, false, SPI_OK_INSERT);
	}

done:
	result[0] = CStringGetTextDatum(consume_status_names[status]);
	result_nulls[0] = false;
	PutResultRow(fcinfo, result, result_nulls);
	SPI_finish();
	return (Datum) 0;
}

/*---- invite_check ----------------------------------------------------------*/

PG_FUNCTION_INFO_V1(invite_check);
Datum
invite_check(PG_FUNCTION_ARGS)
{
	text	   *token;
	const char *status = "not_found";
	Datum		result[6];
	bool		result_nulls[6] = {false, true, true, true, true, true};

	RequireArg(fcinfo, 0, "token");
	MaterializeResult(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	token = PG_GETARG_TEXT_PP(0);
	if (itm_token_valid(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)))
	{
		Datum		args[1];

		args[0] = PointerGetDatum(TokenHash(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)));
		RunPlan(&check_plan, args, NULL, true, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		isnull;
			int32		max_uses = DatumGetInt32(ColDatum(0, 4, &isnull));
			int32		use_count = DatumGetInt32(ColDatum(0, 5, &isnull));

			/* consume's order, without the email and device checks */
			if (!ColBool(1))
				status = "disabled";
			else if (ColBool(2))
				status = "revoked";
			else if (ColBool(3))
				status = "expired";
			else if (max_uses != -1 && use_count >= max_uses)
				status = "exhausted";
			else
			{
				status = "ok";
				result[1] = ColDatum(0, 6, &result_nulls[1]);
				result[2] = ColDatum(0, 7, &result_nulls[2]);
				result[3] = ColDatum(0, 8, &result_nulls[3]);
				result[4] = ColDatum(0, 9, &result_nulls[4]);
				SetUsesLeft(result, result_nulls, 5, max_uses, use_count);
			}
		}
	}
	result[0] = CStringGetTextDatum(status);
	PutResultRow(fcinfo, result, result_nulls);
	SPI_finish();
	return (Datum) 0;
}

/*---- invite_revoke ---------------------------------------------------------*/

PG_FUNCTION_INFO_V1(invite_revoke);
Datum
invite_revoke(PG_FUNCTION_ARGS)
{
	int64		invite_id;
	char	   *actor_id;
	char	   *invited_by;
	char	   *media_id;
	char	   *actor_role;
	bool		already;
	bool		allowed;
	Datum		args[2];

	RequireArg(fcinfo, 0, "invite_id");
	RequireArg(fcinfo, 1, "actor_id");
	PreventCommandIfReadOnly("invite_revoke()");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	invite_id = PG_GETARG_INT64(0);
	actor_id = IdArg(fcinfo, 1, "actor_id");
	args[0] = Int64GetDatum(invite_id);
	args[1] = CStringGetTextDatum(actor_id);
	RunPlan(&revoke_lookup_plan, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invite %lld does not exist", (long long) invite_id)));
	invited_by = ColText(1);
	media_id = ColText(2);
	already = ColBool(3);
	if (!ColBool(4))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user \"%s\" does not exist", Clip(actor_id, 100))));
	actor_role = ColText(5);

	/* the inviter, an administrator, or anyone who may invite on the media */
	allowed = strcmp(invited_by, actor_id) == 0 ||
		strcmp(actor_role, "admin") == 0 ||
		strcmp(actor_role, "unmoderated_admin") == 0;
	if (!allowed)
	{
		Datum		margs[2];

		margs[0] = CStringGetTextDatum(actor_id);
		margs[1] = CStringGetTextDatum(media_id);
		RunPlan(&revoke_may_plan, margs, NULL, false, SPI_OK_SELECT);
		allowed = ColBool(1);
	}
	if (!allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not revoke invite %lld",
						Clip(actor_id, 100), (long long) invite_id),
				 errdetail("The inviter, administrators and those who may invite to the media may revoke its links.")));

	if (!already)
		RunPlan(&revoke_plan, args, NULL, false, SPI_OK_DELETE);
	SPI_finish();
	PG_RETURN_BOOL(!already);
}

/*---- invite_purge ----------------------------------------------------------*/

PG_FUNCTION_INFO_V1(invite_purge);
Datum
invite_purge(PG_FUNCTION_ARGS)
{
	Interval   *keep;
	Interval	zero;
	uint64		purged;
	Datum		args[1];

	RequireArg(fcinfo, 0, "keep");
	PreventCommandIfReadOnly("invite_purge()");
	keep = PG_GETARG_INTERVAL_P(0);
	memset(&zero, 0, sizeof(zero));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(keep),
										  IntervalPGetDatum(&zero))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep must not be negative"),
				 errhint("Pass how long finished links are kept, e.g. '30 days', or '0' to purge them all now.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = IntervalPGetDatum(keep);
	RunPlan(&purge_plan, args, NULL, false, SPI_OK_DELETE);
	purged = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) purged);
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
