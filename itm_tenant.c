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
#include "utils/builtins.h"
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
TenantRelcacheCallback(Datum arg, Oid relid)
{
	(void) arg;
	if (relid == InvalidOid || relid == tenant_cache.tenant_roles_rel ||
		relid == tenant_cache.tenants_rel)
		tenant_cache.valid = false;
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
