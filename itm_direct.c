/*-------------------------------------------------------------------------
 *
 * itm_direct.c
 *	  The hot paths of 1.1 taken through the table access method.
 *
 * invite_consume's first statement is an UPDATE of the invite, found by
 * the SHA-256 of its token, whose WHERE clause holds every condition of a
 * valid use (see invitetomedia.c).  Run through SPI, that statement cost
 * far more than its work: the executor's start-up and shutdown, the plan's
 * revalidation, the data-modifying CTE's tuplestore, and above all the
 * CHECK constraints of both tables, which the executor parses and plans
 * again for every statement.  Here the same use is taken the way
 * PostgreSQL's logical-replication apply takes a change
 * (executor/execReplication.c): an index scan of the token-hash index, the
 * conditions checked in C, a row lock through table_tuple_lock, the new
 * row version written with simple_table_tuple_update, its constraints
 * checked and its index entries made by the executor's own routines; the
 * record goes in with ExecSimpleRelationInsert, its defaults (the
 * sequence, now()) computed as an INSERT computes them.  The same pieces
 * serve invite_check (a read, no lock) and guest_link_join's two hot
 * steps: the shared lock of an unlimited link and the record of an ok join.
 * Refusals, their diagnosis and their records stay SQL: they are rare, and
 * the statements are the readable reference.
 *
 * Concurrency, as the UPDATE has it under READ COMMITTED.  The row is
 * located with a fresh snapshot and the conditions are checked on the
 * version that snapshot sees: if they fail, nothing is locked.  If they
 * hold, the row is locked FOR NO KEY UPDATE (the UPDATE's lock; a guest
 * link's join takes FOR KEY SHARE as its statement does) with
 * TUPLE_LOCK_FLAG_FIND_LAST_VERSION: if a concurrent consume, revoke or
 * resend updated it, the lock waits for that transaction and follows the
 * update chain to the newest version, and the conditions are checked again
 * on it.  That is EvalPlanQual's recheck, written out: a single-use link
 * still gives one use, whatever races for it, and a revoke that commits
 * first still wins.  The token hash itself is checked again on the locked
 * version (a resend changes it).  Under REPEATABLE READ and SERIALIZABLE an
 * UPDATE must fail where a newer version exists, and SERIALIZABLE needs
 * predicate locks: those transactions take the SQL statements (invite_check,
 * which locks nothing, reads with the statement's snapshot at REPEATABLE
 * READ too).
 *
 * Trust: a whitelist, not a list of exceptions (1.1.1, issue 18).  The
 * tables are the DBA's to alter, and this is a second implementation of
 * statements whose meaning the DBA's alterations change.  So it runs only
 * on tables of exactly the shape the extension made, plus the additions it
 * was written and tested for, and the SQL statement runs for everything
 * else (DEBUG1 says why).  Checked when a table is first used and again
 * whenever the relcache says it changed (or any function changed: a
 * planned CHECK may have inlined one), for every table read or written
 * (ShapeProblem, FindColumns, FindKeyIndex):
 *   - a plain permanent heap table: no partitioned table, no partition, no
 *     inheritance parent or child (a dropped child leaves relhassubclass
 *     set until ANALYZE: the path stays off until then), no rules;
 *   - no generated, identity or domain-typed column (a domain's NOT NULL,
 *     CHECK or default is the statement's to apply);
 *   - every column the path reads or writes of its exact type without a
 *     type modifier, NOT NULL where the schema has it, in the database's
 *     collation for text;
 *   - every unique index it searches a valid, immediate, plain btree on
 *     that key with the type's equality and without indcheckxmin;
 *   - on tables it writes: no trigger but the extension's own, matched by
 *     function OID (a member of the extension) and exact type, not by name;
 *     no exclusion constraint or deferrable unique index.
 * Allowed beyond that, because written for and tested (sql/direct_use,
 * sql/direct_shapes, test/difffuzz): CHECK constraints (planned once,
 * tableoid set as the executor sets it), more plain, partial and
 * expression indexes, more columns (their defaults computed as an INSERT
 * computes them).  Per call it also needs what the statement would have
 * been checked against: READ COMMITTED for the update and the row lock
 * (the reads of invite_check also run under REPEATABLE READ, with the
 * statement's snapshot), the privileges of the statement (SELECT too where
 * it has RETURNING), row-level security not applying to the caller, and
 * the owner for tables behind the write guard.  Each table is found by
 * name at every call, and again after its lock if invalidations came in
 * meanwhile (a rename or a swap during the wait), as RangeVarGetRelidExtended
 * does for a statement.  Each direct statement begins as SPI's does
 * (BeginStatement: the command counter advanced, a snapshot of its own
 * pushed as the active one), so that it sees what the caller's statement
 * wrote before it and a DBA's CHECK or default reads what the statement
 * would; a use and its record are one statement, as the SQL's: the record
 * goes this way only if the use can, with the use's snapshot.  A NULL
 * where the schema has NOT NULL makes a call answer ITM_DIRECT_UNSUPPORTED
 * before writing anything.  GUC invitetomedia.direct_use (superuser,
 * default on) turns the path off, for comparison and as a safety valve.
 * sql/direct_use.sql runs one scenario both ways and compares every row;
 * sql/direct_shapes.sql the review's reproductions both ways; the test
 * command runs the whole regression suite a second time with the path off
 * and test/difffuzz random call sequences on random alterations both ways.
 *
 * 2.0 (tenants and sites, docs/design-2.0.md section 6): invite_consume and
 * invite_check take this path on 2.0's tables too, with the call's tenant
 * and site (ItmDirectSite).  The link is found through the unique index
 * (tenant_id, token_hash) and must be at the call's site (checked on every
 * version, as the hash is); the site's row in sites, found by its primary
 * key (site_id) and required to be the tenant's, takes the place of the
 * settings row; the record is written with the tenant, the site, the id the
 * caller drew and the relay's event_seq, as the statement writes them (no
 * defaults); users and media are searched by (tenant_id, key).  Each key
 * must be exactly that index, columns in that order.  Row-level security,
 * enabled on every 2.0 table, does not apply to the superuser or owner that
 * owns the functions; where it applies (FORCE, another owner) the call takes
 * the statements, which apply the policies.  invite_create and guest links
 * keep the statements on 2.0.  The caches record which schema they were
 * filled for (UseSchema).  A site's row is remembered at the TID its index
 * entry points to and found there again when the snapshot sees it there
 * with the site's key (FetchSiteAtTid); else the index scan.
 *
 * Memory: the executor state of a call lives in its own context, freed
 * when the call is done; the caches hold OIDs, attribute numbers and the
 * planned CHECK and default expressions, in contexts reset when they are
 * looked at again.
 *
 * IDENTIFICATION
 *	  itm_direct.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "itm_compat.h"
#include "itm_direct.h"

bool		itm_direct_use = true;

/* The columns of invites this path reads or writes. */
enum
{
	INV_INVITE_ID,
	INV_TOKEN_HASH,
	INV_MEDIA_ID,
	INV_ROLE,
	INV_EMAIL,
	INV_FIRST_NAME,
	INV_LAST_NAME,
	INV_EXPIRES_AT,
	INV_MAX_USES,
	INV_USE_COUNT,
	INV_USED_UP_AT,
	INV_REVOKED_AT,
	INV_NOT_BEFORE,
	INV_FAILED_ATTEMPTS,
	INV_LAST_USED_AT,
	INV_NCOLS_1_1,				/* 2.0 adds: */
	INV_TENANT_ID = INV_NCOLS_1_1,
	INV_SITE_ID,
	INV_NCOLS
};

enum
{
	SET_ENABLED,
	SET_LOCKOUT_ATTEMPTS,
	SET_NCOLS
};

/* 2.0: a site's row (its configuration), in place of settings */
enum
{
	SITE_SITE_ID,
	SITE_TENANT_ID,
	SITE_ENABLED,
	SITE_LOCKOUT_ATTEMPTS,
	SITE_NCOLS
};

enum
{
	MED_MEDIA_ID,
	MED_TITLE,
	MED_NCOLS_1_1,				/* 2.0 adds: */
	MED_TENANT_ID = MED_NCOLS_1_1,
	MED_NCOLS
};

typedef struct DirectCol
{
	const char *name;
	Oid			type;
	bool		notnull;		/* NOT NULL in the schema the extension made */
} DirectCol;

static const DirectCol invite_cols[INV_NCOLS] = {
	[INV_INVITE_ID] = {"invite_id", INT8OID, true},
	[INV_TOKEN_HASH] = {"token_hash", BYTEAOID, true},
	[INV_MEDIA_ID] = {"media_id", TEXTOID, true},
	[INV_ROLE] = {"role", TEXTOID, true},
	[INV_EMAIL] = {"email", TEXTOID, true},
	[INV_FIRST_NAME] = {"first_name", TEXTOID, true},
	[INV_LAST_NAME] = {"last_name", TEXTOID, true},
	[INV_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true},
	[INV_MAX_USES] = {"max_uses", INT4OID, true},
	[INV_USE_COUNT] = {"use_count", INT4OID, true},
	[INV_USED_UP_AT] = {"used_up_at", TIMESTAMPTZOID, false},
	[INV_REVOKED_AT] = {"revoked_at", TIMESTAMPTZOID, false},
	[INV_NOT_BEFORE] = {"not_before", TIMESTAMPTZOID, false},
	[INV_FAILED_ATTEMPTS] = {"failed_attempts", INT4OID, true},
	[INV_LAST_USED_AT] = {"last_used_at", TIMESTAMPTZOID, false},
	[INV_TENANT_ID] = {"tenant_id", INT4OID, true},
	[INV_SITE_ID] = {"site_id", TEXTOID, true},
};

static const DirectCol settings_cols[SET_NCOLS] = {
	[SET_ENABLED] = {"enabled", BOOLOID, true},
	[SET_LOCKOUT_ATTEMPTS] = {"lockout_attempts", INT4OID, true},
};

static const DirectCol site_cols[SITE_NCOLS] = {
	[SITE_SITE_ID] = {"site_id", TEXTOID, true},
	[SITE_TENANT_ID] = {"tenant_id", INT4OID, true},
	[SITE_ENABLED] = {"enabled", BOOLOID, true},
	[SITE_LOCKOUT_ATTEMPTS] = {"lockout_attempts", INT4OID, true},
};

static const DirectCol media_cols[MED_NCOLS] = {
	[MED_MEDIA_ID] = {"media_id", TEXTOID, true},
	[MED_TITLE] = {"title", TEXTOID, false},
	[MED_TENANT_ID] = {"tenant_id", INT4OID, true},
};

/*
 * The key of a unique index a scan searches: a column (attnum 0: the
 * expression lower(email COLLATE "C")), searched with eqproc, the type's
 * btree equality, in collation (InvalidOid: the index's own, any).  1.1's
 * keys have one column; 2.0 puts tenant_id first in every key.
 */
typedef struct KeySpec
{
	AttrNumber	attnum;
	Oid			type;
	RegProcedure eqproc;
	Oid			collation;
} KeySpec;

#define MAX_KEYS 2

/*
 * What is known about the tables, per backend.  valid is cleared by the
 * relcache callback when invites, its token-hash index or settings change
 * (or all relcache entries are reset); the next use looks again.
 */
typedef struct DirectCache
{
	bool		valid;
	char	   *unusable;		/* why the path cannot run, or NULL (in cxt) */
	Oid			invites;
	Oid			hash_index;		/* 1.1: (token_hash); 2.0: (tenant_id, token_hash) */
	AttrNumber	inv[INV_NCOLS];
	MemoryContext cxt;			/* holds what follows */
	int			inv_ncheck;
	Expr	  **inv_checks;		/* invites' CHECK constraints, planned */

	/* invite_check: the media entry's title */
	bool		media_valid;
	char	   *media_unusable; /* in media_cxt */
	Oid			media;
	Oid			media_index;	/* 1.1: (media_id); 2.0: (tenant_id, media_id) */
	AttrNumber	med[MED_NCOLS];
	MemoryContext media_cxt;
} DirectCache;

static DirectCache cache;

/*
 * settings, which every path reads (enabled, the lockout threshold): a
 * cache of its own, so that the guest paths open settings alone, as their
 * statements read it, and never lock invites.
 */
static struct
{
	bool		valid;
	const char *unusable;		/* in CacheMemoryContext, or NULL */
	Oid			relid;
	AttrNumber	att[SET_NCOLS];
} set_cache;

/* 2.0: sites, read by its primary key (site_id) in place of settings */
static struct
{
	bool		valid;
	const char *unusable;		/* in CacheMemoryContext, or NULL */
	Oid			relid;
	Oid			pk_index;
	AttrNumber	att[SITE_NCOLS];
} site_cache;

/*
 * Where the rows of the last sites read were (2.0): a site's row is found
 * again at its TID, following its HOT chain, as an index scan would from
 * the index's entry, and only if the version the snapshot sees there has
 * the site's key; anything else (the row updated off the page, deleted,
 * the slot reused by another site, the block gone) takes the index scan,
 * which refreshes the entry.  It saves the index scan of every call (8,000
 * instructions of a check, bench/callgrind.sh --tenants).  Emptied when
 * sites changes shape (its relcache entry), as the rest of site_cache.
 */
#define SITE_TIDS 8
static struct
{
	int32		tenant_id;
	char		site_id[NAMEDATALEN];	/* site_id is at most 63 bytes (a CHECK) */
	ItemPointerData tid;
} site_tids[SITE_TIDS];
static int	nsite_tids = 0;
static int	next_site_tid = 0;

/*
 * The schema the caches were filled for: 1.1.1's tables (false) or 2.0's
 * (true).  A backend serves one database, whose version changes only by
 * ALTER EXTENSION ... UPDATE: a call of the other version empties them.
 */
static bool cached_v2 = false;

static void DirectInvalidateAll(Datum arg, int cacheid, uint32 hashvalue);

static void
UseSchema(bool v2)
{
	if (v2 != cached_v2)
	{
		DirectInvalidateAll((Datum) 0, 0, 0);
		cached_v2 = v2;
	}
}


/*
 * rel's CHECK constraints, planned once (the executor parses and plans
 * them again for every statement: for a one-row update that was the
 * largest single cost).  In the order of the relcache entry's array, which
 * is what ExecConstraints walks.
 */
static Expr **
PlanChecks(Relation rel, int *ncheck)
{
	TupleConstr *constr = rel->rd_att->constr;
	Expr	  **checks;
	int			i;

	*ncheck = constr ? constr->num_check : 0;
	if (*ncheck == 0)
		return NULL;
	checks = palloc(sizeof(Expr *) * *ncheck);
	for (i = 0; i < *ncheck; i++)
		checks[i] = expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
	return checks;
}

/* The planned checks, ready for ExecConstraints (in the executor's memory). */
static void
PrepareChecks(ResultRelInfo *rri, EState *estate, Expr **checks, int ncheck)
{
	TupleConstr *constr = rri->ri_RelationDesc->rd_att->constr;
	MemoryContext old;
	int			i;

	/* the relation cannot change while it is locked; if it did, plan anew */
	if (ncheck == 0 || constr == NULL || constr->num_check != ncheck)
		return;
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	rri->ri_CheckConstraintExprs = palloc(sizeof(ExprState *) * ncheck);
	for (i = 0; i < ncheck; i++)
		rri->ri_CheckConstraintExprs[i] = ExecInitExpr(checks[i], NULL);
	MemoryContextSwitchTo(old);
}

/*
 * The attribute numbers of cols in rel; NULL, or why they do not fit: each
 * column as the extension made it, its type without a type modifier (a
 * timestamptz(0) rounds what is written), NOT NULL where the schema has
 * it, the database's collation for text.
 */
static const char *
FindColumns(Relation rel, const DirectCol *cols, int ncols, AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < ncols; i++)
	{
		AttrNumber	a = InvalidAttrNumber;
		int			k;

		for (k = 0; k < desc->natts; k++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, k);

			if (!att->attisdropped && strcmp(NameStr(att->attname), cols[i].name) == 0)
			{
				if (att->atttypid != cols[i].type || att->atttypmod != -1)
					return psprintf("column %s.%s has another type",
									RelationGetRelationName(rel), cols[i].name);
				if (cols[i].notnull && !att->attnotnull)
					return psprintf("column %s.%s lost its NOT NULL",
									RelationGetRelationName(rel), cols[i].name);
				if (att->attcollation !=
					(cols[i].type == TEXTOID ? DEFAULT_COLLATION_OID : InvalidOid))
					return psprintf("column %s.%s has another collation",
									RelationGetRelationName(rel), cols[i].name);
				a = att->attnum;
				break;
			}
		}
		if (a == InvalidAttrNumber)
			return psprintf("column %s.%s is missing",
							RelationGetRelationName(rel), cols[i].name);
		attnums[i] = a;
	}
	return NULL;
}

/* lower(email COLLATE "C"), the key invite_consume looks users up by */
static bool
IsLowerEmailC(Relation ir, AttrNumber email_att)
{
	List	   *exprs = RelationGetIndexExpressions(ir);
	Node	   *e = list_length(exprs) == 1 ? (Node *) linitial(exprs) : NULL;
	Node	   *arg;

	if (e == NULL || !IsA(e, FuncExpr) || ((FuncExpr *) e)->funcid != F_LOWER_TEXT ||
		((FuncExpr *) e)->inputcollid != C_COLLATION_OID ||
		list_length(((FuncExpr *) e)->args) != 1)
		return false;
	arg = (Node *) linitial(((FuncExpr *) e)->args);
	while (arg && (IsA(arg, RelabelType) || IsA(arg, CollateExpr)))
		arg = IsA(arg, RelabelType) ? (Node *) ((RelabelType *) arg)->arg :
			(Node *) ((CollateExpr *) arg)->arg;
	return arg != NULL && IsA(arg, Var) && ((Var *) arg)->varattno == email_att;
}

/*
 * Every index FindKeyIndex looked at: a change to one (its pg_index row
 * updated: made valid, indcheckxmin) sends an invalidation for the index
 * alone, not its table, and may make an unusable table usable or the
 * reverse.  The caches are reset when one of these changes (all of them
 * when there are more than fit here).
 */
#define WATCHED_MAX 64
static Oid	watched[WATCHED_MAX];
static int	nwatched = 0;
static bool watched_overflow = false;

static void
WatchIndex(Oid indexoid)
{
	int			i;

	for (i = 0; i < nwatched; i++)
		if (watched[i] == indexoid)
			return;
	if (nwatched < WATCHED_MAX)
		watched[nwatched++] = indexoid;
	else
		watched_overflow = true;
}

static bool
IsWatched(Oid relid)
{
	int			i;

	if (watched_overflow)
		return true;
	for (i = 0; i < nwatched; i++)
		if (watched[i] == relid)
			return true;
	return false;
}

/*
 * A valid, immediate, unique btree index of rel whose key columns are
 * exactly keys, in that order (a column, or for attnum 0 lower(email_att
 * COLLATE "C")), each with eqproc as its opfamily's equality for its type and
 * collation as its collation (InvalidOid: any), without a predicate.  The
 * scans below search it with exactly those equalities, so a DBA's index of
 * another kind or order is never used.
 */
static Oid
FindKeyIndex(Relation rel, const KeySpec *keys, int nkeys, AttrNumber email_att)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;
	bool		has_expr = false;
	int			k;

	for (k = 0; k < nkeys; k++)
		if (keys[k].attnum == 0)
			has_expr = true;
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index ind;
		bool		fits;

		WatchIndex(indexoid);

		if (!HeapTupleIsValid(tup))
			continue;
		ind = (Form_pg_index) GETSTRUCT(tup);
		/* indcheckxmin: older snapshots may not use it (the planner's rule) */
		fits = ind->indisunique && ind->indisvalid && ind->indisready && ind->indislive &&
			!ind->indcheckxmin && ind->indimmediate && ind->indnkeyatts == nkeys &&
			(has_expr || heap_attisnull(tup, Anum_pg_index_indexprs, NULL)) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		/* exactly these key columns, in this order */
		for (k = 0; fits && k < nkeys; k++)
			fits = ind->indkey.values[k] == keys[k].attnum;
		ReleaseSysCache(tup);
		if (fits)
		{
			Relation	ir = index_open(indexoid, AccessShareLock);

			fits = ir->rd_rel->relam == BTREE_AM_OID &&
				(!has_expr || IsLowerEmailC(ir, email_att));
			for (k = 0; fits && k < nkeys; k++)
				fits = (keys[k].collation == InvalidOid ||
						ir->rd_indcollation[k] == keys[k].collation) &&
					get_opcode(get_opfamily_member(ir->rd_opfamily[k], keys[k].type,
												   keys[k].type,
												   BTEqualStrategyNumber)) == keys[k].eqproc;
			index_close(ir, AccessShareLock);
		}
		if (fits)
		{
			found = indexoid;
			break;
		}
	}
	list_free(indexes);
	return found;
}

/* The one-column key of 1.1's indexes */
static Oid
FindKeyIndex1(Relation rel, AttrNumber attnum, AttrNumber email_att, Oid type,
			  RegProcedure eqproc, Oid collation)
{
	KeySpec		key = {attnum, type, eqproc, collation};

	return FindKeyIndex(rel, &key, 1, email_att);
}

/* 2.0's keys: tenant_id (integer), then the column of 1.1's key */
static Oid
FindTenantKeyIndex(Relation rel, AttrNumber tenant_att, AttrNumber attnum,
				   AttrNumber email_att, Oid type, RegProcedure eqproc, Oid collation)
{
	KeySpec		keys[2] = {{tenant_att, INT4OID, F_INT4EQ, InvalidOid},
	{attnum, type, eqproc, collation}};

	return FindKeyIndex(rel, keys, 2, email_att);
}

/*---- the whitelist: a table as the extension made it ----------------------*/

/*
 * A trigger the extension itself puts on a table: its function (by OID, a
 * member of the extension: a DBA's trigger that merely has the name is not
 * it), its exact type (timing, level, events), no arguments, no WHEN, no
 * column list.  These are statement-level and fire on nothing this path
 * does but the write guard, which lets the table's owner through: the
 * callers require the owner then.
 */
typedef struct ShapeTrigger
{
	const char *function;		/* invitetomedia.function() */
	int16		tgtype;
} ShapeTrigger;

#define TGT(t) ((int16) (t))
static const ShapeTrigger invites_triggers[] = {
	{"invites_write_guard", TGT(TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_INSERT | TRIGGER_TYPE_DELETE |
								TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_TRUNCATE)},
	{"invites_cleanup", TGT(TRIGGER_TYPE_DELETE)},
	{"invites_truncate_cleanup", TGT(TRIGGER_TYPE_TRUNCATE)},
	{NULL, 0}
};
static const ShapeTrigger no_triggers[] = {{NULL, 0}};

/* Whether the function invitetomedia.name() is the extension's own and is foid. */
static bool
IsExtensionFunction(Oid foid, const char *name)
{
	Oid			ext = get_extension_oid("invitetomedia", true);
	Oid			fn;

	if (!OidIsValid(ext))
		return false;
	fn = LookupFuncName(list_make2(makeString("invitetomedia"), makeString(unconstify(char *, name))),
						0, NULL, true);
	return OidIsValid(fn) && fn == foid &&
		getExtensionOfObject(ProcedureRelationId, fn) == ext;
}

/* Every trigger of rel is one of allowed (a whitelist); NULL or why not. */
static const char *
TriggersProblem(Relation rel, const ShapeTrigger *allowed)
{
	TriggerDesc *td = rel->trigdesc;
	int			i;

	if (td == NULL)
		return NULL;
	for (i = 0; i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];
		const ShapeTrigger *a;
		bool		ok = false;

		if (!t->tgisinternal && !OidIsValid(t->tgconstraint) && t->tgnargs == 0 &&
			t->tgnattr == 0 && t->tgqual == NULL)
			for (a = allowed; a->function != NULL && !ok; a++)
				ok = t->tgtype == a->tgtype && IsExtensionFunction(t->tgfoid, a->function);
		if (!ok)
			return psprintf("%s has the trigger %s, which the extension did not make",
							RelationGetRelationName(rel), t->tgname);
	}
	return NULL;
}

/* A domain, or an array of one: its constraints and defaults are not ours to skip. */
static bool
IsDomainType(Oid type)
{
	Oid			elem = get_element_type(type);

	return get_typtype(type) == TYPTYPE_DOMAIN ||
		(OidIsValid(elem) && get_typtype(elem) == TYPTYPE_DOMAIN);
}

/*
 * Whether this path may read (and, with written, write) rel: a plain heap
 * table of this database, not a partition, with no parent and no children
 * (the statement reads and writes those too), no rules, no generated,
 * identity or domain-typed column (row-level security is the caller's
 * business, per call: check_enable_rls for every table opened); written tables
 * also no trigger but the extension's own (triggers), and no index whose
 * check this path cannot make as the executor does (exclusion, deferred
 * uniqueness), and no CHECK constraint that is NOT ENFORCED (18).  What is allowed beyond the extension's schema, because it
 * is written for and tested: CHECK constraints, more plain, partial and
 * expression indexes, more columns (their defaults computed as an INSERT
 * computes them).  NULL, or why not.
 */
static const char *
ShapeProblem(Relation rel, bool written, const ShapeTrigger *triggers)
{
	const char *name = RelationGetRelationName(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	int			k;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
		rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		return psprintf("%s is not a plain heap table", name);
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		return psprintf("%s is not a permanent table", name);
	if (rel->rd_rel->relhassubclass || has_superclass(RelationGetRelid(rel)))
		return psprintf("%s has inheritance children or parents", name);
	if (rel->rd_rules != NULL)
		return psprintf("%s has rules", name);
	for (k = 0; k < desc->natts; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, k);

		if (att->attisdropped)
			continue;
		if (att->attgenerated != '\0' || att->attidentity != '\0')
			return psprintf("column %s.%s is generated or an identity", name,
							NameStr(att->attname));
		if (IsDomainType(att->atttypid))
			return psprintf("column %s.%s has a domain type", name, NameStr(att->attname));
	}
	if (written)
	{
		const char *why = TriggersProblem(rel, triggers);
		List	   *indexes;
		ListCell   *lc;

		if (why)
			return why;
		/* PostgreSQL 18: the executor skips a NOT ENFORCED check */
		if (rel->rd_att->constr)
		{
			TupleConstr *constr = rel->rd_att->constr;

			for (k = 0; k < constr->num_check; k++)
				if (!ItmCheckEnforced(&constr->check[k]))
					return psprintf("%s has a CHECK constraint that is not enforced", name);
		}
		indexes = RelationGetIndexList(rel);
		foreach(lc, indexes)
		{
			HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
			bool		fits;

			if (!HeapTupleIsValid(tup))
				continue;
			fits = !((Form_pg_index) GETSTRUCT(tup))->indisexclusion &&
				((Form_pg_index) GETSTRUCT(tup))->indimmediate;
			ReleaseSysCache(tup);
			if (!fits)
			{
				list_free(indexes);
				return psprintf("%s has an exclusion constraint or a deferrable unique index", name);
			}
		}
		list_free(indexes);
	}
	return NULL;
}

/* Looks at the tables again (the cache was reset); invites is open and locked. */
static void
Inspect(Relation inv)
{
	const char *why;

	cache.hash_index = InvalidOid;
	if ((why = ShapeProblem(inv, true, invites_triggers)) != NULL)
		;
	else if ((why = FindColumns(inv, invite_cols, cached_v2 ? INV_NCOLS : INV_NCOLS_1_1,
								cache.inv)) != NULL)
		;
	else if (!cached_v2 &&
			 !OidIsValid(cache.hash_index = FindKeyIndex1(inv, cache.inv[INV_TOKEN_HASH], 0,
														  BYTEAOID, F_BYTEAEQ, InvalidOid)))
		why = "invites has no usable index on token_hash";
	else if (cached_v2 &&
			 !OidIsValid(cache.hash_index = FindTenantKeyIndex(inv, cache.inv[INV_TENANT_ID],
															   cache.inv[INV_TOKEN_HASH], 0,
															   BYTEAOID, F_BYTEAEQ, InvalidOid)))
		why = "invites has no usable unique index on (tenant_id, token_hash)";
	/* a string that outlives this call: the cache keeps it */
	if (cache.cxt)
		MemoryContextReset(cache.cxt);
	else
		cache.cxt = AllocSetContextCreate(CacheMemoryContext, "invitetomedia direct use",
										  ALLOCSET_SMALL_SIZES);
	cache.unusable = why ? MemoryContextStrdup(cache.cxt, why) : NULL;
	cache.inv_checks = NULL;
	cache.inv_ncheck = 0;
	if (why == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(cache.cxt);

		cache.inv_checks = PlanChecks(inv, &cache.inv_ncheck);
		MemoryContextSwitchTo(old);
	}
	cache.valid = true;
}

/* what the current call does, for the DEBUG1 line */
static const char *current_op = "invite_consume takes the use";

static void
Unsupported(const char *why)
{
	ereport(DEBUG1,
			(errmsg_internal("%s with the SQL statement: %s", current_op, why)));
}

/* The path runs (DEBUG2: the tests' evidence that it did, not only that it did not decline) */
static void
Runs(void)
{
	ereport(DEBUG2,
			(errmsg_internal("%s through the table access method", current_op)));
}

/* The settings row: enabled and the lockout threshold; false unless one row. */
static bool
ReadSettings(Relation set, Snapshot snapshot, bool *enabled, int32 *lockout)
{
	TableScanDesc scan = table_beginscan(set, snapshot, 0, NULL);
	TupleTableSlot *slot = table_slot_create(set, NULL);
	int			rows = 0;
	bool		ok = true;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		if (++rows > 1)
			break;
		d = slot_getattr(slot, set_cache.att[SET_ENABLED], &isnull);
		*enabled = !isnull && DatumGetBool(d);	/* NULL: not enabled */
		d = slot_getattr(slot, set_cache.att[SET_LOCKOUT_ATTEMPTS], &isnull);
		/* the statements' test: NULL or 0 (or less) never locks */
		*lockout = (isnull || DatumGetInt32(d) <= 0) ? 0 : DatumGetInt32(d);
	}
	if (rows != 1)
		ok = false;
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	return ok;
}

/*
 * 2.0: the site's row, found by the primary key of sites (site_id), of the
 * call's tenant: the statements' sub-select "FROM sites s WHERE s.tenant_id =
 * i.tenant_id AND s.site_id = i.site_id", where the link was found by that
 * tenant and site.  false if there is none (the statements then read a NULL
 * enabled: no use, and the check's inner join finds no row).
 */
static bool FetchByKeys(Relation rel, Oid index, const KeySpec *keys, const Datum *values,
						int nkeys, Snapshot snapshot, TupleTableSlot *slot, ItemPointer root);

/* A text datum equals the string s (byte for byte: deterministic collations) */
static bool
TextEquals(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/* The site's row at its remembered TID, as snapshot sees it; false if not there. */
static bool
FetchSiteAtTid(Relation sites, Snapshot snapshot, const ItmDirectSite *site,
			   TupleTableSlot *slot, int *entry)
{
	IndexFetchTableData *fetch;
	bool		call_again = false;
	bool		all_dead = false;
	bool		found;
	bool		isnull;
	Datum		d;
	int			i;

	*entry = -1;
	for (i = 0; i < nsite_tids; i++)
		if (site_tids[i].tenant_id == site->tenant_id &&
			strcmp(site_tids[i].site_id, site->site_id) == 0)
			break;
	if (i == nsite_tids)
		return false;
	*entry = i;
	/* a block that is gone (VACUUM truncated the table) is not read */
	if (ItemPointerGetBlockNumber(&site_tids[i].tid) >= RelationGetNumberOfBlocks(sites))
		return false;
	fetch = table_index_fetch_begin(sites);
	found = table_index_fetch_tuple(fetch, &site_tids[i].tid, snapshot, slot,
									&call_again, &all_dead);
	table_index_fetch_end(fetch);
	if (!found)
		return false;
	/* the version seen there must be the site's: the unique key's */
	d = slot_getattr(slot, site_cache.att[SITE_SITE_ID], &isnull);
	return !isnull && TextEquals(d, site->site_id);
}

static bool
ReadSite(Relation sites, Snapshot snapshot, const ItmDirectSite *site,
		 bool *enabled, int32 *lockout)
{
	TupleTableSlot *slot = table_slot_create(sites, NULL);
	KeySpec		key = {site_cache.att[SITE_SITE_ID], TEXTOID, F_TEXTEQ, DEFAULT_COLLATION_OID};
	Datum		value;
	bool		found = false;
	bool		row;
	int			entry;
	ItemPointerData root;

	*enabled = false;
	*lockout = 0;
	row = FetchSiteAtTid(sites, snapshot, site, slot, &entry);
	if (!row)
	{
		value = CStringGetTextDatum(site->site_id);
		row = FetchByKeys(sites, site_cache.pk_index, &key, &value, 1, snapshot, slot, &root);
		/* remember where it is (site ids longer than a name are not remembered) */
		if (row && strlen(site->site_id) < NAMEDATALEN)
		{
			if (entry < 0)
			{
				entry = next_site_tid;
				next_site_tid = (next_site_tid + 1) % SITE_TIDS;
				if (nsite_tids < SITE_TIDS)
					nsite_tids++;
			}
			site_tids[entry].tenant_id = site->tenant_id;
			strlcpy(site_tids[entry].site_id, site->site_id, NAMEDATALEN);
			site_tids[entry].tid = root;
		}
	}
	if (row)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, site_cache.att[SITE_TENANT_ID], &isnull);

		/* a NULL or another tenant: the sub-select's condition fails */
		if (!isnull && DatumGetInt32(d) == site->tenant_id)
		{
			found = true;
			d = slot_getattr(slot, site_cache.att[SITE_ENABLED], &isnull);
			*enabled = !isnull && DatumGetBool(d);	/* NULL: not enabled */
			d = slot_getattr(slot, site_cache.att[SITE_LOCKOUT_ATTEMPTS], &isnull);
			*lockout = (isnull || DatumGetInt32(d) <= 0) ? 0 : DatumGetInt32(d);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * The configuration a call reads: 1.1's settings row (false unless exactly
 * one: the path declines), or 2.0's site row (*found false if there is
 * none: a refusal, as the statements have it).  true: read.
 */
static bool
ReadConfig(Relation cfg, Snapshot snapshot, const ItmDirectSite *site,
		   bool *found, bool *enabled, int32 *lockout)
{
	if (site != NULL)
	{
		*found = ReadSite(cfg, snapshot, site, enabled, lockout);
		return true;
	}
	*found = true;
	if (ReadSettings(cfg, snapshot, enabled, lockout))
		return true;
	Unsupported("settings does not hold one row");
	return false;
}

/* lower(email COLLATE "C") = key: ASCII letters only, as EmailKey does */
static bool
EmailMatches(Datum email, const char *key)
{
	text	   *t = DatumGetTextPP(email);
	const char *s = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	size_t		i;

	if (len != strlen(key))
		return false;
	for (i = 0; i < len; i++)
		if (pg_ascii_tolower((unsigned char) s[i]) != (unsigned char) key[i])
			return false;
	return true;
}

static bool
HashMatches(Datum stored, bytea *hash)
{
	bytea	   *b = DatumGetByteaPP(stored);

	return VARSIZE_ANY_EXHDR(b) == VARSIZE_ANY_EXHDR(hash) &&
		memcmp(VARDATA_ANY(b), VARDATA_ANY(hash), VARSIZE_ANY_EXHDR(hash)) == 0;
}

/*
 * The row of rel whose key, in the unique index, equals key (by eqproc in
 * collation), as snapshot sees it, into slot; false if none.
 */
/*
 * root, if not NULL, is set to the TID the index entry points to (the root
 * of the row's HOT chain, where a fetch finds the row again after HOT
 * updates: slot's TID is the version found, which a fetch would not start
 * from); index_getnext_slot's loop, written out for that.
 */
static bool
FetchByKeys(Relation rel, Oid index, const KeySpec *keys, const Datum *values, int nkeys,
			Snapshot snapshot, TupleTableSlot *slot, ItemPointer root)
{
	Relation	idx = index_open(index, AccessShareLock);
	IndexScanDesc scan;
	ScanKeyData skey[MAX_KEYS];
	bool		found = false;
	int			k;

	Assert(nkeys >= 1 && nkeys <= MAX_KEYS);
	for (k = 0; k < nkeys; k++)
	{
		ScanKeyInit(&skey[k], k + 1, BTEqualStrategyNumber, keys[k].eqproc, values[k]);
		skey[k].sk_collation = keys[k].collation;
	}
	scan = index_beginscan(rel, idx, snapshot, NULL, nkeys, 0);
	index_rescan(scan, skey, nkeys, NULL, 0);
	if (root == NULL)
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
	else
		for (;;)
		{
			ItemPointer tid = NULL;

			if (!scan->xs_heap_continue)
			{
				tid = index_getnext_tid(scan, ForwardScanDirection);
				if (tid == NULL)
					break;
				*root = *tid;	/* index_fetch_heap moves xs_heaptid along the chain */
			}
			if (index_fetch_heap(scan, slot))
			{
				found = true;
				break;
			}
		}
	index_endscan(scan);
	index_close(idx, NoLock);
	return found;
}

static bool
FetchByKey(Relation rel, Oid index, RegProcedure eqproc, Oid collation, Datum key,
		   Snapshot snapshot, TupleTableSlot *slot)
{
	KeySpec		k = {InvalidAttrNumber, InvalidOid, eqproc, collation};

	return FetchByKeys(rel, index, &k, &key, 1, snapshot, slot, NULL);
}

/*
 * The row whose key (of type, searched with eqproc in collation) is value:
 * 1.1's indexes have that key alone; 2.0's lead with tenant_id, the call's
 * tenant (site not NULL).
 */
static bool
FetchByTenantKey(Relation rel, Oid index, const ItmDirectSite *site, Oid type,
				 RegProcedure eqproc, Oid collation, Datum value, Snapshot snapshot,
				 TupleTableSlot *slot)
{
	KeySpec		keys[2] = {{InvalidAttrNumber, INT4OID, F_INT4EQ, InvalidOid},
	{InvalidAttrNumber, type, eqproc, collation}};
	Datum		values[2];

	values[0] = Int32GetDatum(site ? site->tenant_id : 0);
	values[1] = value;
	if (site == NULL)
		return FetchByKeys(rel, index, &keys[1], &values[1], 1, snapshot, slot, NULL);
	return FetchByKeys(rel, index, keys, values, 2, snapshot, slot, NULL);
}

/* The invite with this token hash (2.0: of the call's tenant) */
static bool
FetchInvite(Relation inv, const ItmDirectSite *site, bytea *token_hash, Snapshot snapshot,
			TupleTableSlot *slot)
{
	return FetchByTenantKey(inv, cache.hash_index, site, BYTEAOID, F_BYTEAEQ, InvalidOid,
							PointerGetDatum(token_hash), snapshot, slot);
}

/*
 * Locks (in mode) the newest version of the row in slot (waiting for a
 * transaction that changed it) and puts that version in slot; false if it
 * was deleted meanwhile.
 */
static bool
LockNewest(Relation inv, Snapshot snapshot, TupleTableSlot *slot, LockTupleMode mode)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(inv, &slot->tts_tid, snapshot, slot,
						   GetCurrentCommandId(false), mode,
						   LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_Deleted:		/* purged meanwhile: not found */
		case TM_Updated:		/* cannot happen with FIND_LAST_VERSION */
		case TM_SelfModified:	/* changed by this very statement */
			return false;
		default:
			elog(ERROR, "invitetomedia: unexpected table_tuple_lock result %d", (int) res);
	}
	return false;				/* keep compiler quiet */
}

typedef enum UseCheck
{
	USE_ALLOWED,
	USE_REFUSED,
	USE_NULL					/* a NULL where the schema has NOT NULL */
} UseCheck;

/*
 * 2.0: the link is the call's tenant's, at the call's site (the statements'
 * "i.tenant_id = $4 AND i.site_id = $5", checked again on every version as
 * the hash is); always true for 1.1.
 */
static bool
AtSite(Datum *v, bool *n, const ItmDirectSite *site)
{
	if (site == NULL)
		return true;
	return !n[cache.inv[INV_TENANT_ID] - 1] && !n[cache.inv[INV_SITE_ID] - 1] &&
		DatumGetInt32(v[cache.inv[INV_TENANT_ID] - 1]) == site->tenant_id &&
		TextEquals(v[cache.inv[INV_SITE_ID] - 1], site->site_id);
}

/* The WHERE clause of the consume statement, on the invite in slot. */
static UseCheck
CheckUse(TupleTableSlot *slot, bytea *token_hash, const char *email_key,
		 const ItmDirectSite *site, int32 lockout, TimestampTz now)
{
	Datum	   *v;
	bool	   *n;
	int32		max_uses;
	int32		use_count;

	slot_getallattrs(slot);
	v = slot->tts_values;
	n = slot->tts_isnull;
#define V(c) v[cache.inv[c] - 1]
#define N(c) n[cache.inv[c] - 1]
	if (N(INV_INVITE_ID) || N(INV_TOKEN_HASH) || N(INV_EMAIL) || N(INV_EXPIRES_AT) ||
		N(INV_MAX_USES) || N(INV_USE_COUNT) || N(INV_FAILED_ATTEMPTS) ||
		(site != NULL && (N(INV_TENANT_ID) || N(INV_SITE_ID))))
		return USE_NULL;
	max_uses = DatumGetInt32(V(INV_MAX_USES));
	use_count = DatumGetInt32(V(INV_USE_COUNT));
	if (HashMatches(V(INV_TOKEN_HASH), token_hash) &&
		AtSite(v, n, site) &&
		N(INV_REVOKED_AT) &&
		DatumGetTimestampTz(V(INV_EXPIRES_AT)) > now &&
		EmailMatches(V(INV_EMAIL), email_key) &&
		(max_uses == -1 || use_count < max_uses) &&
		(N(INV_NOT_BEFORE) || DatumGetTimestampTz(V(INV_NOT_BEFORE)) <= now) &&
		!(lockout > 0 && DatumGetInt32(V(INV_FAILED_ATTEMPTS)) >= lockout))
		return USE_ALLOWED;
	return USE_REFUSED;
#undef V
#undef N
}

/*
 * Writes the new version of the locked invite: the executor's constraint
 * checks and, when the update is not HOT, its index entries (indexes are
 * opened only then: most uses change no indexed column).
 */
static void
WriteUse(Relation inv, Snapshot snapshot, TupleTableSlot *oldslot, TupleTableSlot *newslot)
{
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	List	   *perminfos = NIL;
	TU_UpdateIndexes update_indexes;

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(inv);
	rte->relkind = inv->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	addRTEPermissionInfo(&perminfos, rte);
	ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
	InitResultRelInfo(rri, inv, 1, NULL, 0);
	estate->es_snapshot = snapshot;
	estate->es_output_cid = GetCurrentCommandId(true);
	PrepareChecks(rri, estate, cache.inv_checks, cache.inv_ncheck);

	CheckCmdReplicaIdentity(inv, CMD_UPDATE);
	/* a CHECK may read tableoid, as the executor sets it before checking */
	newslot->tts_tableOid = RelationGetRelid(inv);
	if (inv->rd_att->constr)
		ExecConstraints(rri, newslot, estate);
	simple_table_tuple_update(inv, &oldslot->tts_tid, newslot, snapshot, &update_indexes);
	if (update_indexes != TU_None)
	{
		List	   *recheck;

		ExecOpenIndices(rri, false);
		recheck = ExecInsertIndexTuples(rri, newslot, estate, true, false, NULL, NIL,
										update_indexes == TU_Summarizing);
		list_free(recheck);
		ExecCloseIndices(rri);
	}
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
}

/*
 * Opens invitetomedia.relname with lockmode, if the caller holds mode on
 * it; *relid is looked up again while *valid is false (its cache was
 * reset).  NULL, and why at DEBUG1, if it is missing, was dropped meanwhile
 * or may not be used so: the statement then says what is wrong.
 */
static Relation
OpenByName(const char *relname, Oid *relid, bool *valid, LOCKMODE lockmode, AclMode mode)
{
	Relation	rel = NULL;

	/*
	 * The name is looked up at every call, and again after the lock is
	 * granted if invalidation messages came in while it waited (a rename
	 * or a swap of the table, a renamed schema): the table locked must be
	 * the one the name means now, as RangeVarGetRelidExtended makes sure
	 * for a statement.  A table dropped meanwhile is looked up again.
	 */
	for (;;)
	{
		uint64		inval_count = SharedInvalidMessageCounter;
		Oid			nsp = get_namespace_oid("invitetomedia", true);
		Oid			id = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

		if (rel != NULL)
		{
			if (RelationGetRelid(rel) == id)
				break;
			table_close(rel, lockmode);
			rel = NULL;
		}
		/* every privilege of mode (pg_class_aclcheck is satisfied by any one) */
		if (!OidIsValid(id) || pg_class_aclmask(id, GetUserId(), mode, ACLMASK_ALL) != mode)
			break;
		rel = try_table_open(id, lockmode);
		if (rel != NULL && inval_count == SharedInvalidMessageCounter)
			break;
	}
	if (rel == NULL)
	{
		*valid = false;
		Unsupported(psprintf("%s is missing, or the function's owner lacks privileges on it",
							 relname));
		return NULL;
	}
	if (RelationGetRelid(rel) != *relid)
	{
		*relid = RelationGetRelid(rel);
		*valid = false;
	}
	return rel;
}

/*
 * What SPI does before each statement it runs for a volatile function
 * (_SPI_execute_plan): the command counter advanced, so that the statement
 * sees what the caller's statement wrote before it (a revoke earlier in
 * the same SQL statement), and a snapshot of its own pushed as the active
 * one, taken now under READ COMMITTED, so that a DBA's CHECK constraint or
 * default that reads a table reads what the statement would.  Registered:
 * the caller reads with it; EndStatement pops it.
 */
static Snapshot
BeginStatement(void)
{
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	return RegisterSnapshot(GetActiveSnapshot());
}

static void
EndStatement(Snapshot snapshot)
{
	UnregisterSnapshot(snapshot);
	PopActiveSnapshot();
}

/* Opens settings (AccessShareLock) if this path may read it; NULL if not. */
static Relation
OpenSettings(void)
{
	Relation	set;
	const char *why;

	set = OpenByName("settings", &set_cache.relid, &set_cache.valid, AccessShareLock, ACL_SELECT);
	if (set == NULL)
		return NULL;
	if (!set_cache.valid)
	{
		why = ShapeProblem(set, false, NULL);
		if (why == NULL)
			why = FindColumns(set, settings_cols, SET_NCOLS, set_cache.att);
		if (set_cache.unusable)
			pfree(unconstify(char *, set_cache.unusable));
		set_cache.unusable = why ? MemoryContextStrdup(CacheMemoryContext, why) : NULL;
		set_cache.valid = true;
	}
	why = set_cache.unusable;
	if (why == NULL && check_enable_rls(set_cache.relid, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(set, NoLock);
		Unsupported(why);
		return NULL;
	}
	return set;
}

/*
 * 2.0: opens sites (AccessShareLock) if this path may read it; NULL if
 * not.  Read only, so its triggers do not matter; its row is found by the
 * unique index on site_id alone, as the primary key has it.
 */
static Relation
OpenSites(void)
{
	Relation	rel;
	const char *why;

	rel = OpenByName("sites", &site_cache.relid, &site_cache.valid, AccessShareLock, ACL_SELECT);
	if (rel == NULL)
		return NULL;
	if (!site_cache.valid)
	{
		why = ShapeProblem(rel, false, NULL);
		if (why == NULL)
			why = FindColumns(rel, site_cols, SITE_NCOLS, site_cache.att);
		if (why == NULL &&
			!OidIsValid(site_cache.pk_index = FindKeyIndex1(rel, site_cache.att[SITE_SITE_ID], 0,
															TEXTOID, F_TEXTEQ,
															DEFAULT_COLLATION_OID)))
			why = "sites has no usable unique index on site_id";
		nsite_tids = 0;			/* the rows' places too */
		if (site_cache.unusable)
			pfree(unconstify(char *, site_cache.unusable));
		site_cache.unusable = why ? MemoryContextStrdup(CacheMemoryContext, why) : NULL;
		site_cache.valid = true;
	}
	why = site_cache.unusable;
	if (why == NULL && check_enable_rls(site_cache.relid, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(rel, NoLock);
		Unsupported(why);
		return NULL;
	}
	return rel;
}

/* The configuration's table: 1.1's settings, 2.0's sites (site not NULL) */
static Relation
OpenConfig(const ItmDirectSite *site)
{
	return site ? OpenSites() : OpenSettings();
}

/*
 * Opens invites (with lockmode) and the configuration (settings, or 2.0's
 * sites) if this path may use them, as a caller needing mode on invites;
 * false (and why at DEBUG1) if not.
 */
static bool
OpenInvites(LOCKMODE lockmode, AclMode mode, const ItmDirectSite *site,
			Relation *invp, Relation *setp)
{
	const char *why = NULL;
	Relation	inv;
	Relation	set;

	/* what the statement's permission checks would have required */
	inv = OpenByName("invites", &cache.invites, &cache.valid, lockmode, mode);
	if (inv == NULL)
		return false;
	set = OpenConfig(site);
	if (set == NULL)
	{
		table_close(inv, NoLock);
		return false;
	}
	/* opening may have taken in invalidations: look at the table then */
	if (!cache.valid)
		Inspect(inv);

	if (cache.unusable)
		why = cache.unusable;
	/* the write guard lets the owner through: only the owner writes here */
	else if ((mode & ACL_UPDATE) && inv->rd_rel->relowner != GetUserId())
		why = "the function's owner does not own invites";
	else if (check_enable_rls(cache.invites, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(set, NoLock);
		table_close(inv, NoLock);
		Unsupported(why);
		return false;
	}
	*invp = inv;
	*setp = set;
	return true;
}

/*
 * The consume statement is one statement: its record is inserted with the
 * snapshot its UPDATE ran with, which does not see the use it took (a DBA's
 * default or CHECK on redemptions that reads invites sees the link as it
 * was).  The use keeps that snapshot here for its record; NULL otherwise.
 */
static Snapshot use_snapshot = NULL;

static bool RecordUsable(const ItmDirectSite *site);

ItmDirectResult
ItmDirectTakeUse(bytea *token_hash, const char *email_key, const ItmDirectSite *site,
				 ItmDirectUse *use)
{
	Relation	inv;
	Relation	set;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	TupleTableSlot *newslot;
	Datum	   *values;
	bool	   *nulls;
	bool		enabled = false;
	bool		found;
	int32		lockout = 0;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	ItmDirectResult result = ITM_DIRECT_REFUSED;
	int32		max_uses;
	int32		use_count;
	UseCheck	check;
	int			natts;
	int			i;

	use_snapshot = NULL;			/* a failed call's was released with it */
	if (!itm_direct_use)
		return ITM_DIRECT_UNSUPPORTED;
	UseSchema(site != NULL);
	current_op = "invite_consume takes the use";
	if (IsolationUsesXactSnapshot())
	{
		Unsupported("the transaction is REPEATABLE READ or SERIALIZABLE");
		return ITM_DIRECT_UNSUPPORTED;
	}
	/* the use and its record are one statement: both this way, or neither */
	if (!RecordUsable(site))
		return ITM_DIRECT_UNSUPPORTED;
	current_op = "invite_consume takes the use";
	/* the locks and privileges the UPDATE would take and need */
	if (!OpenInvites(RowExclusiveLock, ACL_SELECT | ACL_UPDATE, site, &inv, &set))
		return ITM_DIRECT_UNSUPPORTED;
	/*
	 * The UPDATE's executor refuses a table that publishes updates without
	 * a replica identity when it starts, whether a row is found or not
	 * (found by test/difffuzz): so does this, before looking.
	 */
	CheckCmdReplicaIdentity(inv, CMD_UPDATE);

	/* READ COMMITTED: what committed before this statement, as SPI's would */
	snapshot = BeginStatement();
	if (!ReadConfig(set, snapshot, site, &found, &enabled, &lockout))
	{
		EndStatement(snapshot);
		table_close(set, NoLock);
		table_close(inv, NoLock);
		return ITM_DIRECT_UNSUPPORTED;
	}
	table_close(set, NoLock);
	Runs();

	/*
	 * As the UPDATE does: the conditions on the version this snapshot sees,
	 * and only if they hold, the lock, and the conditions again on the
	 * newest version (a concurrent use, revoke or resend committed).
	 */
	slot = table_slot_create(inv, NULL);
	/* 2.0: no site row is a NULL enabled: no use */
	if (!enabled || !FetchInvite(inv, site, token_hash, snapshot, slot))
		goto out;
	check = CheckUse(slot, token_hash, email_key, site, lockout, now);
	if (check == USE_ALLOWED)
	{
		if (!LockNewest(inv, snapshot, slot, LockTupleNoKeyExclusive))
			goto out;
		check = CheckUse(slot, token_hash, email_key, site, lockout, now);
	}
	if (check == USE_NULL)
	{
		Unsupported("invites holds a NULL where its schema has NOT NULL");
		result = ITM_DIRECT_UNSUPPORTED;
	}
	if (check != USE_ALLOWED)
		goto out;

	natts = slot->tts_tupleDescriptor->natts;
	values = palloc(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	memcpy(values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(nulls, slot->tts_isnull, sizeof(bool) * natts);
#define V(c) values[cache.inv[c] - 1]
#define N(c) nulls[cache.inv[c] - 1]
	max_uses = DatumGetInt32(V(INV_MAX_USES));
	use_count = DatumGetInt32(V(INV_USE_COUNT));
	if (use_count == PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("integer out of range")));

	/* the statement's SET list */
	use_count++;
	V(INV_USE_COUNT) = Int32GetDatum(use_count);
	N(INV_USED_UP_AT) = !(max_uses != -1 && use_count >= max_uses);
	V(INV_USED_UP_AT) = TimestampTzGetDatum(now);
	N(INV_LAST_USED_AT) = false;
	V(INV_LAST_USED_AT) = TimestampTzGetDatum(now);

	newslot = table_slot_create(inv, NULL);
	ExecClearTuple(newslot);
	for (i = 0; i < natts; i++)
	{
		newslot->tts_values[i] = values[i];
		newslot->tts_isnull[i] = nulls[i];
	}
	ExecStoreVirtualTuple(newslot);
	WriteUse(inv, snapshot, slot, newslot);

	/* the statement's RETURNING list, copied out of the slot */
	use->invite_id = DatumGetInt64(V(INV_INVITE_ID));
	use->media_id_null = N(INV_MEDIA_ID);
	use->role_null = N(INV_ROLE);
	use->first_name_null = N(INV_FIRST_NAME);
	use->last_name_null = N(INV_LAST_NAME);
	use->media_id = use->media_id_null ? (Datum) 0 : datumCopy(V(INV_MEDIA_ID), false, -1);
	use->role = use->role_null ? (Datum) 0 : datumCopy(V(INV_ROLE), false, -1);
	use->first_name = use->first_name_null ? (Datum) 0 : datumCopy(V(INV_FIRST_NAME), false, -1);
	use->last_name = use->last_name_null ? (Datum) 0 : datumCopy(V(INV_LAST_NAME), false, -1);
	use->email = datumCopy(V(INV_EMAIL), false, -1);
	use->max_uses = max_uses;
	use->use_count = use_count;
	use->expires_at = DatumGetTimestampTz(V(INV_EXPIRES_AT));
	ExecDropSingleTupleTableSlot(newslot);
	result = ITM_DIRECT_TAKEN;
#undef V
#undef N

out:
	ExecDropSingleTupleTableSlot(slot);
	if (result == ITM_DIRECT_TAKEN)
		use_snapshot = RegisterSnapshot(snapshot);
	EndStatement(snapshot);
	table_close(inv, NoLock);
	/* what follows (the record, the caller's next statement) sees the use */
	if (result == ITM_DIRECT_TAKEN)
		CommandCounterIncrement();
	return result;
}

/*---- inserts: the record of a use, a guest's join --------------------------*/

/*
 * A table this path inserts into: the columns a call gives (or reads back:
 * given = false), and what an INSERT would compute for the others, their
 * defaults, planned once, as are the CHECK constraints.
 */
typedef struct InsertCol
{
	const char *name;
	Oid			type;
	bool		given;			/* false: computed (its default), read back */
	bool		notnull;		/* NOT NULL in the extension's schema */
} InsertCol;

#define INSERT_MAX_COLS 12

typedef struct InsertTarget
{
	const char *relname;
	const ShapeTrigger *triggers;	/* the extension's own triggers on it */
	bool		owner_only;		/* a write guard: only its owner writes here */
	AclMode		mode;			/* what the statement needs (RETURNING: SELECT) */
	const InsertCol *cols;
	int			ncols;
	bool		valid;
	char	   *unusable;		/* in cxt */
	Oid			relid;
	AttrNumber	att[INSERT_MAX_COLS];
	MemoryContext cxt;
	int			ncheck;
	Expr	  **checks;
	int			ndefaults;
	AttrNumber *default_atts;	/* the columns no call gives */
	Expr	  **defaults;		/* their defaults, planned (NULL: none) */
} InsertTarget;

enum
{
	REC_REDEMPTION_ID,
	REC_INVITE_ID,
	REC_STATUS,
	REC_DEVICE_ID,
	REC_USER_ID,
	REC_NCOLS
};
static const InsertCol record_cols[REC_NCOLS] = {
	[REC_REDEMPTION_ID] = {"redemption_id", INT8OID, false, true},
	[REC_INVITE_ID] = {"invite_id", INT8OID, true, true},
	[REC_STATUS] = {"status", TEXTOID, true, true},
	[REC_DEVICE_ID] = {"device_id", TEXTOID, true, false},
	[REC_USER_ID] = {"user_id", TEXTOID, true, false},
};
/* direct_record_plan: INSERT ... RETURNING */
static InsertTarget record_target = {.relname = "redemptions", .triggers = no_triggers,
.mode = ACL_INSERT | ACL_SELECT, .cols = record_cols, .ncols = REC_NCOLS};

/*
 * 2.0: consume_plan's record (its second half) gives every column: the
 * tenant, the link's site, the id drawn by the caller, the relay's
 * event_seq (NULL where the relay does not serve the database).  Only the
 * others get their defaults (at, a DBA's columns).
 */
enum
{
	REC2_TENANT_ID,
	REC2_SITE_ID,
	REC2_REDEMPTION_ID,
	REC2_INVITE_ID,
	REC2_STATUS,
	REC2_DEVICE_ID,
	REC2_USER_ID,
	REC2_EVENT_SEQ,
	REC2_NCOLS
};
static const InsertCol record_cols_2_0[REC2_NCOLS] = {
	[REC2_TENANT_ID] = {"tenant_id", INT4OID, true, true},
	[REC2_SITE_ID] = {"site_id", TEXTOID, true, true},
	[REC2_REDEMPTION_ID] = {"redemption_id", INT8OID, true, true},
	[REC2_INVITE_ID] = {"invite_id", INT8OID, true, true},
	[REC2_STATUS] = {"status", TEXTOID, true, true},
	[REC2_DEVICE_ID] = {"device_id", TEXTOID, true, false},
	[REC2_USER_ID] = {"user_id", TEXTOID, true, false},
	[REC2_EVENT_SEQ] = {"event_seq", INT8OID, true, false},
};
static InsertTarget record_target_2_0 = {.relname = "redemptions", .triggers = no_triggers,
.mode = ACL_INSERT | ACL_SELECT, .cols = record_cols_2_0, .ncols = REC2_NCOLS};

enum
{
	GJ_GUEST_LINK_ID,
	GJ_STATUS,
	GJ_EMAIL,
	GJ_FIRST_NAME,
	GJ_LAST_NAME,
	GJ_DEVICE_ID,
	GJ_USER_ID,
	GJ_JOIN_ID,
	GJ_NCOLS
};
static const InsertCol join_cols[GJ_NCOLS] = {
	[GJ_GUEST_LINK_ID] = {"guest_link_id", INT8OID, true, true},
	[GJ_STATUS] = {"status", TEXTOID, true, true},
	[GJ_EMAIL] = {"email", TEXTOID, true, true},
	[GJ_FIRST_NAME] = {"first_name", TEXTOID, true, true},
	[GJ_LAST_NAME] = {"last_name", TEXTOID, true, true},
	[GJ_DEVICE_ID] = {"device_id", TEXTOID, true, false},
	[GJ_USER_ID] = {"user_id", TEXTOID, true, false},
	[GJ_JOIN_ID] = {"join_id", INT8OID, false, true},
};
/* guest_record_plan_1_1_1: INSERT ... RETURNING join_id (1.1's reads it too) */
static InsertTarget join_target = {.relname = "guest_link_joins", .triggers = no_triggers,
.mode = ACL_INSERT | ACL_SELECT, .cols = join_cols, .ncols = GJ_NCOLS};

enum
{
	NI_INVITE_ID,
	NI_TOKEN_HASH,
	NI_MEDIA_ID,
	NI_ROLE,
	NI_EMAIL,
	NI_FIRST_NAME,
	NI_LAST_NAME,
	NI_INVITED_BY,
	NI_EXPIRES_AT,
	NI_MAX_USES,
	NI_NOT_BEFORE,
	NI_NCOLS
};
static const InsertCol new_invite_cols[NI_NCOLS] = {
	[NI_INVITE_ID] = {"invite_id", INT8OID, false, true},
	[NI_TOKEN_HASH] = {"token_hash", BYTEAOID, true, true},
	[NI_MEDIA_ID] = {"media_id", TEXTOID, true, true},
	[NI_ROLE] = {"role", TEXTOID, true, true},
	[NI_EMAIL] = {"email", TEXTOID, true, true},
	[NI_FIRST_NAME] = {"first_name", TEXTOID, true, true},
	[NI_LAST_NAME] = {"last_name", TEXTOID, true, true},
	[NI_INVITED_BY] = {"invited_by", TEXTOID, true, true},
	[NI_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true, true},
	[NI_MAX_USES] = {"max_uses", INT4OID, true, true},
	[NI_NOT_BEFORE] = {"not_before", TIMESTAMPTZOID, true, false},
};
/* create_insert_plan_1_1: INSERT ... RETURNING */
static InsertTarget invite_target = {.relname = "invites", .triggers = invites_triggers,
	.owner_only = true, .mode = ACL_INSERT | ACL_SELECT,
.cols = new_invite_cols, .ncols = NI_NCOLS};

StaticAssertDecl(REC_NCOLS <= INSERT_MAX_COLS && REC2_NCOLS <= INSERT_MAX_COLS &&
				 GJ_NCOLS <= INSERT_MAX_COLS &&
				 NI_NCOLS <= INSERT_MAX_COLS,
				 "INSERT_MAX_COLS holds every target's columns");

static void
InvalidateTarget(InsertTarget *t, Oid relid)
{
	if (!OidIsValid(relid) || relid == t->relid)
		t->valid = false;
}

static void
InspectTarget(InsertTarget *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	const char *why = NULL;
	int			i;
	int			k;

	if ((why = ShapeProblem(rel, true, t->triggers)) == NULL)
	{
		DirectCol	cols[INSERT_MAX_COLS];

		for (i = 0; i < t->ncols; i++)
		{
			cols[i].name = t->cols[i].name;
			cols[i].type = t->cols[i].type;
			cols[i].notnull = t->cols[i].notnull;
		}
		why = FindColumns(rel, cols, t->ncols, t->att);
	}

	if (t->cxt)
		MemoryContextReset(t->cxt);
	else
		t->cxt = AllocSetContextCreate(CacheMemoryContext, "invitetomedia direct insert",
									   ALLOCSET_SMALL_SIZES);
	t->unusable = why ? MemoryContextStrdup(t->cxt, why) : NULL;
	t->checks = NULL;
	t->ncheck = 0;
	t->ndefaults = 0;
	if (why == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(t->cxt);

		t->checks = PlanChecks(rel, &t->ncheck);
		/* every column no call gives gets its default, as an INSERT gives it */
		t->default_atts = palloc(sizeof(AttrNumber) * desc->natts);
		t->defaults = palloc(sizeof(Expr *) * desc->natts);
		for (k = 0; k < desc->natts; k++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, k);
			bool		given = false;
			Node	   *def;

			for (i = 0; i < t->ncols; i++)
				if (t->cols[i].given && t->att[i] == att->attnum)
					given = true;
			if (att->attisdropped || given)
				continue;
			def = build_column_default(rel, att->attnum);
			t->default_atts[t->ndefaults] = att->attnum;
			t->defaults[t->ndefaults] = def ? expression_planner((Expr *) def) : NULL;
			t->ndefaults++;
		}
		MemoryContextSwitchTo(old);
	}
	t->valid = true;
}

/* Opens t's table if this path may insert into it; NULL (and why) if not. */
static Relation
OpenTarget(InsertTarget *t)
{
	Relation	rel;
	const char *why = NULL;

	rel = OpenByName(t->relname, &t->relid, &t->valid, RowExclusiveLock, t->mode);
	if (rel == NULL)
		return NULL;
	if (!t->valid)
		InspectTarget(t, rel);
	if (t->unusable)
		why = t->unusable;
	else if (t->owner_only && rel->rd_rel->relowner != GetUserId())
		why = "the function's owner does not own the table";
	else if (check_enable_rls(t->relid, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(rel, NoLock);
		Unsupported(why);
		return NULL;
	}
	return rel;
}

/*
 * Inserts one row into t's open table: values[i] for the given columns,
 * the defaults for the others (read back into values[i] for the columns
 * that are not given).  Constraints, indexes and row triggers as
 * ExecSimpleRelationInsert does them; what follows sees the row.
 */
static void
InsertRow(InsertTarget *t, Relation rel, Datum *values, bool *nulls)
{
	MemoryContext caller = CurrentMemoryContext;
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	List	   *perminfos = NIL;
	TupleTableSlot *slot;
	ExprContext *econtext;
	MemoryContext old;
	int			natts;
	int			i;

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	addRTEPermissionInfo(&perminfos, rte);
	ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	PrepareChecks(rri, estate, t->checks, t->ncheck);

	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	natts = slot->tts_tupleDescriptor->natts;
	ExecClearTuple(slot);
	for (i = 0; i < natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
	/* the defaults, in column order as the INSERT computes them */
	econtext = GetPerTupleExprContext(estate);
	for (i = 0; i < t->ndefaults; i++)
	{
		AttrNumber	a = t->default_atts[i];

		if (t->defaults[i] != NULL)
			slot->tts_values[a - 1] =
				ExecEvalExprSwitchContext(ExecInitExpr(t->defaults[i], NULL), econtext,
										  &slot->tts_isnull[a - 1]);
	}
	for (i = 0; i < t->ncols; i++)
		if (t->cols[i].given)
		{
			slot->tts_values[t->att[i] - 1] = values[i];
			slot->tts_isnull[t->att[i] - 1] = nulls[i];
		}
	ExecStoreVirtualTuple(slot);
	/* a CHECK may read tableoid, as the executor sets it before checking */
	slot->tts_tableOid = RelationGetRelid(rel);

	ExecOpenIndices(rri, false);
	ExecSimpleRelationInsert(rri, estate, slot);
	ExecCloseIndices(rri);

	/* the computed columns, copied out of the executor's memory */
	old = MemoryContextSwitchTo(caller);
	for (i = 0; i < t->ncols; i++)
		if (!t->cols[i].given)
		{
			Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, t->att[i] - 1);

			nulls[i] = slot->tts_isnull[t->att[i] - 1];
			values[i] = nulls[i] ? (Datum) 0 :
				datumCopy(slot->tts_values[t->att[i] - 1], att->attbyval, att->attlen);
		}
	MemoryContextSwitchTo(old);

	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	CommandCounterIncrement();
}

/*---- the record of a use ----------------------------------------------------*/

enum
{
	USR_USER_ID,
	USR_EMAIL,
	USR_NCOLS_1_1,				/* 2.0 adds: */
	USR_TENANT_ID = USR_NCOLS_1_1,
	USR_NCOLS
};
static const DirectCol user_cols[USR_NCOLS] = {
	[USR_USER_ID] = {"user_id", TEXTOID, true},
	[USR_EMAIL] = {"email", TEXTOID, false},
	[USR_TENANT_ID] = {"tenant_id", INT4OID, true},
};

/* users, for the invitee's user_id */
static struct
{
	bool		valid;
	const char *unusable;		/* a constant string */
	Oid			users;
	Oid			email_index;	/* 2.0: (tenant_id, lower(email COLLATE "C")) */
	AttrNumber	att[USR_NCOLS];
} usr_cache;

/* Opens users if this path may read it; NULL (and why) if not. */
static Relation
OpenUsers(void)
{
	Relation	usr;
	const char *why = NULL;

	usr = OpenByName("users", &usr_cache.users, &usr_cache.valid, AccessShareLock, ACL_SELECT);
	if (usr == NULL)
		return NULL;
	if (!usr_cache.valid)
	{
		usr_cache.unusable = NULL;
		if (ShapeProblem(usr, false, NULL) != NULL)
			usr_cache.unusable = "users is not a plain table as the extension made it";
		else if (FindColumns(usr, user_cols, cached_v2 ? USR_NCOLS : USR_NCOLS_1_1,
							 usr_cache.att) != NULL)
			usr_cache.unusable = "users has changed columns";
		else if (!cached_v2 &&
				 !OidIsValid(usr_cache.email_index =
							 FindKeyIndex1(usr, 0, usr_cache.att[USR_EMAIL],
										   TEXTOID, F_TEXTEQ, C_COLLATION_OID)))
			usr_cache.unusable = "users has no usable index on lower(email COLLATE \"C\")";
		else if (cached_v2 &&
				 !OidIsValid(usr_cache.email_index =
							 FindTenantKeyIndex(usr, usr_cache.att[USR_TENANT_ID], 0,
												usr_cache.att[USR_EMAIL],
												TEXTOID, F_TEXTEQ, C_COLLATION_OID)))
			usr_cache.unusable = "users has no usable unique index on (tenant_id, lower(email COLLATE \"C\"))";
		usr_cache.valid = true;
	}
	if (usr_cache.unusable)
		why = usr_cache.unusable;
	else if (check_enable_rls(usr_cache.users, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(usr, NoLock);
		Unsupported(why);
		return NULL;
	}
	return usr;
}

/* The user_id of the user with this email key (2.0: of site's tenant), or NULL. */
static char *
FindUserId(Relation usr, Snapshot snapshot, const char *email_key, const ItmDirectSite *site)
{
	TupleTableSlot *slot = table_slot_create(usr, NULL);
	char	   *user_id = NULL;

	if (FetchByTenantKey(usr, usr_cache.email_index, site, TEXTOID, F_TEXTEQ, C_COLLATION_OID,
						 CStringGetTextDatum(email_key), snapshot, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, usr_cache.att[USR_USER_ID], &isnull);

		if (!isnull)
			user_id = TextDatumGetCString(d);
	}
	ExecDropSingleTupleTableSlot(slot);
	return user_id;
}

/*
 * The record of a use taken by ItmDirectTakeUse.  2.0 (site not NULL): of
 * the site's tenant and the link's site (the use was found at that site),
 * with the id drawn by the caller (drawn_id) and the relay's event_seq.
 */
bool
ItmDirectRecordUse(int64 invite_id, const char *email_key,
				   Datum device_id, bool device_id_null,
				   const ItmDirectSite *site, int64 drawn_id,
				   Datum event_seq, bool event_seq_null,
				   int64 *redemption_id, char **user_id)
{
	InsertTarget *t = site ? &record_target_2_0 : &record_target;
	Relation	rec;
	Relation	usr;
	Snapshot	snapshot;
	Datum		values[INSERT_MAX_COLS];
	bool		nulls[INSERT_MAX_COLS] = {0};

	if (!itm_direct_use)
		return false;
	UseSchema(site != NULL);
	current_op = "invite_consume writes the record";
	rec = OpenTarget(t);
	if (rec == NULL)
		return false;
	usr = OpenUsers();
	if (usr == NULL)
	{
		table_close(rec, NoLock);
		return false;
	}

	/* the statement's sub-select: the invitee's user, with the use's snapshot */
	if (use_snapshot != NULL)
	{
		PushActiveSnapshot(use_snapshot);
		snapshot = RegisterSnapshot(GetActiveSnapshot());
	}
	else
		snapshot = BeginStatement();
	Runs();
	*user_id = FindUserId(usr, snapshot, email_key, site);
	table_close(usr, NoLock);

	if (site)
	{
		values[REC2_TENANT_ID] = Int32GetDatum(site->tenant_id);
		values[REC2_SITE_ID] = CStringGetTextDatum(site->site_id);
		values[REC2_REDEMPTION_ID] = Int64GetDatum(drawn_id);
		values[REC2_INVITE_ID] = Int64GetDatum(invite_id);
		values[REC2_STATUS] = CStringGetTextDatum("ok");
		values[REC2_DEVICE_ID] = device_id;
		nulls[REC2_DEVICE_ID] = device_id_null;
		nulls[REC2_USER_ID] = *user_id == NULL;
		values[REC2_USER_ID] = *user_id ? CStringGetTextDatum(*user_id) : (Datum) 0;
		values[REC2_EVENT_SEQ] = event_seq;
		nulls[REC2_EVENT_SEQ] = event_seq_null;
	}
	else
	{
		values[REC_INVITE_ID] = Int64GetDatum(invite_id);
		values[REC_STATUS] = CStringGetTextDatum("ok");
		values[REC_DEVICE_ID] = device_id;
		nulls[REC_DEVICE_ID] = device_id_null;
		nulls[REC_USER_ID] = *user_id == NULL;
		values[REC_USER_ID] = *user_id ? CStringGetTextDatum(*user_id) : (Datum) 0;
	}
	InsertRow(t, rec, values, nulls);
	EndStatement(snapshot);
	ItmDirectUseDone();
	table_close(rec, NoLock);

	if (site)
	{
		*redemption_id = drawn_id;
		return true;
	}
	/* RETURNING redemption_id: NOT NULL in the schema */
	if (nulls[REC_REDEMPTION_ID])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.redemptions.redemption_id is NULL"),
				 errdetail("Its default or its NOT NULL constraint was removed."),
				 errhint("Restore the column's default and NOT NULL constraint.")));
	*redemption_id = DatumGetInt64(values[REC_REDEMPTION_ID]);
	return true;
}

/* Whether the record of a use may be written this way now (opened, closed). */
static bool
RecordUsable(const ItmDirectSite *site)
{
	Relation	rec;
	Relation	usr;

	current_op = "invite_consume writes the record";
	rec = OpenTarget(site ? &record_target_2_0 : &record_target);
	if (rec == NULL)
		return false;
	usr = OpenUsers();
	table_close(rec, NoLock);
	if (usr == NULL)
		return false;
	table_close(usr, NoLock);
	return true;
}

/* The use's record is written (or its caller gave up): its snapshot goes. */
void
ItmDirectUseDone(void)
{
	if (use_snapshot != NULL)
		UnregisterSnapshot(use_snapshot);
	use_snapshot = NULL;
}

/*---- invite_check ---------------------------------------------------------*/

static void
InspectMedia(Relation med, Relation inv)
{
	const char *why;

	cache.media_index = InvalidOid;
	if ((why = ShapeProblem(med, false, NULL)) != NULL)
		;
	else if ((why = FindColumns(med, media_cols, cached_v2 ? MED_NCOLS : MED_NCOLS_1_1,
								cache.med)) != NULL)
		;
	/* the join compares in the database's collation: both sides must use it */
	else if (TupleDescAttr(RelationGetDescr(med), cache.med[MED_MEDIA_ID] - 1)->attcollation != DEFAULT_COLLATION_OID ||
			 TupleDescAttr(RelationGetDescr(inv), cache.inv[INV_MEDIA_ID] - 1)->attcollation != DEFAULT_COLLATION_OID)
		why = "media_id has another collation";
	else if (!cached_v2 &&
			 !OidIsValid(cache.media_index = FindKeyIndex1(med, cache.med[MED_MEDIA_ID], 0, TEXTOID,
														   F_TEXTEQ, DEFAULT_COLLATION_OID)))
		why = "media has no usable unique index on media_id";
	else if (cached_v2 &&
			 !OidIsValid(cache.media_index = FindTenantKeyIndex(med, cache.med[MED_TENANT_ID],
																cache.med[MED_MEDIA_ID], 0, TEXTOID,
																F_TEXTEQ, DEFAULT_COLLATION_OID)))
		why = "media has no usable unique index on (tenant_id, media_id)";
	if (cache.media_cxt)
		MemoryContextReset(cache.media_cxt);
	else
		cache.media_cxt = AllocSetContextCreate(CacheMemoryContext, "invitetomedia direct media",
												ALLOCSET_SMALL_SIZES);
	cache.media_unusable = why ? MemoryContextStrdup(cache.media_cxt, why) : NULL;
	cache.media_valid = true;
}

/*
 * The title of the media entry (the check's LEFT JOIN; 2.0: of the link's
 * tenant, the site's); false if none.
 */
static bool
FindMediaTitle(Relation med, Snapshot snapshot, const ItmDirectSite *site, Datum media_id,
			   Datum *title, bool *title_null)
{
	TupleTableSlot *slot = table_slot_create(med, NULL);
	bool		found;

	found = FetchByTenantKey(med, cache.media_index, site, TEXTOID, F_TEXTEQ,
							 DEFAULT_COLLATION_OID, media_id, snapshot, slot);
	if (found)
	{
		Datum		d = slot_getattr(slot, cache.med[MED_TITLE], title_null);

		*title = *title_null ? (Datum) 0 : datumCopy(d, false, -1);
	}
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/* Opens media if this path may read it; NULL if not (said why). */
static Relation
OpenMedia(Relation inv)
{
	Relation	med;
	const char *why = NULL;

	med = OpenByName("media", &cache.media, &cache.media_valid, AccessShareLock, ACL_SELECT);
	if (med == NULL)
		return NULL;
	if (!cache.media_valid)
		InspectMedia(med, inv);
	if (cache.media_unusable)
		why = cache.media_unusable;
	else if (check_enable_rls(cache.media, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(med, NoLock);
		Unsupported(why);
		return NULL;
	}
	return med;
}

ItmDirectResult
ItmDirectReadInvite(bytea *token_hash, const ItmDirectSite *site, ItmDirectInvite *out)
{
	Relation	inv;
	Relation	set;
	Relation	med;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	bool		enabled = false;
	bool		found;
	int32		lockout = 0;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	ItmDirectResult result = ITM_DIRECT_REFUSED;
	Datum	   *v;
	bool	   *n;

	if (!itm_direct_use)
		return ITM_DIRECT_UNSUPPORTED;
	UseSchema(site != NULL);
	current_op = "invite_check reads the invite";
	/* SSI's predicate locks are the executor's business */
	if (IsolationIsSerializable())
	{
		Unsupported("the transaction is SERIALIZABLE");
		return ITM_DIRECT_UNSUPPORTED;
	}
	if (!OpenInvites(AccessShareLock, ACL_SELECT, site, &inv, &set))
		return ITM_DIRECT_UNSUPPORTED;
	med = OpenMedia(inv);
	if (med == NULL)
	{
		table_close(set, NoLock);
		table_close(inv, NoLock);
		return ITM_DIRECT_UNSUPPORTED;
	}

	/* a read-only query's snapshot: the statement's (or the transaction's) */
	snapshot = RegisterSnapshot(GetActiveSnapshot());
	slot = NULL;
	if (!ReadConfig(set, snapshot, site, &found, &enabled, &lockout))
	{
		result = ITM_DIRECT_UNSUPPORTED;
		goto out;
	}
	Runs();
	/* 2.0: the statement's inner join finds no row without the site's */
	if (!found)
		goto out;
	slot = table_slot_create(inv, NULL);
	if (!FetchInvite(inv, site, token_hash, snapshot, slot))
		goto out;
	slot_getallattrs(slot);
	v = slot->tts_values;
	n = slot->tts_isnull;
	/* 2.0: a link of another site (of the same tenant) is not found here */
	if (!AtSite(v, n, site))
		goto out;
#define V(c) v[cache.inv[c] - 1]
#define N(c) n[cache.inv[c] - 1]
	if (N(INV_MAX_USES) || N(INV_USE_COUNT) || N(INV_FAILED_ATTEMPTS) || N(INV_EXPIRES_AT))
	{
		Unsupported("invites holds a NULL where its schema has NOT NULL");
		result = ITM_DIRECT_UNSUPPORTED;
		goto out;
	}
	/* the check statement's columns, NULLs as it would compute them */
	out->enabled = enabled;
	out->revoked = !N(INV_REVOKED_AT);
	out->expired = !N(INV_EXPIRES_AT) && DatumGetTimestampTz(V(INV_EXPIRES_AT)) <= now;
	out->not_yet = !N(INV_NOT_BEFORE) && DatumGetTimestampTz(V(INV_NOT_BEFORE)) > now;
	out->locked = lockout > 0 && DatumGetInt32(V(INV_FAILED_ATTEMPTS)) >= lockout;
	out->max_uses = DatumGetInt32(V(INV_MAX_USES));
	out->use_count = DatumGetInt32(V(INV_USE_COUNT));
	out->media_id_null = N(INV_MEDIA_ID);
	out->media_id = out->media_id_null ? (Datum) 0 : datumCopy(V(INV_MEDIA_ID), false, -1);
	out->role_null = N(INV_ROLE);
	out->role = out->role_null ? (Datum) 0 : datumCopy(V(INV_ROLE), false, -1);
	out->expires_at_null = N(INV_EXPIRES_AT);
	out->expires_at = out->expires_at_null ? (Datum) 0 : V(INV_EXPIRES_AT);
	out->opens_at_null = N(INV_NOT_BEFORE);
	out->opens_at = out->opens_at_null ? (Datum) 0 : V(INV_NOT_BEFORE);
	out->media_title_null = true;
	if (!out->media_id_null)
		FindMediaTitle(med, snapshot, site, out->media_id, &out->media_title,
					   &out->media_title_null);
	result = ITM_DIRECT_TAKEN;
#undef V
#undef N

out:
	if (slot)
		ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	table_close(med, NoLock);
	table_close(set, NoLock);
	table_close(inv, NoLock);
	return result;
}

/*---- guest links -----------------------------------------------------------*/

enum
{
	GL_GUEST_LINK_ID,
	GL_TOKEN_HASH,
	GL_MEDIA_ID,
	GL_REVOKED_AT,
	GL_EXPIRES_AT,
	GL_CLICK_LIMIT,
	GL_CLICKS,
	GL_NCOLS
};
static const DirectCol guest_link_cols[GL_NCOLS] = {
	[GL_GUEST_LINK_ID] = {"guest_link_id", INT8OID, true},
	[GL_TOKEN_HASH] = {"token_hash", BYTEAOID, true},
	[GL_MEDIA_ID] = {"media_id", TEXTOID, true},
	[GL_REVOKED_AT] = {"revoked_at", TIMESTAMPTZOID, false},
	[GL_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, false},
	[GL_CLICK_LIMIT] = {"click_limit", INT4OID, false},
	[GL_CLICKS] = {"clicks", INT4OID, true},
};

static struct
{
	bool		valid;
	char	   *unusable;		/* in cxt */
	Oid			guest_links;
	Oid			id_index;
	Oid			hash_index;
	AttrNumber	att[GL_NCOLS];
	MemoryContext cxt;
} gl_cache;

/*
 * The policy a join without a device is judged by (1.1: domain_allowed,
 * 1.1.1: guest_allowed), looked up by name, called through fmgr as the
 * statement calls it: any language, the DBA's rule stays the rule.
 */
static struct
{
	bool		valid;
	const char *name;			/* a constant string */
	const char *unusable;		/* in cxt, or NULL */
	Oid			fn;
	FmgrInfo	flinfo;			/* in cxt */
	MemoryContext cxt;
} policy_cache;

/* The policy function name(text), if this path may call it; InvalidOid if not. */
static Oid
LookupPolicy(const char *name)
{
	if (!policy_cache.valid || policy_cache.name != name)
	{
		Oid			argtypes[1] = {TEXTOID};
		const char *why = NULL;
		Oid			fn;

		if (policy_cache.cxt)
			MemoryContextReset(policy_cache.cxt);
		else
			policy_cache.cxt = AllocSetContextCreate(CacheMemoryContext,
													 "invitetomedia direct policy",
													 ALLOCSET_SMALL_SIZES);
		fn = LookupFuncName(list_make2(makeString("invitetomedia"), makeString(unconstify(char *, name))),
							1, argtypes, true);
		if (!OidIsValid(fn))
			why = psprintf("%s(text) was not found", name);
		/* the statement casts the answer to boolean: only a boolean is read as one */
		else if (get_func_rettype(fn) != BOOLOID || get_func_retset(fn))
			why = psprintf("%s(text) does not return one boolean", name);
		else
			fmgr_info_cxt(fn, &policy_cache.flinfo, policy_cache.cxt);
		policy_cache.fn = why ? InvalidOid : fn;
		policy_cache.unusable = why ? MemoryContextStrdup(policy_cache.cxt, why) : NULL;
		policy_cache.name = name;
		policy_cache.valid = true;
	}
	if (policy_cache.unusable)
	{
		Unsupported(policy_cache.unusable);
		return InvalidOid;
	}
	if (object_aclcheck(ProcedureRelationId, policy_cache.fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
	{
		Unsupported(psprintf("%s(text) may not be called", name));
		return InvalidOid;
	}
	return policy_cache.fn;
}

/* Opens guest_links (with lockmode) if this path may use it; NULL if not. */
static Relation
OpenGuestLinks(LOCKMODE lockmode, AclMode mode)
{
	Relation	gl;
	const char *why = NULL;

	gl = OpenByName("guest_links", &gl_cache.guest_links, &gl_cache.valid, lockmode, mode);
	if (gl == NULL)
		return NULL;
	if (!gl_cache.valid)
	{
		why = ShapeProblem(gl, false, NULL);
		if (why == NULL)
			why = FindColumns(gl, guest_link_cols, GL_NCOLS, gl_cache.att);
		if (why == NULL &&
			!OidIsValid(gl_cache.id_index = FindKeyIndex1(gl, gl_cache.att[GL_GUEST_LINK_ID], 0,
														 INT8OID, F_INT8EQ, InvalidOid)))
			why = "guest_links has no usable index on guest_link_id";
		if (why == NULL &&
			!OidIsValid(gl_cache.hash_index = FindKeyIndex1(gl, gl_cache.att[GL_TOKEN_HASH], 0,
														   BYTEAOID, F_BYTEAEQ, InvalidOid)))
			why = "guest_links has no usable index on token_hash";
		if (gl_cache.cxt)
			MemoryContextReset(gl_cache.cxt);
		else
			gl_cache.cxt = AllocSetContextCreate(CacheMemoryContext, "invitetomedia direct guest",
												 ALLOCSET_SMALL_SIZES);
		gl_cache.unusable = why ? MemoryContextStrdup(gl_cache.cxt, why) : NULL;
		gl_cache.valid = true;
	}
	why = gl_cache.unusable;
	if (why == NULL && check_enable_rls(gl_cache.guest_links, InvalidOid, true) == RLS_ENABLED)
		why = "row-level security applies";
	if (why)
	{
		table_close(gl, NoLock);
		Unsupported(why);
		return NULL;
	}
	return gl;
}

/*
 * The diagnosis statement names guest_link_joins (a device's earlier
 * joins), so it is locked and checked for SELECT even when no device is
 * given and nothing is read from it: the path asks the same of it (found
 * by test/difffuzz: with SELECT revoked the statement fails with 42501).
 */
static struct
{
	Oid			relid;
	bool		valid;
} joins_read;

static bool
JoinsReadable(void)
{
	Relation	rel = OpenByName("guest_link_joins", &joins_read.relid, &joins_read.valid,
								 AccessShareLock, ACL_SELECT);

	if (rel == NULL)
		return false;
	joins_read.valid = true;
	table_close(rel, NoLock);
	if (check_enable_rls(joins_read.relid, InvalidOid, true) == RLS_ENABLED)
	{
		Unsupported("row-level security applies");
		return false;
	}
	return true;
}

/*
 * What guest_diagnose_plan reads for a join without a device: the link by
 * its token hash, the settings row, the user with this email (1.1 only:
 * find_user), and the policy function (domain_allowed in 1.1,
 * guest_allowed in 1.1.1).  TAKEN: *out is filled; REFUSED: no link.
 */
ItmDirectResult
ItmDirectGuestDiagnose(bytea *token_hash, const char *email_key, const char *email,
					   const char *policy, bool find_user, ItmDirectGuestLink *out)
{
	Relation	set;
	Relation	gl;
	Relation	usr;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	bool		enabled = false;
	int32		lockout;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	ItmDirectResult result = ITM_DIRECT_REFUSED;
	Datum	   *v;
	bool	   *n;

	if (!itm_direct_use)
		return ITM_DIRECT_UNSUPPORTED;
	UseSchema(false);		/* 1.1.1's tables only */
	current_op = "guest_link_join reads the link";
	if (IsolationUsesXactSnapshot())
	{
		Unsupported("the transaction is REPEATABLE READ or SERIALIZABLE");
		return ITM_DIRECT_UNSUPPORTED;
	}
	/* settings alone, as the statement reads it (invites is not locked) */
	if ((set = OpenSettings()) == NULL)
		return ITM_DIRECT_UNSUPPORTED;
	gl = OpenGuestLinks(AccessShareLock, ACL_SELECT);
	usr = (gl && find_user) ? OpenUsers() : NULL;
	if (gl == NULL || (find_user && usr == NULL) || !JoinsReadable() ||
		!OidIsValid(LookupPolicy(policy)))
	{
		if (usr)
			table_close(usr, NoLock);
		if (gl)
			table_close(gl, NoLock);
		table_close(set, NoLock);
		return ITM_DIRECT_UNSUPPORTED;
	}

	/* READ COMMITTED: what committed before this statement, as SPI's would */
	snapshot = BeginStatement();
	slot = table_slot_create(gl, NULL);
	if (!ReadSettings(set, snapshot, &enabled, &lockout))
	{
		Unsupported("settings does not hold one row");
		result = ITM_DIRECT_UNSUPPORTED;
		goto out;
	}
	if (!FetchByKey(gl, gl_cache.hash_index, F_BYTEAEQ, InvalidOid,
					PointerGetDatum(token_hash), snapshot, slot))
		goto out;
	slot_getallattrs(slot);
	v = slot->tts_values;
	n = slot->tts_isnull;
#define V(c) v[gl_cache.att[c] - 1]
#define N(c) n[gl_cache.att[c] - 1]
	if (N(GL_GUEST_LINK_ID) || N(GL_CLICKS))
	{
		Unsupported("guest_links holds a NULL where its schema has NOT NULL");
		result = ITM_DIRECT_UNSUPPORTED;
		goto out;
	}
	out->guest_link_id = DatumGetInt64(V(GL_GUEST_LINK_ID));
	out->media_id_null = N(GL_MEDIA_ID);
	out->media_id = out->media_id_null ? (Datum) 0 : datumCopy(V(GL_MEDIA_ID), false, -1);
	out->limited = !N(GL_CLICK_LIMIT);
	out->click_limit = out->limited ? DatumGetInt32(V(GL_CLICK_LIMIT)) : 0;
	out->clicks = DatumGetInt32(V(GL_CLICKS));
	out->expires_at_null = N(GL_EXPIRES_AT);
	out->expires_at = out->expires_at_null ? (Datum) 0 : V(GL_EXPIRES_AT);
	out->enabled = enabled;
	out->revoked = !N(GL_REVOKED_AT);
	out->expired = !N(GL_EXPIRES_AT) && DatumGetTimestampTz(V(GL_EXPIRES_AT)) <= now;
#undef V
#undef N
	out->user_id = find_user ? FindUserId(usr, snapshot, email_key, NULL) : NULL;
	{
		LOCAL_FCINFO(fcinfo, 1);
		Datum		d;

		InitFunctionCallInfoData(*fcinfo, &policy_cache.flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = CStringGetTextDatum(email);
		fcinfo->args[0].isnull = false;
		/* a STABLE function reads the active snapshot: the statement's */
		d = FunctionCallInvoke(fcinfo);
		/* the statement's ColBool: NULL is not allowed */
		out->domain_allowed = !fcinfo->isnull && DatumGetBool(d);
	}
	result = ITM_DIRECT_TAKEN;

out:
	ExecDropSingleTupleTableSlot(slot);
	EndStatement(snapshot);
	if (usr)
		table_close(usr, NoLock);
	table_close(gl, NoLock);
	table_close(set, NoLock);
	return result;
}

/*
 * A join of an unlimited guest link: guest_share_plan's FOR KEY SHARE of
 * the link's row, taken as the invite's use is (conditions on the visible
 * version, the lock on the newest, the conditions again).  TAKEN: locked.
 */
ItmDirectResult
ItmDirectGuestShare(int64 guest_link_id)
{
	Relation	set;
	Relation	gl;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	bool		enabled = false;
	int32		lockout;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	ItmDirectResult result = ITM_DIRECT_REFUSED;
	int			round;

	if (!itm_direct_use)
		return ITM_DIRECT_UNSUPPORTED;
	UseSchema(false);		/* 1.1.1's tables only */
	current_op = "guest_link_join locks the link";
	if (IsolationUsesXactSnapshot())
	{
		Unsupported("the transaction is REPEATABLE READ or SERIALIZABLE");
		return ITM_DIRECT_UNSUPPORTED;
	}
	/* settings.enabled, read as the statement reads it (not invites) */
	if ((set = OpenSettings()) == NULL)
		return ITM_DIRECT_UNSUPPORTED;

	/* FOR KEY SHARE needs UPDATE, as the statement's would */
	gl = OpenGuestLinks(RowShareLock, ACL_SELECT | ACL_UPDATE);
	if (gl == NULL)
	{
		table_close(set, NoLock);
		return ITM_DIRECT_UNSUPPORTED;
	}

	snapshot = BeginStatement();
	if (!ReadSettings(set, snapshot, &enabled, &lockout))
	{
		Unsupported("settings does not hold one row");
		result = ITM_DIRECT_UNSUPPORTED;
	}
	table_close(set, NoLock);
	if (result == ITM_DIRECT_UNSUPPORTED || !enabled)
	{
		EndStatement(snapshot);
		table_close(gl, NoLock);
		return result;
	}

	slot = table_slot_create(gl, NULL);
	if (FetchByKey(gl, gl_cache.id_index, F_INT8EQ, InvalidOid, Int64GetDatum(guest_link_id),
				   snapshot, slot))
	{
		/* round 0: the visible version; round 1: the newest, locked */
		for (round = 0; round < 2; round++)
		{
			Datum	   *v;
			bool	   *n;

			slot_getallattrs(slot);
			v = slot->tts_values;
			n = slot->tts_isnull;
#define V(c) v[gl_cache.att[c] - 1]
#define N(c) n[gl_cache.att[c] - 1]
			if (N(GL_GUEST_LINK_ID) || DatumGetInt64(V(GL_GUEST_LINK_ID)) != guest_link_id ||
				!N(GL_REVOKED_AT) ||
				!(N(GL_EXPIRES_AT) || DatumGetTimestampTz(V(GL_EXPIRES_AT)) > now) ||
				!N(GL_CLICK_LIMIT))
				break;
#undef V
#undef N
			if (round == 1)
			{
				result = ITM_DIRECT_TAKEN;
				break;
			}
			if (!LockNewest(gl, snapshot, slot, LockTupleKeyShare))
				break;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	EndStatement(snapshot);
	table_close(gl, NoLock);
	return result;
}

/* The record of a guest's ok join (the link's row is locked already). */
bool
ItmDirectGuestRecord(int64 guest_link_id, const char *status, const char *email,
					 const char *first_name, const char *last_name,
					 Datum device_id, bool device_id_null, const char *user_id,
					 int64 *join_id)
{
	Relation	rel;
	Snapshot	snapshot;
	Datum		values[GJ_NCOLS];
	bool		nulls[GJ_NCOLS] = {0};

	if (!itm_direct_use)
		return false;
	UseSchema(false);		/* 1.1.1's tables only */
	current_op = "guest_link_join writes the record";
	rel = OpenTarget(&join_target);
	if (rel == NULL)
		return false;
	values[GJ_GUEST_LINK_ID] = Int64GetDatum(guest_link_id);
	values[GJ_STATUS] = CStringGetTextDatum(status);
	values[GJ_EMAIL] = CStringGetTextDatum(email);
	values[GJ_FIRST_NAME] = CStringGetTextDatum(first_name);
	values[GJ_LAST_NAME] = CStringGetTextDatum(last_name);
	values[GJ_DEVICE_ID] = device_id;
	nulls[GJ_DEVICE_ID] = device_id_null;
	values[GJ_USER_ID] = user_id ? CStringGetTextDatum(user_id) : (Datum) 0;
	nulls[GJ_USER_ID] = user_id == NULL;
	snapshot = BeginStatement();
	InsertRow(&join_target, rel, values, nulls);
	EndStatement(snapshot);
	table_close(rel, NoLock);
	/* RETURNING join_id (1.1.1): NOT NULL in the schema */
	if (nulls[GJ_JOIN_ID])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.guest_link_joins.join_id is NULL"),
				 errdetail("Its default or its NOT NULL constraint was removed."),
				 errhint("Restore the column's default and NOT NULL constraint.")));
	*join_id = DatumGetInt64(values[GJ_JOIN_ID]);
	return true;
}

/*---- invite_create --------------------------------------------------------*/

/*
 * The INSERT of a new invite (create_insert_plan_1_1's), its expiry
 * computed as the statement computes it: greatest(now(), not_before) +
 * duration minutes; a not_before not after now() is stored NULL.  false:
 * nothing written, run the statement.  On success *invite_id and
 * *expires_at are set.
 */
bool
ItmDirectInsertInvite(bytea *token_hash, const char *media_id, const char *role,
					  const char *email, const char *first_name, const char *last_name,
					  const char *invited_by, int32 duration_minutes, int32 max_uses,
					  bool scheduled, TimestampTz not_before,
					  int64 *invite_id, TimestampTz *expires_at)
{
	Relation	rel;
	Snapshot	snapshot;
	Datum		values[NI_NCOLS];
	bool		nulls[NI_NCOLS] = {0};
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz from = now;
	Interval   *duration;

	if (!itm_direct_use)
		return false;
	UseSchema(false);		/* 1.1.1's tables only */
	current_op = "invite_create inserts the invite";
	rel = OpenTarget(&invite_target);
	if (rel == NULL)
		return false;
	if (scheduled && not_before > from)
		from = not_before;
	duration = DatumGetIntervalP(DirectFunctionCall7(make_interval,
													 Int32GetDatum(0), Int32GetDatum(0),
													 Int32GetDatum(0), Int32GetDatum(0),
													 Int32GetDatum(0),
													 Int32GetDatum(duration_minutes),
													 Float8GetDatum(0.0)));
	*expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														  TimestampTzGetDatum(from),
														  IntervalPGetDatum(duration)));
	values[NI_TOKEN_HASH] = PointerGetDatum(token_hash);
	values[NI_MEDIA_ID] = CStringGetTextDatum(media_id);
	values[NI_ROLE] = CStringGetTextDatum(role);
	values[NI_EMAIL] = CStringGetTextDatum(email);
	values[NI_FIRST_NAME] = CStringGetTextDatum(first_name);
	values[NI_LAST_NAME] = CStringGetTextDatum(last_name);
	values[NI_INVITED_BY] = CStringGetTextDatum(invited_by);
	values[NI_EXPIRES_AT] = TimestampTzGetDatum(*expires_at);
	values[NI_MAX_USES] = Int32GetDatum(max_uses);
	nulls[NI_NOT_BEFORE] = !(scheduled && not_before > now);
	values[NI_NOT_BEFORE] = nulls[NI_NOT_BEFORE] ? (Datum) 0 : TimestampTzGetDatum(not_before);
	snapshot = BeginStatement();
	InsertRow(&invite_target, rel, values, nulls);
	EndStatement(snapshot);
	table_close(rel, NoLock);
	if (nulls[NI_INVITE_ID])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("invitetomedia.invites.invite_id is NULL"),
				 errdetail("Its default or its NOT NULL constraint was removed."),
				 errhint("Restore the column's default and NOT NULL constraint.")));
	*invite_id = DatumGetInt64(values[NI_INVITE_ID]);
	return true;
}

/*---- the caches' invalidation ----------------------------------------------*/

static void
DirectInvalidate(Datum arg, Oid relid)
{
	(void) arg;
	if (OidIsValid(relid) && IsWatched(relid))
	{
		DirectInvalidateAll((Datum) 0, 0, 0);
		return;
	}
	if (!OidIsValid(relid) || relid == cache.invites || relid == cache.hash_index)
		cache.valid = false;
	if (!OidIsValid(relid) || relid == set_cache.relid)
		set_cache.valid = false;
	if (!OidIsValid(relid) || relid == site_cache.relid || relid == site_cache.pk_index)
		site_cache.valid = false;
	InvalidateTarget(&record_target, relid);
	InvalidateTarget(&record_target_2_0, relid);
	InvalidateTarget(&join_target, relid);
	InvalidateTarget(&invite_target, relid);
	if (!OidIsValid(relid) || relid == usr_cache.users || relid == usr_cache.email_index)
		usr_cache.valid = false;
	if (!OidIsValid(relid) || relid == cache.media || relid == cache.media_index)
		cache.media_valid = false;
	if (!OidIsValid(relid) || relid == gl_cache.guest_links || relid == gl_cache.id_index)
		gl_cache.valid = false;
}

/* A function changed: a planned CHECK expression may have inlined it. */
static void
DirectInvalidateAll(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	cache.valid = false;
	set_cache.valid = false;
	site_cache.valid = false;
	cache.media_valid = false;
	record_target.valid = false;
	record_target_2_0.valid = false;
	join_target.valid = false;
	invite_target.valid = false;
	usr_cache.valid = false;
	gl_cache.valid = false;
	policy_cache.valid = false;
}

void
ItmDirectInit(void)
{
	DefineCustomBoolVariable("invitetomedia.direct_use",
							 "Takes invite_consume's use through the table access method.",
							 "Off: every use runs the SQL statement (for comparison).",
							 &itm_direct_use,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(DirectInvalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, DirectInvalidateAll, (Datum) 0);
}
