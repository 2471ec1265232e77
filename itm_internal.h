/*-------------------------------------------------------------------------
 *
 * itm_internal.h
 *	  What the files of the SQL-callable API share: the saved plans and
 *	  their result columns, the readers of arguments and results, the
 *	  settings row's checks, tokens, and the mail queue.
 *
 * The module is split by concern (issue 22's layout):
 *
 *	  invitetomedia.c	the entry point: magic block, _PG_init, design essay
 *	  itm_plan.c		saved plans, their results, arguments, tokens
 *	  itm_settings.c	the settings row, the role rule, the write guard,
 *						normalize_domain
 *	  itm_invite.c		invites: create, consume, check, revoke, resend, purge
 *	  itm_guest.c		guest links: create, join, revoke
 *	  itm_mail.c		rendering and queueing mail (the outbox)
 *	  itm_tenant.c		2.0: the tenant a caller acts for
 *	  itm_direct.c		the direct path of consume, join and create
 *	  itm_relay.c		the event relay and the events' channels and payloads
 *	  src/itm_text.c	backend-free text code (tokens, emails, templates)
 *
 * Every symbol shared between files carries the Itm prefix: the backend
 * exports its own symbols to loaded libraries, and an unprefixed name
 * (a "Render" or a "Col") could bind to one of them.
 *
 * IDENTIFICATION
 *	  itm_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITM_INTERNAL_H
#define ITM_INTERNAL_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/snapshot.h"

#include "src/itm_text.h"

/* The schema an SQL function was declared by: see "Versions" in invitetomedia.c. */
typedef enum ItmApi
{
	ITM_API_1_0 = 0,
	ITM_API_1_0_1,
	ITM_API_1_1,
	ITM_API_2_0,				/* tenants and sites (itm_tenant.c) */
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
	Oid			argtypes[16];
	int			ncols;			/* result columns (0: none are read) */
	const ItmCol *cols;
	SPIPlanPtr	plan;
} ItmPlan;

/* The site a 2.0 call works on, and its tenant (the caller's). */
typedef struct ItmSite
{
	int32		tenant_id;
	char	   *site_id;
} ItmSite;

/*
 * How a user is found by an email: ASCII case-insensitively in 1.0.1 and
 * later, whose index is on lower(email COLLATE "C"); 1.0's index is on
 * lower(email), which its look-up keeps using.
 */
#define USER_KEY_1_0	"pg_catalog.lower(us.email)"
#define USER_KEY_1_0_1	"pg_catalog.lower(us.email COLLATE \"C\")"

/*
 * Advisory lock classes (the two-key form's first key), in one place so
 * that they stay distinct (the relay's start lock is in itm_relay.c).
 */
#define GUEST_DEVICE_LOCK_CLASS 0x49544D47	/* "ITMG": a guest's device */
#define PURGE_LOCK_CLASS 0x49544D50 /* "ITMP": invite_purge */

/*---- itm_plan.c: saved plans and their results ---------------------------*/

extern void ItmKeepGenericPlan(ItmPlan *p);
extern void ItmRunPlan(ItmPlan *p, Datum *values, const char *nulls, bool read_only,
					   int expected);
extern void ItmRunPlanAfterLock(ItmPlan *p, Datum *values, const char *nulls, int expected);
extern Datum ItmColDatum(const ItmPlan *p, int col, bool *isnull);
extern bool ItmColBool(const ItmPlan *p, int col);
extern int32 ItmColInt4(const ItmPlan *p, int col);
extern int64 ItmColInt8(const ItmPlan *p, int col);
extern char *ItmColText(const ItmPlan *p, int col);
extern void ItmColToResult(const ItmPlan *p, int col, Datum *values, bool *nulls,
						   int rescol);

/*---- itm_plan.c: arguments, results, tokens -------------------------------*/

extern void ItmMaterializeResult(FunctionCallInfo fcinfo);
extern void ItmPutResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls);
extern void ItmRequireArg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char *ItmTextArg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char *ItmClip(const char *s, int maxbytes);
extern char *ItmIdArg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char *ItmNameArg(FunctionCallInfo fcinfo, int argno, const char *argname,
						size_t maxchars, const char *empty_hint);
extern char *ItmEmailArg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern char *ItmEmailKey(const char *s);
extern bytea *ItmTokenHash(const char *token, size_t len);
extern void ItmNewToken(const char *prefix, char token[ITM_TOKEN_LEN + 1]);
extern int64 ItmRandomId(void);

/*---- itm_settings.c -------------------------------------------------------*/

extern void ItmRequireSettingsRow(uint64 nrows);
extern void ItmRequireEnabled(bool enabled);
extern bool ItmRoleAllowedForMedia(const char *role, const char *media_type);

/*---- itm_mail.c ------------------------------------------------------------*/

extern char *ItmRender(const char *tmpl, const char *const values[ITM_PH_COUNT]);
extern char *ItmRenderSubject(const char *tmpl, const char *const values[ITM_PH_COUNT]);
extern int64 ItmQueueMail(const ItmSite *site, int64 invite_id,
						  const char *to_email, const char *to_name,
						  const char *subject, const char *body);

/*---- itm_tenant.c (2.0) -------------------------------------------------*/

extern void ItmTenantInit(void);
extern bool ItmBoundTenant(int32 *tenant_id);


extern void ItmResolveSite(const char *site_id, ItmSite *site);
extern FunctionCallInfo ItmShiftSiteArg(FunctionCallInfo fcinfo, char **site_id);

/*---- itm_invite.c: what guest links share with invites ---------------------*/

extern char *ItmEnsureUser(ItmApi api, int32 tenant_id, const char *email_key, Datum email,
						   Datum first_name, bool first_name_null,
						   Datum last_name, bool last_name_null);
extern void ItmCheckRateLimit(const char *actor_id, int32 per_hour, bool with_resends,
							  const ItmSite *site);

/* The row a revoke locks and reads: the same columns for either kind. */
enum
{
	RVK_INVITED_BY,
	RVK_MEDIA_ID,
	RVK_REVOKED,
	RVK_ACTOR_FOUND,
	RVK_ACTOR_ROLE,
	RVK_NCOLS
};
extern const ItmCol itm_revoke_lookup_cols[RVK_NCOLS];

/* What differs between revoking an invite and revoking a guest link. */
typedef struct ItmRevokeKind
{
	const char *function;		/* for PreventCommandIfReadOnly */
	const char *id_arg;
	const char *noun;			/* "invite", "guest link" */
	const char *who_detail;
	ItmPlan    *lookup;			/* RVK_* columns, row locked */
	ItmPlan    *revoke;
	int			revoke_rc;
	ItmPlan    *lookup_2_0;		/* 2.0: the same, of a tenant ($3) and site ($4) */
	ItmPlan    *revoke_2_0;
} ItmRevokeKind;

extern Datum ItmRevokeLink(FunctionCallInfo fcinfo, const ItmRevokeKind *k, ItmApi api,
						   const char *site_id);

#endif							/* ITM_INTERNAL_H */
