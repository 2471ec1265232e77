-- The direct path (itm_direct.c) against the SQL statement, where a
-- one-line bug of the path would go unseen by the other files: each case
-- names the mutant of test/mutation/mutants.txt that it kills.  As in
-- direct_shapes, each call runs with invitetomedia.direct_use on and then
-- off, each way in a subtransaction that is rolled back, so that both
-- start from the same rows; direct_on and direct_off must be the same
-- (same: t).  The concurrent cases are in specs/direct_mutants_rr.spec.
-- On a 2.0 database (this suite's) the path declines every call without a
-- word (docs/design-2.0.md, section 6: it has no 2.0 shapes yet), so both
-- ways run the statements and no DEBUG1 line shows; the 1.1.1 path is
-- tested by test/compat-1.1.1 (the same file, frozen).
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 3;
SET invitetomedia.direct_use = on;

\i sql/include/both_ways.psql

SELECT c.invite_id AS inv, c.token AS tok
  FROM invitetomedia.invite_create('live', 'owner', 'mu@outside.example', 'Mu', 'Tant') c \gset
SELECT c.guest_link_id AS gl, c.token AS gtok
  FROM invitetomedia.guest_link_create('live', 'owner', 'Mutants') c \gset
\set consume 'SELECT status || coalesce('' '' || uses_left, '''') FROM invitetomedia.invite_consume(' :'tok' ', ''mu@outside.example'')'
-- the path answers as the statement on the tables as the extension made them
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(format($$SELECT status FROM invitetomedia.guest_link_join(%L, 'g@outside.example', 'G', 'J')$$, :'gtok'));

------------------------------------------------------------------------------
-- rls_target: row-level security on the table the path inserts into.  An
-- owner that is not a superuser (superusers bypass every policy), and a
-- DBA's policy on redemptions that refuses the records of one device: the
-- statement's INSERT applies it (42501), so the path must not write the
-- record past it.  (Checking invites' security instead, where no policy
-- applies to its owner, let the record through.)
------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_itm_mutants_owner;
RESET client_min_messages;
CREATE ROLE regress_itm_mutants_owner;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_mutants_owner;
-- (2.0: and the tables that bind the caller to its tenant and site; records
-- have no sequence, their ids are drawn)
GRANT SELECT ON invitetomedia.settings, invitetomedia.retired_tokens, invitetomedia.sites,
                invitetomedia.tenants, invitetomedia.tenant_roles TO regress_itm_mutants_owner;
GRANT SELECT, INSERT, UPDATE ON invitetomedia.redemptions, invitetomedia.users TO regress_itm_mutants_owner;
GRANT EXECUTE ON FUNCTION invitetomedia.may_invite(text, text) TO regress_itm_mutants_owner;
ALTER TABLE invitetomedia.invites OWNER TO regress_itm_mutants_owner;
ALTER FUNCTION invitetomedia.invite_consume(text, text, text) OWNER TO regress_itm_mutants_owner;
-- (2.0: every table has row-level security enabled already, and a
-- permissive policy of the extension's that lets the tenant's rows through,
-- redemptions_granted: a DBA's policy refuses only as RESTRICTIVE, which
-- the statement ANDs with the extension's; it needs no SELECT or UPDATE
-- policy of its own)
CREATE POLICY mutants_no_kiosk ON invitetomedia.redemptions AS RESTRICTIVE FOR INSERT
    TO regress_itm_mutants_owner
    WITH CHECK (device_id IS DISTINCT FROM 'kiosk');
SELECT * FROM pg_temp.both(format($$SELECT status FROM invitetomedia.invite_consume(%L, 'mu@outside.example', 'kiosk')$$, :'tok'));
SELECT * FROM pg_temp.both(format($$SELECT status FROM invitetomedia.invite_consume(%L, 'mu@outside.example', 'laptop')$$, :'tok'));

DROP POLICY mutants_no_kiosk ON invitetomedia.redemptions;

------------------------------------------------------------------------------
-- acl_any: every privilege the statement needs, not any one of them (the
-- same owner, no policy now).  Its INSERT ... RETURNING into redemptions
-- needs SELECT as well as INSERT; its UPDATE of invites needs UPDATE, which
-- an owner may revoke from itself.  Both ways: 42501.  (A link for a user
-- who exists and no device: a first use's new user, or a device, would
-- read redemptions in a statement of their own.)
------------------------------------------------------------------------------
SELECT c.token AS etok
  FROM invitetomedia.invite_create('live', 'owner', 'existing.person@university.edu', 'Erin', 'Existing') c \gset
REVOKE SELECT ON invitetomedia.redemptions FROM regress_itm_mutants_owner;
SELECT * FROM pg_temp.both(format($$SELECT status FROM invitetomedia.invite_consume(%L, 'existing.person@university.edu')$$, :'etok'));
GRANT SELECT ON invitetomedia.redemptions TO regress_itm_mutants_owner;
REVOKE UPDATE ON invitetomedia.invites FROM regress_itm_mutants_owner;
SELECT * FROM pg_temp.both(format($$SELECT status FROM invitetomedia.invite_consume(%L, 'mu@outside.example')$$, :'tok'));
GRANT UPDATE ON invitetomedia.invites TO regress_itm_mutants_owner;

ALTER FUNCTION invitetomedia.invite_consume(text, text, text) OWNER TO CURRENT_USER;
ALTER TABLE invitetomedia.invites OWNER TO CURRENT_USER;
REVOKE ALL ON invitetomedia.settings, invitetomedia.retired_tokens, invitetomedia.redemptions,
              invitetomedia.users, invitetomedia.sites, invitetomedia.tenants,
              invitetomedia.tenant_roles FROM regress_itm_mutants_owner;
REVOKE ALL ON FUNCTION invitetomedia.may_invite(text, text) FROM regress_itm_mutants_owner;
REVOKE ALL ON SCHEMA invitetomedia FROM regress_itm_mutants_owner;
DROP ROLE regress_itm_mutants_owner;

------------------------------------------------------------------------------
-- trigger_any_type: a trigger that calls one of the extension's trigger
-- functions is the extension's own only with the extension's timing, level
-- and events.  The write guard made a row trigger by a DBA fails every
-- UPDATE of invites in the statement (the guard is statement-level only);
-- the cleanup of a TRUNCATE fired after UPDATE deletes every record.  The
-- path must take the statement for both, not skip the trigger.
------------------------------------------------------------------------------
CREATE TRIGGER mutants_guard_row BEFORE UPDATE ON invitetomedia.invites
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.invites_write_guard();
SELECT * FROM pg_temp.both(:'consume');
DROP TRIGGER mutants_guard_row ON invitetomedia.invites;
CREATE TRIGGER mutants_cleanup_on_update AFTER UPDATE ON invitetomedia.invites
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.invites_truncate_cleanup();
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)', :'consume',
       'SELECT count(*)::text || '' records'' FROM invitetomedia.redemptions'));
DROP TRIGGER mutants_cleanup_on_update ON invitetomedia.invites;

------------------------------------------------------------------------------
-- no_cci: what the caller's statement wrote before the call, in a function
-- that leaves the command counter where it was (a SQL function: it
-- advances it before each of its statements, not after the last).  The
-- statement's SPI advances it, and so must the path: a guest join after a
-- revoke in the same statement answers revoked (without, the path saw the
-- link unrevoked, then found its row "updated by this very command" and
-- gave up: 40001).
------------------------------------------------------------------------------
CREATE FUNCTION public.mutants_revoke_link(id bigint) RETURNS text
LANGUAGE sql AS $$
    UPDATE invitetomedia.guest_links SET revoked_at = now()
     WHERE guest_link_id = id RETURNING 'revoked by SQL'
$$;
SELECT * FROM pg_temp.both(format($$SELECT public.mutants_revoke_link(%s) || ', then '
          || (SELECT status FROM invitetomedia.guest_link_join(%L, 'g@outside.example', 'G', 'J'))$$, :gl, :'gtok'));
-- and the same for a consume after a SQL function's revoke of the invite
CREATE FUNCTION public.mutants_revoke_invite(id bigint) RETURNS text
LANGUAGE sql AS $$
    UPDATE invitetomedia.invites SET revoked_at = now(), revoked_by = 'owner'
     WHERE invite_id = id RETURNING 'revoked by SQL'
$$;
SELECT * FROM pg_temp.both(format($$SELECT public.mutants_revoke_invite(%s) || ', then '
          || (SELECT status FROM invitetomedia.invite_consume(%L, 'mu@outside.example'))$$, :inv, :'tok'));

------------------------------------------------------------------------------
-- record_unchecked: the use and its record are one statement, both on the
-- path or neither.  A column of redemptions with a domain type (the path
-- does not write those) whose default reads invites: in the one statement
-- it does not see the use (the statement's snapshot); had the use been
-- taken on the path and only the record written by a second statement,
-- the default would have seen it.
------------------------------------------------------------------------------
CREATE FUNCTION public.mutants_uses_now() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT sum(use_count)::integer FROM invitetomedia.invites
$$;
CREATE DOMAIN public.mutants_count AS integer;
ALTER TABLE invitetomedia.redemptions ADD COLUMN mutants_uses public.mutants_count
    DEFAULT public.mutants_uses_now();
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)', :'consume',
       'SELECT CASE WHEN mutants_uses = public.mutants_uses_now() THEN ''saw the use'' ELSE ''saw the link before the use'' END FROM invitetomedia.redemptions ORDER BY at DESC LIMIT 1'));
ALTER TABLE invitetomedia.redemptions DROP COLUMN mutants_uses;
DROP DOMAIN public.mutants_count;

DROP FUNCTION public.both_ways_then(text, text);
DROP FUNCTION public.mutants_revoke_link(bigint);
DROP FUNCTION public.mutants_revoke_invite(bigint);
DROP FUNCTION public.mutants_uses_now();
