/*-------------------------------------------------------------------------
 *
 * itm_settings.c
 *	  The settings row and the rules that are not queries: the role a
 *	  media type takes, the write guard of the links, domains.
 *
 * The settings are a table a DBA edits (one row, singleton = true); the
 * functions read it in the statement that reads everything else they
 * need, and call these to refuse a missing row or a disabled module with
 * the same errors everywhere.
 *
 * IDENTIFICATION
 *	  itm_settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "itm_compat.h"
#include "itm_internal.h"

/*---- the settings row ----------------------------------------------------*/


/*
 * A query that reads the settings row returned nrows rows: anything but one
 * means a DBA deleted the row or added rows where constraints do not fire.
 */
void
ItmRequireSettingsRow(uint64 nrows)
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
void
ItmRequireEnabled(bool enabled)
{
	if (!enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invitetomedia is disabled"),
				 errhint("An administrator enables it with UPDATE invitetomedia.settings SET enabled = true.")));
}



bool
ItmRoleAllowedForMedia(const char *role, const char *media_type)
{
	bool		live = strcmp(media_type, "webcast") == 0 ||
		strcmp(media_type, "simulive") == 0 ||
		strcmp(media_type, "diy_live") == 0 ||
		strcmp(media_type, "room") == 0;

	if (strcmp(role, "viewer") == 0)
		return true;
	return live && (strcmp(role, "moderator") == 0 || strcmp(role, "speaker") == 0);
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
				 errmsg("invalid domain \"%s\"", ItmClip(text_to_cstring(t), 100)),
				 errdetail("%s", itm_domain_problem(code)),
				 errhint(code == ITM_DOMAIN_NON_ASCII ?
						 "Write an internationalised domain in its punycode (xn--) form." :
						 "Write a domain such as university.edu, without @ or spaces.")));
	out = pnstrdup(s, len);
	for (i = 0; i < len; i++)
		out[i] = pg_ascii_tolower((unsigned char) out[i]);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, len));
}

