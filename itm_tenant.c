/*-------------------------------------------------------------------------
 *
 * itm_tenant.c
 *	  Which tenant a transaction acts for (2.0, issue 22).
 *
 * A tenant is bound per role (docs/design-2.0.md, section 2): the table
 * invitetomedia.tenant_roles maps a role's name to the one tenant it acts
 * for; a role it does not name acts for the tenant marked is_default, if
 * there is one, and for none otherwise.  The binding is a privilege the DBA
 * grants, not an argument: whatever a request's code passes to a function,
 * it reaches no other tenant's rows.
 *
 * The caller.  The API runs SECURITY DEFINER, so current_user inside is the
 * extension's owner; the caller is the outer user (GetOuterUserId): the
 * role of the login or of SET ROLE, which SECURITY DEFINER does not change.
 * A pool serving many tenants takes one with SET LOCAL ROLE at checkout.
 *
 * The rule is one function, invitetomedia.tenant(), which the row-level
 * security policies call too, so a DBA reads one rule.  A policy calls it
 * for every row it filters: the answer is cached per backend, keyed by the
 * outer role, and dropped when tenant_roles or tenants change (the
 * statement trigger tenant_cache_invalidate sends a relcache invalidation
 * of its table, which every backend receives at commit, and this one at
 * its next command) or when a role is renamed or dropped.
 *
 * IDENTIFICATION
 *	  itm_tenant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "itm_internal.h"

/* The binding of one role, as last read. */
typedef struct TenantCache
{
	bool		valid;
	Oid			role;			/* the outer role it was read for */
	bool		bound;			/* false: no tenant */
	int32		tenant_id;
	Oid			tenant_roles_rel;	/* the tables whose changes drop it */
	Oid			tenants_rel;
} TenantCache;

static TenantCache tenant_cache;

/*
 * The sites calls named, per backend: (tenant, the name asked, or "" for
 * the tenant's default site) to the site.  Every call resolves its site,
 * and the statement that does it was the largest cost 2.0 added to a call
 * (bench/results/callgrind-tenants.md).  Dropped whole when sites or
 * tenants change (their statement triggers send a relcache invalidation),
 * and used only where the look-up may run (see ItmBoundTenant).  Only the
 * name is cached: whether the site is enabled, and its settings, are read
 * by the call's own statements.
 */
#define SITE_KEY_LEN 64			/* site ids are at most 63 characters */
typedef struct SiteKey
{
	int32		tenant_id;
	char		asked[SITE_KEY_LEN];	/* "" for the default site */
} SiteKey;
typedef struct SiteEntry
{
	SiteKey		key;
	char		site_id[SITE_KEY_LEN];
} SiteEntry;

static HTAB *site_cache = NULL;
static Oid	sites_rel = InvalidOid;

enum
{
	TB_MAPPED,
	TB_DEFAULTS,
	TB_DEFAULT_ID,
	TB_NCOLS
};
static const ItmCol tenant_bound_cols[TB_NCOLS] = {
	[TB_MAPPED] = {"mapped", INT4OID, true, "tenant_roles.tenant_id"},
	[TB_DEFAULTS] = {"defaults", INT8OID, false, "tenants.is_default"},
	[TB_DEFAULT_ID] = {"default_id", INT4OID, true, "tenants.tenant_id"},
};
static ItmPlan tenant_bound_plan = {
	"SELECT (SELECT r.tenant_id::pg_catalog.int4 FROM invitetomedia.tenant_roles r"
	"         WHERE r.role_name OPERATOR(pg_catalog.=) $1) AS mapped,"
	"       (SELECT pg_catalog.count(*) FROM invitetomedia.tenants t"
	"         WHERE t.is_default)::pg_catalog.int8 AS defaults,"
	"       (SELECT pg_catalog.min(t.tenant_id)::pg_catalog.int4 FROM invitetomedia.tenants t"
	"         WHERE t.is_default) AS default_id",
	1, {NAMEOID}, TB_NCOLS, tenant_bound_cols, NULL
};

static void
DropSiteCache(void)
{
	if (site_cache != NULL)
	{
		hash_destroy(site_cache);
		site_cache = NULL;
	}
}

static void
TenantRelcacheCallback(Datum arg, Oid relid)
{
	(void) arg;
	if (relid == InvalidOid || relid == tenant_cache.tenant_roles_rel ||
		relid == tenant_cache.tenants_rel)
		tenant_cache.valid = false;
	if (relid == InvalidOid || relid == sites_rel || relid == tenant_cache.tenants_rel)
		DropSiteCache();
}

static void
TenantRoleCallback(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	tenant_cache.valid = false;
}

/* _PG_init */
void
ItmTenantInit(void)
{
	CacheRegisterRelcacheCallback(TenantRelcacheCallback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, TenantRoleCallback, (Datum) 0);
}

/*
 * The tenant the caller acts for; false if none.  Reads the tables (with
 * SPI, connected here) only when the cache does not hold the answer.
 */
bool
ItmBoundTenant(int32 *tenant_id)
{
	Oid			role = GetOuterUserId();

	/*
	 * The answer is cached, but not the right to read it: a cached answer
	 * is used only where the look-up would be allowed to run (the user the
	 * code runs as, the function's owner, may read both tables), so that a
	 * call never passes or fails by what this backend happened to cache.
	 */
	if (tenant_cache.valid &&
		(pg_class_aclcheck(tenant_cache.tenant_roles_rel, GetUserId(), ACL_SELECT) != ACLCHECK_OK ||
		 pg_class_aclcheck(tenant_cache.tenants_rel, GetUserId(), ACL_SELECT) != ACLCHECK_OK))
		tenant_cache.valid = false;
	if (!tenant_cache.valid || tenant_cache.role != role)
	{
		Oid			nsp = get_namespace_oid("invitetomedia", false);
		char	   *name = GetUserNameFromId(role, false);
		Datum		args[1];
		bool		isnull;
		Datum		mapped;
		int64		defaults;

		/* the tables whose invalidations drop the answer, before it is read */
		tenant_cache.valid = false;
		tenant_cache.tenant_roles_rel = get_relname_relid("tenant_roles", nsp);
		tenant_cache.tenants_rel = get_relname_relid("tenants", nsp);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		args[0] = DirectFunctionCall1(namein, CStringGetDatum(name));
		ItmRunPlan(&tenant_bound_plan, args, NULL, true, SPI_OK_SELECT);
		if (SPI_processed != 1)
			elog(ERROR, "invitetomedia: the tenant look-up returned %llu rows",
				 (unsigned long long) SPI_processed);
		mapped = ItmColDatum(&tenant_bound_plan, TB_MAPPED, &isnull);
		defaults = ItmColInt8(&tenant_bound_plan, TB_DEFAULTS);
		if (!isnull)
		{
			tenant_cache.bound = true;
			tenant_cache.tenant_id = DatumGetInt32(mapped);
		}
		else if (defaults == 1)
		{
			tenant_cache.bound = true;
			tenant_cache.tenant_id = ItmColInt4(&tenant_bound_plan, TB_DEFAULT_ID);
		}
		else if (defaults == 0)
			tenant_cache.bound = false;
		else
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("invitetomedia.tenants has %lld default tenants", (long long) defaults),
					 errdetail("A role that tenant_roles does not name acts for the one default tenant."),
					 errhint("Set is_default = false on all but one, and restore the unique index tenants_one_default.")));
		SPI_finish();
		tenant_cache.role = role;
		tenant_cache.valid = true;
	}
	*tenant_id = tenant_cache.tenant_id;
	return tenant_cache.bound;
}

/* invitetomedia.tenant(): the tenant the caller acts for, or NULL */
PG_FUNCTION_INFO_V1(tenant_bound);
Datum
tenant_bound(PG_FUNCTION_ARGS)
{
	int32		tenant_id;

	if (!ItmBoundTenant(&tenant_id))
		PG_RETURN_NULL();
	PG_RETURN_INT32(tenant_id);
}

/*
 * Statement trigger on tenant_roles and tenants: every backend drops its
 * cached binding when the change commits (this one at its next command).
 */
PG_FUNCTION_INFO_V1(tenant_cache_invalidate);
Datum
tenant_cache_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tenant_cache_invalidate must be fired as a statement trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/*---- the site of a call -----------------------------------------------------*/

enum
{
	RS_SITE_ID,
	RS_TENANT_ID,
	RS_NCOLS
};
static const ItmCol resolve_site_cols[RS_NCOLS] = {
	[RS_SITE_ID] = {"site_id", TEXTOID, false, "sites.site_id"},
	[RS_TENANT_ID] = {"tenant_id", INT4OID, false, "sites.tenant_id"},
};
static ItmPlan resolve_site_plan = {
	"SELECT s.site_id::pg_catalog.text AS site_id, s.tenant_id::pg_catalog.int4 AS tenant_id"
	"  FROM invitetomedia.sites s"
	" WHERE s.site_id OPERATOR(pg_catalog.=) COALESCE($1,"
	"         (SELECT t.default_site_id FROM invitetomedia.tenants t"
	"           WHERE t.tenant_id OPERATOR(pg_catalog.=) $2))"
	"   AND s.tenant_id OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, INT4OID}, RS_NCOLS, resolve_site_cols, NULL
};

/*
 * The site a call names (NULL: its tenant's default site, as every 1.x
 * call on a 2.0 database), which must be one of the caller's tenant's.  A
 * site of another tenant answers as one that does not exist.  SPI must be
 * connected.
 */
void
ItmResolveSite(const char *site_id, ItmSite *site)
{
	int32		tenant_id;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	SiteKey		key;
	SiteEntry  *entry = NULL;
	bool		cacheable = site_id == NULL || strlen(site_id) < SITE_KEY_LEN;

	if (!ItmBoundTenant(&tenant_id))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" acts for no tenant",
						GetUserNameFromId(GetOuterUserId(), false)),
				 errhint("An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.")));
	/* the cache, where the look-up may run (its privileges: as for the tenant) */
	if (cacheable && site_cache != NULL && OidIsValid(sites_rel) &&
		pg_class_aclcheck(sites_rel, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		pg_class_aclcheck(tenant_cache.tenants_rel, GetUserId(), ACL_SELECT) == ACLCHECK_OK)
	{
		memset(&key, 0, sizeof(key));
		key.tenant_id = tenant_id;
		if (site_id)
			strlcpy(key.asked, site_id, SITE_KEY_LEN);
		entry = hash_search(site_cache, &key, HASH_FIND, NULL);
		if (entry != NULL)
		{
			site->tenant_id = tenant_id;
			site->site_id = pstrdup(entry->site_id);
			return;
		}
	}

	args[0] = site_id ? CStringGetTextDatum(site_id) : (Datum) 0;
	if (site_id == NULL)
		nulls[0] = 'n';
	args[1] = Int32GetDatum(tenant_id);
	/* a generic plan: the custom one was planned at every call (bench) */
	ItmKeepGenericPlan(&resolve_site_plan);
	ItmRunPlan(&resolve_site_plan, args, nulls, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (site_id != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("site \"%s\" does not exist", ItmClip(site_id, 100))));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant %d has no default site", tenant_id),
				 errhint("Name the site with the _at functions, or set the tenant's default_site_id.")));
	}
	if (SPI_processed != 1)
		elog(ERROR, "invitetomedia: the site look-up returned %llu rows",
			 (unsigned long long) SPI_processed);
	site->site_id = ItmColText(&resolve_site_plan, RS_SITE_ID);
	site->tenant_id = ItmColInt4(&resolve_site_plan, RS_TENANT_ID);
	if (site->tenant_id != tenant_id)
		elog(ERROR, "invitetomedia: the site look-up crossed tenants");

	/* remembered for the next call (the tables' invalidations drop it) */
	if (cacheable && strlen(site->site_id) < SITE_KEY_LEN)
	{
		if (site_cache == NULL)
		{
			HASHCTL		ctl;

			sites_rel = get_relname_relid("sites", get_namespace_oid("invitetomedia", false));
			memset(&ctl, 0, sizeof(ctl));
			ctl.keysize = sizeof(SiteKey);
			ctl.entrysize = sizeof(SiteEntry);
			ctl.hcxt = CacheMemoryContext;
			site_cache = hash_create("invitetomedia sites", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		/* a backend that asks for very many names keeps the first ones */
		if (hash_get_num_entries(site_cache) < 10000)
		{
			memset(&key, 0, sizeof(key));
			key.tenant_id = tenant_id;
			if (site_id)
				strlcpy(key.asked, site_id, SITE_KEY_LEN);
			entry = hash_search(site_cache, &key, HASH_ENTER, NULL);
			strlcpy(entry->site_id, site->site_id, SITE_KEY_LEN);
		}
	}
}

/*
 * The _at functions take the site first and then the 1.1.1 function's
 * arguments: the site is read here, and the call goes on with an fcinfo
 * holding the others, so that one implementation reads both forms.
 */
FunctionCallInfo
ItmShiftSiteArg(FunctionCallInfo fcinfo, char **site_id)
{
	int			n = PG_NARGS();
	FunctionCallInfo shifted;
	int			i;

	if (n < 1)
		elog(ERROR, "invitetomedia: an _at function without its site argument");
	ItmRequireArg(fcinfo, 0, "site_id");
	*site_id = ItmIdArg(fcinfo, 0, "site_id");
	shifted = palloc0(SizeForFunctionCallInfo(n - 1));
	shifted->flinfo = fcinfo->flinfo;
	shifted->context = fcinfo->context;
	shifted->resultinfo = fcinfo->resultinfo;
	shifted->fncollation = fcinfo->fncollation;
	shifted->nargs = n - 1;
	for (i = 1; i < n; i++)
		shifted->args[i - 1] = fcinfo->args[i];
	return shifted;
}
