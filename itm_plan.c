/*-------------------------------------------------------------------------
 *
 * itm_plan.c
 *	  Saved plans and their results; the readers of arguments; tokens.
 *
 * Every query of the API is an ItmPlan: its SQL (fully schema-qualified,
 * operators included), its argument types and its result columns, named
 * and typed beside it.  It is prepared once per backend (SPI_prepare and
 * SPI_keepplan), checked against those columns when prepared and at every
 * run, and its columns are read only through ItmColDatum and its typed
 * forms, which refuse a NULL where the schema declares none (a DBA may
 * have dropped the constraint) with an error naming the column.
 *
 * The argument readers refuse what no name, id or address may hold
 * (control characters first: header injection) before anything is read.
 *
 * IDENTIFICATION
 *	  itm_plan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/pg_prng.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/plancache.h"
#include "utils/snapmgr.h"

#include "itm_internal.h"

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

static SPIPlanPtr
PreparePlan(ItmPlan *p, int cursor_options)
{
	/* a version's slot of a plan array that this version does not fill */
	if (p->sql == NULL)
		elog(ERROR, "invitetomedia: no query for this version of the schema");
	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(p->sql, p->nargs, p->argtypes,
											  cursor_options);
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

/* Prepares the statement the first time this backend needs it. */
static SPIPlanPtr
GetPlan(ItmPlan *p)
{
	return PreparePlan(p, 0);
}

/*
 * Prepares a statement kept to its generic plan, where the plan cache's
 * choice of a custom plan costs more than it saves (the caller says why).
 * Call it before every run: it does nothing once the plan is prepared.
 */
void
ItmKeepGenericPlan(ItmPlan *p)
{
	(void) PreparePlan(p, CURSOR_OPT_GENERIC_PLAN);
}

/*
 * Runs a saved plan; nulls uses SPI's convention (' ' or 'n').  snapshot:
 * InvalidSnapshot for the usual one (see RunPlanAfterLock).
 */
static void
ItmRunPlanSnapshot(ItmPlan *p, Datum *values, const char *nulls, bool read_only,
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

void
ItmRunPlan(ItmPlan *p, Datum *values, const char *nulls, bool read_only, int expected)
{
	ItmRunPlanSnapshot(p, values, nulls, read_only, expected, InvalidSnapshot);
}

/*
 * A count that must see what committed while this transaction waited for a
 * row lock (the creation limits).  Under READ COMMITTED each statement takes
 * a new snapshot anyway; under REPEATABLE READ and SERIALIZABLE the
 * transaction's snapshot predates the wait, so the latest one is used, as
 * PostgreSQL's own foreign-key checks do.
 */
void
ItmRunPlanAfterLock(ItmPlan *p, Datum *values, const char *nulls, int expected)
{
	ItmRunPlanSnapshot(p, values, nulls, false, expected,
					IsolationUsesXactSnapshot() ? GetLatestSnapshot() : InvalidSnapshot);
}

/*
 * Column col of the first result row of p.  A NULL in a column that may
 * not hold one is an error naming what it reads: a NOT NULL constraint was
 * dropped, or rows were written where constraints do not fire.
 */
Datum
ItmColDatum(const ItmPlan *p, int col, bool *isnull)
{
	Datum		d;

	if (current_result != p || col < 0 || col >= p->ncols || SPI_processed < 1)
		elog(ERROR, "invitetomedia: column %d read from the wrong result (%s): %.60s",
			 col, current_result != p ? "another statement's" : "no row", p->sql);
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
bool
ItmColBool(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = ItmColDatum(p, col, &isnull);

	return !isnull && DatumGetBool(d);
}

int32
ItmColInt4(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = ItmColDatum(p, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

int64
ItmColInt8(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = ItmColDatum(p, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* A text column as a C string; NULL stays NULL (where it may be one). */
char *
ItmColText(const ItmPlan *p, int col)
{
	bool		isnull;
	Datum		d = ItmColDatum(p, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* A column copied into a result row (the types match: see CheckResultDesc). */
void
ItmColToResult(const ItmPlan *p, int col, Datum *values, bool *nulls, int rescol)
{
	values[rescol] = ItmColDatum(p, col, &nulls[rescol]);
}

/* Sets up the materialize-mode result of a set-returning function. */
void
ItmMaterializeResult(FunctionCallInfo fcinfo)
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

void
ItmPutResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The named argument, refusing NULL with 22004. */
void
ItmRequireArg(FunctionCallInfo fcinfo, int argno, const char *argname)
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
char *
ItmTextArg(FunctionCallInfo fcinfo, int argno, const char *argname)
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
char *
ItmClip(const char *s, int maxbytes)
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
char *
ItmIdArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *s = ItmTextArg(fcinfo, argno, argname);

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
char *
ItmNameArg(FunctionCallInfo fcinfo, int argno, const char *argname, size_t maxchars,
		const char *empty_hint)
{
	char	   *raw = ItmTextArg(fcinfo, argno, argname);
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
char *
ItmEmailArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *raw = ItmTextArg(fcinfo, argno, argname);
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
				 errmsg("invalid email address \"%s\"", ItmClip(raw, 100)),
				 errdetail("%s%s%s", itm_email_problem(code),
						   code == ITM_EMAIL_DOMAIN ? " " : "",
						   code == ITM_EMAIL_DOMAIN ? itm_domain_problem(dcode) : ""),
				 hint ? errhint("%s", hint) : 0));
	}
	return pnstrdup(s, len);
}

/* Trimmed and ASCII-lower-cased, the way invite emails are compared. */
char *
ItmEmailKey(const char *s)
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

bytea *
ItmTokenHash(const char *token, size_t len)
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
/* The link's secret: a token from the strong random source. */
void
ItmNewToken(const char *prefix, char token[ITM_TOKEN_LEN + 1])
{
	unsigned char random[ITM_TOKEN_RANDOM_BYTES];

	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token")));
	itm_token_encode_prefix(random, prefix, token);
	explicit_bzero(random, sizeof(random));
}

/*
 * A random positive id (2.0): the keys of the tables that grow with use
 * are drawn, not counted, so that no counter is shared by the tenants.
 * An insert that meets a duplicate (about n / 2^63 per insert) draws again.
 *
 * Ids are keys, not secrets (a token is the secret, drawn by
 * pg_strong_random above): they come from the backend's own generator
 * (xoshiro256**, common/pg_prng.h), seeded with 256 strong random bits the
 * first time a process draws one.  pg_strong_random for every id cost a
 * consume 8,700 instructions, 3 % of it (bench/callgrind.sh --tenants).  The
 * seed is per process (MyProcPid): a library loaded into the postmaster must
 * not hand one sequence to all of its children.
 */
int64
ItmRandomId(void)
{
	static pg_prng_state state;
	static int	seeded_pid = 0;
	uint64		v;

	if (seeded_pid != MyProcPid)
	{
		if (!pg_prng_strong_seed(&state))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random id")));
		seeded_pid = MyProcPid;
	}
	v = pg_prng_uint64(&state) & UINT64CONST(0x7FFFFFFFFFFFFFFF);
	return v == 0 ? 1 : (int64) v;
}
