/*-------------------------------------------------------------------------
 *
 * itm_direct.h
 *	  The use of an invite link through the table access method (1.1).
 *
 * IDENTIFICATION
 *	  itm_direct.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITM_DIRECT_H
#define ITM_DIRECT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"

/* What ItmDirectTakeUse did. */
typedef enum ItmDirectResult
{
	ITM_DIRECT_TAKEN,			/* took a use; *use is filled */
	ITM_DIRECT_REFUSED,			/* no use to take: diagnose it */
	ITM_DIRECT_UNSUPPORTED		/* nothing written: use the SQL statement */
} ItmDirectResult;

/* The invite a use was taken from, as the consume statement returns it. */
typedef struct ItmDirectUse
{
	int64		invite_id;
	Datum		media_id;
	Datum		role;
	Datum		email;
	Datum		first_name;
	Datum		last_name;
	bool		media_id_null;
	bool		role_null;
	bool		first_name_null;
	bool		last_name_null;
	int32		max_uses;
	int32		use_count;		/* after this use */
	TimestampTz expires_at;
} ItmDirectUse;

/* An invite as invite_check reads it (found: ITM_DIRECT_TAKEN). */
typedef struct ItmDirectInvite
{
	bool		enabled;		/* settings.enabled */
	bool		revoked;
	bool		expired;
	bool		not_yet;
	bool		locked;
	int32		max_uses;
	int32		use_count;
	Datum		media_id;
	Datum		media_title;
	Datum		role;
	Datum		expires_at;
	Datum		opens_at;
	bool		media_id_null;
	bool		media_title_null;
	bool		role_null;
	bool		expires_at_null;
	bool		opens_at_null;
} ItmDirectInvite;

/* A guest link as guest_link_join's diagnosis reads it (no device). */
typedef struct ItmDirectGuestLink
{
	int64		guest_link_id;
	Datum		media_id;
	bool		media_id_null;
	bool		limited;		/* click_limit is not NULL */
	int32		click_limit;
	int32		clicks;
	Datum		expires_at;
	bool		expires_at_null;
	bool		enabled;		/* settings.enabled */
	bool		revoked;
	bool		expired;
	bool		domain_allowed; /* the policy: domain_allowed or guest_allowed(email) */
	char	   *user_id;		/* the user with this email, or NULL */
} ItmDirectGuestLink;

/*
 * 2.0: the tenant and the site a call works on (a link is found by its
 * tenant and token hash, at its own site only).  NULL: a 1.1 database.
 */
typedef struct ItmDirectSite
{
	int32		tenant_id;
	const char *site_id;
} ItmDirectSite;

extern bool itm_direct_use;		/* GUC invitetomedia.direct_use */

extern void ItmDirectInit(void);
extern ItmDirectResult ItmDirectTakeUse(bytea *token_hash, const char *email_key,
										const ItmDirectSite *site, ItmDirectUse *use);
extern bool ItmDirectRecordUse(int64 invite_id, const char *email_key,
							   Datum device_id, bool device_id_null,
							   const ItmDirectSite *site, int64 drawn_id,
							   Datum event_seq, bool event_seq_null,
							   int64 *redemption_id, char **user_id);
extern void ItmDirectUseDone(void);
extern ItmDirectResult ItmDirectReadInvite(bytea *token_hash, const ItmDirectSite *site,
										   ItmDirectInvite *inv);
extern ItmDirectResult ItmDirectGuestDiagnose(bytea *token_hash, const char *email_key,
											  const char *email, const char *policy,
											  bool find_user, ItmDirectGuestLink *out);
extern ItmDirectResult ItmDirectGuestShare(int64 guest_link_id);
extern bool ItmDirectInsertInvite(bytea *token_hash, const char *media_id, const char *role,
								  const char *email, const char *first_name,
								  const char *last_name, const char *invited_by,
								  int32 duration_minutes, int32 max_uses,
								  bool scheduled, TimestampTz not_before,
								  int64 *invite_id, TimestampTz *expires_at);
extern bool ItmDirectGuestRecord(int64 guest_link_id, const char *status, const char *email,
								 const char *first_name, const char *last_name,
								 Datum device_id, bool device_id_null, const char *user_id,
								 int64 *join_id);

#endif							/* ITM_DIRECT_H */
