/* invitetomedia--1.1--1.1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invitetomedia UPDATE TO '1.1.1'" to load this file. \quit

/*
 * Version 1.1.1: what the second security review of 1.1 found (issue 18).
 *
 *  - A guest link is not a login.  guest_link_join no longer reads,
 *    creates or returns a user: its result keeps user_id (always NULL now,
 *    so that an application that read it fails safe) and gains join_id, the
 *    id of the join's record, which is the guest's identity.  Its domain
 *    rule is guest_allowed(email), which does not ask whether the address
 *    has an account (the answer no longer tells).
 *  - The anonymous users that 1.1's guest joins created are kept: their
 *    records name them.  A host application whose user signs up later with
 *    the same address takes the address over: the README's directory-sync
 *    recipe removes the anonymous user first (t/070 and sql/guest_identity
 *    show it).
 *  - invite_resend needs may_invite() now, as invite_create does, and a
 *    resend that mails the link counts towards settings.invites_per_hour:
 *    every resend is recorded in the new table resends.
 *  - invite_create and guest_link_create count those resends too.
 *
 * The conventions of the earlier scripts hold: every reference
 * schema-qualified, operators included; functions that touch data SECURITY
 * DEFINER with a fixed search_path and EXECUTE revoked from PUBLIC; no
 * table readable by PUBLIC.  A fresh 1.1.1 runs the 1.0 script and every
 * update script, so an updated database and a fresh one hold the same
 * objects by construction.
 */

------------------------------------------------------------------------------
-- resends: who sent a link again, and whether it was mailed
------------------------------------------------------------------------------

CREATE SEQUENCE invitetomedia.resends_resend_id_seq;
CREATE TABLE invitetomedia.resends (
    resend_id bigint PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.resends_resend_id_seq'::pg_catalog.regclass),
    invite_id bigint NOT NULL,
    actor_id text NOT NULL,
    resent_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    emailed boolean NOT NULL
);
ALTER SEQUENCE invitetomedia.resends_resend_id_seq
    OWNED BY invitetomedia.resends.resend_id;
-- the rate limit's count: one actor's resends of the last hour
CREATE INDEX resends_actor_idx ON invitetomedia.resends (actor_id, resent_at);
CREATE INDEX resends_invite_id_idx ON invitetomedia.resends (invite_id);
COMMENT ON TABLE invitetomedia.resends IS
'every invite_resend (1.1.1): who sent which invite again, when, and whether it was mailed; mailed ones count towards settings.invites_per_hour';

-- Deleted invites take their resends along, too.
CREATE OR REPLACE FUNCTION invitetomedia.invites_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions r
     USING gone g WHERE r.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.outbox o
     USING gone g WHERE o.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.retired_tokens t
     USING gone g WHERE t.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.resends s
     USING gone g WHERE s.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.invites_cleanup() IS
'trigger: deletes the redemptions, outbox messages, retired tokens and resends of deleted invites';

CREATE OR REPLACE FUNCTION invitetomedia.invites_truncate_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions;
    DELETE FROM invitetomedia.outbox;
    DELETE FROM invitetomedia.retired_tokens;
    DELETE FROM invitetomedia.resends;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.invites_truncate_cleanup() IS
'trigger: after TRUNCATE of invitetomedia.invites, deletes every redemption record, outbox message, retired token and resend';

------------------------------------------------------------------------------
-- the guest rule
------------------------------------------------------------------------------

-- A guest is never a user, so every guest is judged as a new user is: by
-- the domain of the address typed, whoever has it.
CREATE FUNCTION invitetomedia.guest_allowed(email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT 1
          FROM invitetomedia.settings s,
               pg_catalog.unnest(s.restrict_new_user_domains) AS r(domain),
               pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(
                   guest_allowed.email, '@([^@]*)$')) COLLATE "C") AS e(domain)
         WHERE e.domain OPERATOR(pg_catalog.=) r.domain
            OR pg_catalog."right"(e.domain, pg_catalog.length(r.domain) OPERATOR(pg_catalog.+) 1)
               OPERATOR(pg_catalog.=) ('.' OPERATOR(pg_catalog.||) r.domain));
END
$$;
COMMENT ON FUNCTION invitetomedia.guest_allowed(text) IS
'the guest rule: false when the email''s domain is, or is below, a restricted domain, whether or not a user has the address (guest_link_join never asks)';

-- The owner's view of the joins gains the join's id: the identity the lobby
-- hands to the platform for a guest, so that a platform can find its join.
CREATE OR REPLACE VIEW invitetomedia.guest_joins AS
SELECT j.guest_link_id, j.joined_at, j.status, j.email, j.first_name, j.last_name, j.device_id,
       j.join_id
  FROM invitetomedia.guest_link_joins j;
COMMENT ON VIEW invitetomedia.guest_joins IS
'every join and refused attempt on a guest link, with the email and names the guest gave (claimed, not proven) and the join''s id, the guest''s identity';

------------------------------------------------------------------------------
-- the API
------------------------------------------------------------------------------

-- The result of guest_link_join changes: renamed first, so that the grants
-- a DBA gave on the old form can be carried over (below), then dropped.
ALTER FUNCTION invitetomedia.guest_link_join(text, text, text, text, text)
    RENAME TO guest_link_join_1_1;

CREATE FUNCTION invitetomedia.guest_link_join(
    token text, email text, first_name text, last_name text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, guest_link_id bigint, media_id text, role text, user_id text,
              clicks_left integer, expires_at timestamptz, join_id bigint)
AS 'MODULE_PATHNAME', 'guest_link_join_1_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_join(text, text, text, text, text) IS
'joins a media entry as a guest viewer through a guest link; status ok, rejoin, or why not (not_found, disabled, revoked, expired, domain_restricted, exhausted); join_id is the guest''s identity, user_id is always NULL (a guest is not a user)';

-- Same arguments and results: the new entry points of the library.
CREATE OR REPLACE FUNCTION invitetomedia.invite_resend(invite_id bigint, actor_id text,
                                                       send_email boolean DEFAULT true)
RETURNS TABLE(token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_resend_1_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.invite_create(
    media_id text, inviter_id text, email text, first_name text, last_name text,
    role text DEFAULT 'viewer', send_email boolean DEFAULT false,
    not_before timestamptz DEFAULT NULL)
RETURNS TABLE(invite_id bigint, token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_create_1_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.guest_link_create(
    media_id text, actor_id text, name text,
    click_limit integer DEFAULT NULL, valid_days integer DEFAULT NULL)
RETURNS TABLE(guest_link_id bigint, token text, url text, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'guest_link_create_1_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

------------------------------------------------------------------------------
-- privileges: exactly the documented ones
------------------------------------------------------------------------------

REVOKE ALL ON TABLE invitetomedia.resends FROM PUBLIC;
REVOKE ALL ON SEQUENCE invitetomedia.resends_resend_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION invitetomedia.guest_link_join(text, text, text, text, text),
                       invitetomedia.guest_allowed(text)
    FROM PUBLIC;

/*
 * (Each grant revoked or carried over is named with a WARNING: PostgreSQL
 * runs an extension script with client_min_messages raised to WARNING, so
 * the NOTICEs of the 1.0.1 and 1.1 scripts never reached anyone.)
 *
 * Default privileges (ALTER DEFAULT PRIVILEGES ... GRANT) of the installing
 * role land on every object an extension script creates.  Whatever such a
 * grant gave, on any member of the extension, is revoked here; it is found
 * in pg_init_privs, which holds the privileges as the scripts left them.
 * Grants a DBA made after the install are not there, and are kept.  The
 * documented grants (EXECUTE on the two pure helpers to PUBLIC) stay.
 *
 * A GRANT or REVOKE run by an extension script records the object's whole
 * ACL as the extension's own, the DBA's grants included, and pg_dump leaves
 * those out: so each object's recorded privileges are set back to what the
 * scripts gave, less what is revoked here.  Future update scripts run this
 * same block over their new objects (as 1.1 and 1.1.1 do: the block is
 * the same as 1.0.1's, run over every member again).
 */
DO $$
DECLARE
    obj record;
    r record;
BEGIN
    FOR obj IN
        SELECT i.classoid, i.objoid, i.initprivs,
               CASE o.type WHEN 'function' THEN 'FUNCTION'
                           WHEN 'sequence' THEN 'SEQUENCE'
                           ELSE 'TABLE' END AS kind,
               o.identity,
               d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY[
                   'invitetomedia.role_rank(text)'::pg_catalog.regprocedure,
                   'invitetomedia.normalize_domain(text)'::pg_catalog.regprocedure]::pg_catalog.oid[])
                 AS public_may_execute
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_init_privs i
            ON i.classoid OPERATOR(pg_catalog.=) d.classid
           AND i.objoid OPERATOR(pg_catalog.=) d.objid
           AND i.objsubid OPERATOR(pg_catalog.=) 0
          CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=)
               (SELECT e.oid FROM pg_catalog.pg_extension e
                 WHERE e.extname OPERATOR(pg_catalog.=) 'invitetomedia')
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
           AND o.type OPERATOR(pg_catalog.=) ANY
               (ARRAY['table', 'view', 'sequence', 'function'])
         ORDER BY o.identity
    LOOP
        -- an ACL item is the grants of one grantor to one grantee
        FOR r IN
            SELECT a.privilege_type,
                   CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                        ELSE pg_catalog.quote_ident(a.grantee::pg_catalog.regrole::pg_catalog.text)
                   END AS grantee
              FROM pg_catalog.aclexplode(obj.initprivs) a
             WHERE a.grantee OPERATOR(pg_catalog.<>) a.grantor
               AND NOT (obj.public_may_execute AND a.grantee OPERATOR(pg_catalog.=) 0
                        AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE')
             ORDER BY 2, 1
        LOOP
            EXECUTE pg_catalog.format('REVOKE %s ON %s %s FROM %s CASCADE',
                                      r.privilege_type, obj.kind, obj.identity, r.grantee);
            RAISE WARNING 'revoked % on % % from % (a default privilege of the installing role)',
                         r.privilege_type, pg_catalog.lower(obj.kind), obj.identity, r.grantee;
        END LOOP;
        IF FOUND THEN
            UPDATE pg_catalog.pg_init_privs i
               SET initprivs = ARRAY(
                       SELECT x FROM pg_catalog.unnest(obj.initprivs) AS x
                        WHERE (SELECT a.grantee OPERATOR(pg_catalog.=) a.grantor
                                      OR (obj.public_may_execute AND a.grantee OPERATOR(pg_catalog.=) 0)
                                 FROM pg_catalog.aclexplode(ARRAY[x]) a LIMIT 1))
             WHERE i.classoid OPERATOR(pg_catalog.=) obj.classoid
               AND i.objoid OPERATOR(pg_catalog.=) obj.objoid
               AND i.objsubid OPERATOR(pg_catalog.=) 0;
        END IF;
    END LOOP;
END
$$;

-- (after the revocations above, so that the grants carried over stay)
DO $$
DECLARE
    fn record;
    r record;
    saved pg_catalog.aclitem[];
BEGIN
    /*
     * An application role keeps working across the update: what a DBA
     * granted on the old guest_link_join (grants that are not the
     * extension's own, i.e. not in pg_init_privs) is granted on its 1.1.1
     * form too.  A grant made by an extension script counts as
     * the extension's own, which pg_dump leaves out (a restore would lose
     * it): each new function's recorded initial privileges are put back as
     * they were before these grants.
     */
    FOR fn IN
        SELECT pairs.old_fn::pg_catalog.regprocedure AS old_oid,
               pairs.new_fn::pg_catalog.regprocedure AS new_oid
          FROM (VALUES ('invitetomedia.guest_link_join_1_1(text, text, text, text, text)',
                        'invitetomedia.guest_link_join(text, text, text, text, text)')) AS pairs(old_fn, new_fn)
    LOOP
        SELECT i.initprivs INTO saved
          FROM pg_catalog.pg_init_privs i
         WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND i.objoid OPERATOR(pg_catalog.=) fn.new_oid
           AND i.objsubid OPERATOR(pg_catalog.=) 0;
        FOR r IN
            SELECT a.grantee, a.privilege_type, a.is_grantable
              FROM pg_catalog.pg_proc p
              CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid OPERATOR(pg_catalog.=) fn.old_oid
               AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
               AND NOT EXISTS (
                    SELECT 1
                      FROM pg_catalog.pg_init_privs i
                      CROSS JOIN LATERAL pg_catalog.aclexplode(i.initprivs) ia
                     WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                       AND i.objoid OPERATOR(pg_catalog.=) p.oid
                       AND i.objsubid OPERATOR(pg_catalog.=) 0
                       AND ia.grantee OPERATOR(pg_catalog.=) a.grantee
                       AND ia.privilege_type OPERATOR(pg_catalog.=) a.privilege_type)
        LOOP
            EXECUTE pg_catalog.format('GRANT %s ON FUNCTION %s TO %s%s',
                r.privilege_type, fn.new_oid,
                CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(r.grantee::pg_catalog.regrole::pg_catalog.text) END,
                CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            -- named schema-qualified whatever the script's search_path
            RAISE WARNING 'granted % on function % to % as on its 1.1 form',
                r.privilege_type,
                (SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname,
                            pg_catalog.replace(pg_catalog.oidvectortypes(p.proargtypes), ', ', ','))
                   FROM pg_catalog.pg_proc p
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                  WHERE p.oid OPERATOR(pg_catalog.=) fn.new_oid),
                CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE r.grantee::pg_catalog.regrole::pg_catalog.text END;
        END LOOP;
        IF saved IS NULL THEN
            DELETE FROM pg_catalog.pg_init_privs i
             WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND i.objoid OPERATOR(pg_catalog.=) fn.new_oid
               AND i.objsubid OPERATOR(pg_catalog.=) 0;
        ELSE
            UPDATE pg_catalog.pg_init_privs i
               SET initprivs = saved
             WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND i.objoid OPERATOR(pg_catalog.=) fn.new_oid
               AND i.objsubid OPERATOR(pg_catalog.=) 0;
        END IF;
    END LOOP;
END
$$;

DROP FUNCTION invitetomedia.guest_link_join_1_1(text, text, text, text, text);

------------------------------------------------------------------------------
-- pg_dump: resends are the database's data
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('invitetomedia.resends', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.resends_resend_id_seq', '');
