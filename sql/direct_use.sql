-- invite_consume's use through the table access method (1.1, itm_direct.c):
-- the same answers and the same rows as the SQL statement; the SQL statement
-- wherever the tables or the transaction are not what the path was written
-- for (each time saying why at DEBUG1), and the path again once they are;
-- the DBA's CHECK constraints and indexes kept; the write guard unchanged.
-- On a 2.0 database (this suite's) the path runs for invite_consume and
-- invite_check on 2.0's shapes (the site's row in sites, the keys that
-- lead with tenant_id: docs/design-2.0.md, section 6); invite_create and
-- guest links take the statements there without a DEBUG1 line.  Every
-- table of 2.0 has row-level security enabled, so a function owner that
-- does not own the tables sends the call to the statements.  The 1.1.1
-- path is tested on 1.1.1 tables by test/compat-1.1.1 (the same file, frozen).
\i sql/include/fixture.psql
-- explicit, so that this file reads the same when the suite runs with
-- PGOPTIONS='-c invitetomedia.direct_use=off' (scripts/test.sh)
SET invitetomedia.direct_use = on;
SELECT name, setting, boot_val, context FROM pg_settings WHERE name = 'invitetomedia.direct_use';

-- try_state(sql): 'ok' or 'SQLSTATE: message' without the detail (a failing
-- row of invites holds its token hash and timestamps)
CREATE FUNCTION pg_temp.try_state(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

------------------------------------------------------------------------------
-- a. Equivalence: one scenario run twice, with the path on and with it off,
-- on two fresh sets of invites (the emails of set TAG carry '+TAG', written
-- '#' in the scenario); answers and rows compared
------------------------------------------------------------------------------
CREATE TEMP TABLE links (tag text, name text, invite_id bigint, token text,
                         PRIMARY KEY (tag, name));
CREATE TEMP TABLE answers (tag text, step integer, name text, typed text, device text,
                           status text, same_invite boolean, media_id text, role text,
                           user_id text, first_name text, last_name text, uses_left integer,
                           same_expiry boolean, checked text, PRIMARY KEY (tag, step));
-- a link NAME of set TAG for email (its '#' replaced by '+TAG'), made with
-- link_reusability = uses
CREATE FUNCTION pg_temp.link(tag text, name text, email text, media text, uses integer,
                             role text DEFAULT 'viewer', opens timestamptz DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE invitetomedia.settings SET link_reusability = uses;
    INSERT INTO links
    SELECT tag, name, c.invite_id, c.token
      FROM invitetomedia.invite_create(media, 'owner', replace(email, '#', '+' || tag),
                                       initcap(name), 'Tester', role, false, opens) c;
END
$$;
CREATE FUNCTION pg_temp.id(tag text, name text) RETURNS bigint
LANGUAGE sql AS $$ SELECT invite_id FROM links l WHERE l.tag = $1 AND l.name = $2 $$;
-- consumes link NAME of set TAG with the typed email ('#' as above) and
-- keeps the answer, the set's marks taken out again; and invite_check's
-- answer just before (1.1 reads it through the table access method too)
CREATE FUNCTION pg_temp.use(tag text, name text, typed text, device text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    l links;
    c record;
    expires timestamptz;
    checked text;
BEGIN
    SELECT * INTO STRICT l FROM links WHERE links.tag = $1 AND links.name = $2;
    SELECT i.expires_at INTO expires FROM invitetomedia.invites i WHERE i.invite_id = l.invite_id;
    SELECT ROW(k.status, k.media_id, k.media_title, k.role, k.expires_at = expires, k.uses_left,
               k.opens_at IS NOT NULL)::text
      INTO STRICT checked FROM invitetomedia.invite_check(l.token) k;
    SELECT * INTO STRICT c
      FROM invitetomedia.invite_consume(l.token, replace(typed, '#', '+' || tag), device);
    INSERT INTO answers
    VALUES (tag, (SELECT count(*) + 1 FROM answers a WHERE a.tag = $1), name, typed, device,
            c.status, c.invite_id = l.invite_id, c.media_id, c.role,
            replace(c.user_id, '+' || tag, '#'), c.first_name, c.last_name, c.uses_left,
            c.expires_at = expires, checked);
END
$$;
-- n consumes of link NAME in one statement, from devices dev1 .. devN
CREATE FUNCTION pg_temp.use_in_one_statement(tag text, name text, typed text, n integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    l links;
    base integer;
BEGIN
    SELECT * INTO STRICT l FROM links WHERE links.tag = $1 AND links.name = $2;
    SELECT count(*) INTO base FROM answers a WHERE a.tag = $1;
    INSERT INTO answers
    SELECT tag, base + k, name, typed, 'dev' || k, c.status, c.invite_id = l.invite_id,
           c.media_id, c.role, replace(c.user_id, '+' || tag, '#'), c.first_name, c.last_name,
           c.uses_left, NULL, NULL
      FROM generate_series(1, n) k,
           LATERAL invitetomedia.invite_consume(l.token, replace(typed, '#', '+' || tag), 'dev' || k) c;
END
$$;
-- every step in a transaction of its own, as an application calls it
CREATE PROCEDURE pg_temp.scenario(tag text)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE invitetomedia.settings SET enabled = true, lockout_attempts = 2;
    -- single use: the first use by a new email creates the user (typed in
    -- another case, with spaces); the second is exhausted
    PERFORM pg_temp.link(tag, 'single', 'New.Person#@Outside.Example', 'live', 1, 'moderator');
    COMMIT;
    PERFORM pg_temp.use(tag, 'single', '  NEW.person#@outside.EXAMPLE ');
    COMMIT;
    PERFORM pg_temp.use(tag, 'single', 'new.person#@outside.example');
    COMMIT;
    -- an existing user, matched case-insensitively, is not created again
    PERFORM pg_temp.link(tag, 'existing', 'EXISTING.person@university.EDU', 'vid', 1);
    COMMIT;
    PERFORM pg_temp.use(tag, 'existing', 'existing.PERSON@University.edu');
    COMMIT;
    -- expired, and expiring at the very instant of the use
    PERFORM pg_temp.link(tag, 'expired', 'expired#@outside.example', 'doc', 1);
    UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute'
     WHERE invite_id = pg_temp.id(tag, 'expired');
    COMMIT;
    PERFORM pg_temp.use(tag, 'expired', 'expired#@outside.example');
    COMMIT;
    PERFORM pg_temp.link(tag, 'expires_now', 'expires.now#@outside.example', 'doc', 1);
    COMMIT;
    UPDATE invitetomedia.invites SET expires_at = now() WHERE invite_id = pg_temp.id(tag, 'expires_now');
    PERFORM pg_temp.use(tag, 'expires_now', 'expires.now#@outside.example');
    COMMIT;
    -- revoked
    PERFORM pg_temp.link(tag, 'revoked', 'revoked#@outside.example', 'live', 1);
    PERFORM invitetomedia.invite_revoke(pg_temp.id(tag, 'revoked'), 'owner');
    COMMIT;
    PERFORM pg_temp.use(tag, 'revoked', 'revoked#@outside.example');
    COMMIT;
    -- scheduled: not_yet before it opens, ok at the very instant it opens
    PERFORM pg_temp.link(tag, 'not_yet', 'not.yet#@outside.example', 'live', 1, 'viewer',
                         now() + interval '1 hour');
    COMMIT;
    PERFORM pg_temp.use(tag, 'not_yet', 'not.yet#@outside.example');
    COMMIT;
    PERFORM pg_temp.link(tag, 'opens_now', 'opens.now#@outside.example', 'live', 1, 'viewer',
                         now() + interval '1 hour');
    COMMIT;
    UPDATE invitetomedia.invites SET not_before = now() WHERE invite_id = pg_temp.id(tag, 'opens_now');
    PERFORM pg_temp.use(tag, 'opens_now', 'opens.now#@outside.example');
    COMMIT;
    -- lockout_attempts = 2: two wrong emails, then locked even for the right one
    PERFORM pg_temp.link(tag, 'locked', 'locked#@outside.example', 'live', 2);
    COMMIT;
    PERFORM pg_temp.use(tag, 'locked', 'wrong1#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'locked', 'wrong2#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'locked', 'locked#@outside.example');
    COMMIT;
    -- one wrong email (below the threshold), then the right one: ok
    PERFORM pg_temp.link(tag, 'mismatch', 'mismatch#@outside.example', 'live', 1);
    COMMIT;
    PERFORM pg_temp.use(tag, 'mismatch', 'mismatch#@outside.example.org');
    COMMIT;
    PERFORM pg_temp.use(tag, 'mismatch', 'mismatch#@outside.example');
    COMMIT;
    -- three uses, then exhausted
    PERFORM pg_temp.link(tag, 'three', 'three#@outside.example', 'room', 3, 'speaker');
    COMMIT;
    PERFORM pg_temp.use(tag, 'three', 'three#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'three', 'three#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'three', 'three#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'three', 'three#@outside.example');
    COMMIT;
    -- three consumes of a 2-use link in one statement: each sees the one before
    PERFORM pg_temp.link(tag, 'one_statement', 'one.statement#@outside.example', 'live', 2);
    COMMIT;
    PERFORM pg_temp.use_in_one_statement(tag, 'one_statement', 'one.statement#@outside.example', 3);
    COMMIT;
    -- a use undone with its subtransaction gives the use back (its answer
    -- goes with it)
    PERFORM pg_temp.link(tag, 'undone', 'undone#@outside.example', 'live', 1);
    COMMIT;
    BEGIN
        PERFORM pg_temp.use(tag, 'undone', 'undone#@outside.example');
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    COMMIT;
    PERFORM pg_temp.use(tag, 'undone', 'undone#@outside.example');
    COMMIT;
    -- unlimited: uses_left NULL, used_up_at never set
    PERFORM pg_temp.link(tag, 'unlimited', 'unlimited#@outside.example', 'vid', -1);
    COMMIT;
    PERFORM pg_temp.use(tag, 'unlimited', 'unlimited#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'unlimited', 'unlimited#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'unlimited', 'unlimited#@outside.example');
    COMMIT;
    -- devices: a device that used the link rejoins, even once it is used up
    PERFORM pg_temp.link(tag, 'device', 'device#@outside.example', 'live', 2);
    COMMIT;
    PERFORM pg_temp.use(tag, 'device', 'device#@outside.example', 'laptop');
    COMMIT;
    PERFORM pg_temp.use(tag, 'device', 'device#@outside.example', 'laptop');
    COMMIT;
    PERFORM pg_temp.use(tag, 'device', 'device#@outside.example', 'phone');
    COMMIT;
    PERFORM pg_temp.use(tag, 'device', 'device#@outside.example', 'tablet');
    COMMIT;
    PERFORM pg_temp.use(tag, 'device', 'device#@outside.example', 'laptop');
    COMMIT;
    PERFORM pg_temp.use(tag, 'device', 'other#@outside.example', 'laptop');
    COMMIT;
    -- resent: the old token answers revoked, the new one takes the next use
    PERFORM pg_temp.link(tag, 'resent', 'resent#@outside.example', 'live', 2);
    COMMIT;
    PERFORM pg_temp.use(tag, 'resent', 'resent#@outside.example');
    COMMIT;
    INSERT INTO links
    SELECT tag, 'resent (new token)', pg_temp.id(tag, 'resent'), r.token
      FROM invitetomedia.invite_resend(pg_temp.id(tag, 'resent'), 'owner', false) r;
    COMMIT;
    PERFORM pg_temp.use(tag, 'resent', 'resent#@outside.example');
    COMMIT;
    PERFORM pg_temp.use(tag, 'resent (new token)', 'resent#@outside.example');
    COMMIT;
    -- a link that is gone: not_found
    PERFORM pg_temp.link(tag, 'gone', 'gone#@outside.example', 'live', 1);
    DELETE FROM invitetomedia.invites WHERE invite_id = pg_temp.id(tag, 'gone');
    COMMIT;
    PERFORM pg_temp.use(tag, 'gone', 'gone#@outside.example');
    COMMIT;
    -- the module disabled
    PERFORM pg_temp.link(tag, 'disabled', 'disabled#@outside.example', 'live', 1);
    UPDATE invitetomedia.settings SET enabled = false;
    COMMIT;
    PERFORM pg_temp.use(tag, 'disabled', 'disabled#@outside.example');
    UPDATE invitetomedia.settings SET enabled = true;
    COMMIT;
END
$$;
-- the state of set TAG, one line per answer, invite, record and new user,
-- with the set's marks taken out: what the two runs must agree on
CREATE FUNCTION pg_temp.state(tag text) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT 'answer ' || ROW(a.step, a.name, a.typed, a.device, a.status, a.same_invite, a.media_id,
                            a.role, a.user_id, a.first_name, a.last_name, a.uses_left,
                            a.same_expiry, a.checked)::text
      FROM answers a WHERE a.tag = $1
    UNION ALL
    SELECT 'invite ' || ROW(l.name, replace(i.email, '+' || $1, '#'), i.media_id, i.role,
                            i.first_name, i.last_name, i.invited_by, i.max_uses, i.use_count,
                            i.used_up_at IS NOT NULL, i.used_up_at = i.last_used_at,
                            i.last_used_at IS NOT NULL,
                            i.last_used_at = (SELECT max(r.at) FROM invitetomedia.redemptions r
                                               WHERE r.invite_id = i.invite_id AND r.status = 'ok'),
                            i.revoked_at IS NOT NULL, i.revoked_by, i.not_before IS NOT NULL,
                            i.expires_at > now(), i.failed_attempts,
                            i.token_hash = digest(l.token, 'sha256'))::text
      FROM links l JOIN invitetomedia.invites i USING (invite_id)
     WHERE l.tag = $1 AND l.name NOT LIKE '%(new token)'
    UNION ALL
    SELECT 'record ' || ROW(l.name, row_number() OVER (PARTITION BY r.invite_id ORDER BY r.at, r.device_id, r.status, r.user_id),
                            r.status, r.device_id, replace(r.user_id, '+' || $1, '#'),
                            r.at >= i.created_at)::text
      FROM links l JOIN invitetomedia.invites i USING (invite_id)
      JOIN invitetomedia.redemptions r USING (invite_id)
     WHERE l.tag = $1 AND l.name NOT LIKE '%(new token)'
    UNION ALL
    SELECT 'user ' || ROW(replace(u.user_id, '+' || $1, '#'), replace(u.email, '+' || $1, '#'),
                          u.first_name, u.last_name, u.role)::text
      FROM invitetomedia.users u WHERE u.email LIKE '%+' || $1 || '@%'
$$;

-- the path on: no line says it took the SQL statement.  (The functions'
-- catalog caches are filled first: PostgreSQL 18 says at DEBUG1 when one
-- grows, which would be a line here depending on what the session did.)
SELECT count(*) > 0 AS caches_filled FROM pg_catalog.pg_proc p
 WHERE pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
   AND pg_catalog.to_regprocedure(p.oid::regprocedure::text) IS NOT NULL;
SET invitetomedia.direct_use = on;
SET client_min_messages = debug1;
CALL pg_temp.scenario('on');
RESET client_min_messages;
SET invitetomedia.direct_use = off;
CALL pg_temp.scenario('off');
SET invitetomedia.direct_use = on;
-- the answers (the same in both runs: see below), and invite_check's
-- before each consume
SELECT step, name, typed, device, status, same_invite, media_id, role, user_id,
       first_name, last_name, uses_left, same_expiry
  FROM answers WHERE tag = 'on' ORDER BY step;
SELECT step, name, checked FROM answers WHERE tag = 'on' ORDER BY step;
-- the invites and the new users afterwards
SELECT l.name, i.max_uses, i.use_count, i.used_up_at IS NOT NULL AS used_up,
       i.last_used_at IS NOT NULL AS last_used, i.failed_attempts
  FROM links l JOIN invitetomedia.invites i USING (invite_id)
 WHERE l.tag = 'on' AND l.name NOT LIKE '%(new token)' ORDER BY i.created_at, l.name;
SELECT user_id, email, first_name, last_name, role FROM invitetomedia.users
 WHERE email LIKE '%+on@%' ORDER BY user_id;
-- what was compared, and what differs between the runs (nothing)
SELECT split_part(s, ' ', 1) AS kind, count(*) AS lines FROM pg_temp.state('on') s GROUP BY 1 ORDER BY 1;
SELECT 'only with the path on' AS run, s FROM (SELECT pg_temp.state('on') EXCEPT ALL SELECT pg_temp.state('off')) d(s)
UNION ALL
SELECT 'only with the path off', s FROM (SELECT pg_temp.state('off') EXCEPT ALL SELECT pg_temp.state('on')) d(s);
-- and use_count equals the ok records of each link
SELECT count(*) AS links_out_of_balance
  FROM invitetomedia.invites i
 WHERE i.use_count <> (SELECT count(*) FROM invitetomedia.redemptions r
                        WHERE r.invite_id = i.invite_id AND r.status = 'ok');

------------------------------------------------------------------------------
-- b. The SQL statement where the path does not apply, with a DEBUG1 line
-- saying why; once the cause is gone, the next consume takes the path again
-- (no line): the relcache callback reset the per-backend cache
------------------------------------------------------------------------------
UPDATE invitetomedia.settings SET enabled = true, link_reusability = -1, lockout_attempts = 5;
SELECT invite_id, token FROM invitetomedia.invite_create('live', 'owner', 'fallback@outside.example', 'Fall', 'Back') \gset
-- the path (no line)
SET client_min_messages = debug1;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;

-- REPEATABLE READ and SERIALIZABLE
BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
COMMIT;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;

-- a DBA's BEFORE UPDATE row trigger: the statement runs, so the trigger fires
CREATE TABLE public.direct_use_audit (invite_id bigint, old_count integer, new_count integer);
CREATE FUNCTION public.direct_use_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.direct_use_audit VALUES (OLD.invite_id, OLD.use_count, NEW.use_count);
    RETURN NEW;
END
$$;
CREATE TRIGGER direct_use_audit BEFORE UPDATE ON invitetomedia.invites
    FOR EACH ROW EXECUTE FUNCTION public.direct_use_audit();
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
SELECT invite_id = :invite_id AS same_invite, old_count, new_count FROM public.direct_use_audit;
DROP TRIGGER direct_use_audit ON invitetomedia.invites;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
-- the trigger is gone: nothing more written
SELECT count(*) AS audited FROM public.direct_use_audit;

-- a rule (any rule: here on DELETE, which a consume does not run)
CREATE RULE direct_use_rule AS ON DELETE TO invitetomedia.invites
    DO ALSO INSERT INTO public.direct_use_audit VALUES (OLD.invite_id, NULL, NULL);
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
DROP RULE direct_use_rule ON invitetomedia.invites;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
-- an ON UPDATE rule: the path does not go around it; the statement refuses
-- it (a data-modifying WITH takes no DO ALSO rule) and nothing is used
CREATE RULE direct_use_rule AS ON UPDATE TO invitetomedia.invites
    DO ALSO INSERT INTO public.direct_use_audit VALUES (OLD.invite_id, OLD.use_count, NEW.use_count);
SET client_min_messages = debug1;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'fallback@outside.example')$$, :'token'));
RESET client_min_messages;
DROP RULE direct_use_rule ON invitetomedia.invites;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;

-- a retyped column; and back
ALTER TABLE invitetomedia.invites ALTER COLUMN first_name TYPE varchar(100);
SET client_min_messages = debug1;
SELECT status, first_name FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
ALTER TABLE invitetomedia.invites ALTER COLUMN first_name TYPE text;
SET client_min_messages = debug1;
SELECT status, first_name FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;

-- a NULL where the extension's schema has NOT NULL (the DBA dropped the
-- constraint): the statement, whose diagnosis names the column (23502)
ALTER TABLE invitetomedia.invites ALTER COLUMN expires_at DROP NOT NULL,
                                  ALTER COLUMN failed_attempts DROP NOT NULL;
SELECT invite_id AS null_id, token AS null_token
  FROM invitetomedia.invite_create('live', 'owner', 'null@outside.example', 'Nu', 'Ll') \gset
UPDATE invitetomedia.invites SET expires_at = NULL WHERE invite_id = :null_id;
SET client_min_messages = debug1;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'null@outside.example')$$, :'null_token'));
RESET client_min_messages;
UPDATE invitetomedia.invites SET expires_at = now() + interval '1 day', failed_attempts = NULL
 WHERE invite_id = :null_id;
SET client_min_messages = debug1;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'null@outside.example')$$, :'null_token'));
RESET client_min_messages;
UPDATE invitetomedia.invites SET failed_attempts = 0 WHERE invite_id = :null_id;
ALTER TABLE invitetomedia.invites ALTER COLUMN expires_at SET NOT NULL,
                                  ALTER COLUMN failed_attempts SET NOT NULL;
SET client_min_messages = debug1;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'null_token', 'null@outside.example');
RESET client_min_messages;
SELECT use_count, (SELECT string_agg(status, ',') FROM invitetomedia.redemptions r
                    WHERE r.invite_id = i.invite_id) AS records
  FROM invitetomedia.invites i WHERE invite_id = :null_id;

-- FORCE ROW LEVEL SECURITY.  The functions run as their owner, which owns
-- invites; a superuser bypasses every policy, forced or not, so the path
-- stays right (and taken) for one
ALTER TABLE invitetomedia.invites FORCE ROW LEVEL SECURITY;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
ALTER TABLE invitetomedia.invites NO FORCE ROW LEVEL SECURITY;
-- an owner that is not a superuser: invites and invite_consume handed to a
-- role with what the consume's statements need
SELECT invite_id AS doc_id, token AS doc_token
  FROM invitetomedia.invite_create('doc', 'owner', 'fallback.doc@outside.example', 'Doc', 'Back') \gset
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_itm_direct_owner;
RESET client_min_messages;
CREATE ROLE regress_itm_direct_owner;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_direct_owner;
-- (2.0: and the tables that bind the caller to its tenant and site; records
-- have no sequence, their ids are drawn)
GRANT SELECT ON invitetomedia.settings, invitetomedia.retired_tokens, invitetomedia.sites,
                invitetomedia.tenants, invitetomedia.tenant_roles TO regress_itm_direct_owner;
GRANT SELECT, INSERT, UPDATE ON invitetomedia.redemptions, invitetomedia.users TO regress_itm_direct_owner;
GRANT EXECUTE ON FUNCTION invitetomedia.may_invite(text, text) TO regress_itm_direct_owner;
ALTER TABLE invitetomedia.invites OWNER TO regress_itm_direct_owner;
-- the function's owner (still the superuser) does not own invites
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
ALTER FUNCTION invitetomedia.invite_consume(text, text, text) OWNER TO regress_itm_direct_owner;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
-- forced, with a policy of the DBA's that hides the documents' links from
-- the owner: the statement applies it (the path would not have)
CREATE POLICY direct_use_no_doc ON invitetomedia.invites TO regress_itm_direct_owner
    USING (media_id <> 'doc');
ALTER TABLE invitetomedia.invites FORCE ROW LEVEL SECURITY;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'doc_token', 'fallback.doc@outside.example');
RESET client_min_messages;
ALTER TABLE invitetomedia.invites NO FORCE ROW LEVEL SECURITY;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'doc_token', 'fallback.doc@outside.example');
RESET client_min_messages;
DROP POLICY direct_use_no_doc ON invitetomedia.invites;
ALTER FUNCTION invitetomedia.invite_consume(text, text, text) OWNER TO CURRENT_USER;
ALTER TABLE invitetomedia.invites OWNER TO CURRENT_USER;
REVOKE ALL ON invitetomedia.settings, invitetomedia.retired_tokens, invitetomedia.redemptions,
              invitetomedia.users, invitetomedia.sites, invitetomedia.tenants,
              invitetomedia.tenant_roles FROM regress_itm_direct_owner;
REVOKE ALL ON FUNCTION invitetomedia.may_invite(text, text) FROM regress_itm_direct_owner;
REVOKE ALL ON SCHEMA invitetomedia FROM regress_itm_direct_owner;
DROP ROLE regress_itm_direct_owner;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example');
RESET client_min_messages;
-- the record of a use (redemptions) goes through the table access method
-- too; an INSERT trigger on redemptions: the record takes the SQL INSERT
-- (the trigger fires), the use itself stays on the path
CREATE FUNCTION public.direct_use_record_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.direct_use_audit VALUES (NEW.invite_id, NULL, NULL);
    RETURN NULL;
END
$$;
CREATE TRIGGER direct_use_record_audit AFTER INSERT ON invitetomedia.redemptions
    FOR EACH ROW EXECUTE FUNCTION public.direct_use_record_audit();
TRUNCATE public.direct_use_audit;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example', 'audited');
RESET client_min_messages;
SELECT invite_id = :invite_id AS same_invite, old_count, new_count FROM public.direct_use_audit;
DROP TRIGGER direct_use_record_audit ON invitetomedia.redemptions;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'fallback@outside.example', 'unaudited');
RESET client_min_messages;
SELECT count(*) AS audited FROM public.direct_use_audit;
SELECT device_id, status FROM invitetomedia.redemptions
 WHERE invite_id = :invite_id AND device_id IN ('audited', 'unaudited') ORDER BY at;

-- every use above was taken once and recorded once, whichever way it went
SELECT i.use_count, (SELECT count(*) FROM invitetomedia.redemptions r
                      WHERE r.invite_id = i.invite_id AND r.status = 'ok') AS ok_records
  FROM invitetomedia.invites i WHERE i.invite_id IN (:invite_id, :doc_id) ORDER BY i.created_at;

------------------------------------------------------------------------------
-- c. A DBA's CHECK constraint (NOT VALID: older links have more uses; it
-- still holds for every new row version) holds on the path: the failed consume leaves
-- nothing (no record, use_count unchanged); the same with the path off
------------------------------------------------------------------------------
UPDATE invitetomedia.settings SET link_reusability = 3;
SELECT invite_id, token FROM invitetomedia.invite_create('room', 'owner', 'check@outside.example', 'Che', 'Ck') \gset
ALTER TABLE invitetomedia.invites ADD CONSTRAINT direct_use_two_uses_at_most CHECK (use_count <= 2) NOT VALID;
SET client_min_messages = debug1;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'check@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'check@outside.example');
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'check@outside.example')$$, :'token'));
RESET client_min_messages;
SELECT use_count, used_up_at IS NOT NULL AS used_up FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT status, count(*) FROM invitetomedia.redemptions WHERE invite_id = :invite_id GROUP BY status;
SET invitetomedia.direct_use = off;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'check@outside.example')$$, :'token'));
SET invitetomedia.direct_use = on;
ALTER TABLE invitetomedia.invites DROP CONSTRAINT direct_use_two_uses_at_most;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'check@outside.example');
SELECT status, count(*) FROM invitetomedia.redemptions WHERE invite_id = :invite_id GROUP BY status;
-- a CHECK that calls the DBA's function, which the path plans once per
-- backend: replacing the function reaches the next consume
CREATE FUNCTION public.direct_use_max_count(n integer) RETURNS boolean
LANGUAGE sql IMMUTABLE RETURN n <= 5;
ALTER TABLE invitetomedia.invites
    ADD CONSTRAINT direct_use_max_count CHECK (public.direct_use_max_count(use_count)) NOT VALID;
UPDATE invitetomedia.settings SET link_reusability = 3;
SELECT invite_id, token FROM invitetomedia.invite_create('room', 'owner', 'check.fn@outside.example', 'Che', 'Ck') \gset
SET client_min_messages = debug1;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'check.fn@outside.example');
RESET client_min_messages;
CREATE OR REPLACE FUNCTION public.direct_use_max_count(n integer) RETURNS boolean
LANGUAGE sql IMMUTABLE RETURN n <= 1;
SET client_min_messages = debug1;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'check.fn@outside.example')$$, :'token'));
RESET client_min_messages;
SELECT use_count FROM invitetomedia.invites WHERE invite_id = :invite_id;
ALTER TABLE invitetomedia.invites DROP CONSTRAINT direct_use_max_count;
DROP FUNCTION public.direct_use_max_count(integer);
-- a CHECK on redemptions holds for the path's record; the use it belonged
-- to goes with it (use_count unchanged)
ALTER TABLE invitetomedia.redemptions
    ADD CONSTRAINT direct_use_no_banned_device CHECK (device_id <> 'banned') NOT VALID;
SET client_min_messages = debug1;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'check.fn@outside.example', 'banned')$$, :'token'));
RESET client_min_messages;
SELECT use_count FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT status, device_id FROM invitetomedia.redemptions WHERE invite_id = :invite_id ORDER BY at;
SET invitetomedia.direct_use = off;
SELECT pg_temp.try_state(format($$SELECT invitetomedia.invite_consume(%L, 'check.fn@outside.example', 'banned')$$, :'token'));
SET invitetomedia.direct_use = on;
ALTER TABLE invitetomedia.redemptions DROP CONSTRAINT direct_use_no_banned_device;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'check.fn@outside.example', 'banned');

------------------------------------------------------------------------------
-- d. A use that is not HOT: the DBA indexes use_count, and the emails of
-- links with uses left (a partial index); each index finds the invite by
-- its new version and no longer by the old one, and the token-hash index
-- still finds it (index entries made for the new version, the partial
-- index's predicate evaluated)
------------------------------------------------------------------------------
UPDATE invitetomedia.settings SET link_reusability = 3;
SELECT invite_id, token FROM invitetomedia.invite_create('live', 'owner', 'index@outside.example', 'In', 'Dex') \gset
CREATE INDEX direct_use_use_count_idx ON invitetomedia.invites (use_count);
CREATE INDEX direct_use_open_email_idx ON invitetomedia.invites (email) WHERE used_up_at IS NULL;
-- in one transaction, so that the backend's pending statistics count just
-- this consume: an update, not HOT
BEGIN;
SELECT pg_stat_get_xact_tuples_updated('invitetomedia.invites'::regclass) AS upd0,
       pg_stat_get_xact_tuples_hot_updated('invitetomedia.invites'::regclass) AS hot0 \gset
SET LOCAL client_min_messages = debug1;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'index@outside.example');
RESET client_min_messages;
SELECT pg_stat_get_xact_tuples_updated('invitetomedia.invites'::regclass) - :upd0 AS updated,
       pg_stat_get_xact_tuples_hot_updated('invitetomedia.invites'::regclass) - :hot0 AS hot_updated;
COMMIT;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT invite_id, use_count FROM invitetomedia.invites WHERE use_count = 1 AND email = 'index@outside.example';
SELECT invite_id = :invite_id AS found, use_count
  FROM invitetomedia.invites WHERE use_count = 1 AND email = 'index@outside.example';
SELECT count(*) AS found_by_old_count
  FROM invitetomedia.invites WHERE use_count = 0 AND email = 'index@outside.example';
-- the token-hash index has an entry for the new version too: two more uses
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'index@outside.example');
SELECT invite_id = :invite_id AS found, use_count
  FROM invitetomedia.invites WHERE use_count = 2 AND email = 'index@outside.example';
SELECT count(*) AS found_by_old_count
  FROM invitetomedia.invites WHERE use_count IN (0, 1) AND email = 'index@outside.example';
-- the partial index: found while uses are left, not once the link is used up
EXPLAIN (COSTS OFF)
SELECT use_count FROM invitetomedia.invites WHERE email = 'index@outside.example' AND used_up_at IS NULL;
SELECT use_count AS open_use_count
  FROM invitetomedia.invites WHERE email = 'index@outside.example' AND used_up_at IS NULL;
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'index@outside.example');
SELECT count(*) AS open_links
  FROM invitetomedia.invites WHERE email = 'index@outside.example' AND used_up_at IS NULL;
SELECT use_count, used_up_at IS NOT NULL AS used_up
  FROM invitetomedia.invites WHERE use_count = 3 AND email = 'index@outside.example';
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP INDEX invitetomedia.direct_use_use_count_idx, invitetomedia.direct_use_open_email_idx;
-- the record: a column the DBA added with a default gets it, and a new
-- default once it is changed (the path plans the defaults once per
-- backend); a DBA's index on redemptions finds the record
ALTER TABLE invitetomedia.redemptions ADD COLUMN direct_use_source text DEFAULT 'web';
CREATE INDEX direct_use_source_idx ON invitetomedia.redemptions (direct_use_source);
UPDATE invitetomedia.settings SET link_reusability = -1;
SELECT invite_id, token FROM invitetomedia.invite_create('live', 'owner', 'record@outside.example', 'Re', 'Cord') \gset
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'record@outside.example', 'first');
-- (the ALTER outside DEBUG1: its catalog cache may say it rehashes)
RESET client_min_messages;
ALTER TABLE invitetomedia.redemptions ALTER COLUMN direct_use_source SET DEFAULT 'app';
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'token', 'record@outside.example', 'second');
RESET client_min_messages;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT device_id FROM invitetomedia.redemptions WHERE direct_use_source = 'app' AND invite_id = 0;
SELECT device_id FROM invitetomedia.redemptions WHERE direct_use_source = 'web' AND invite_id = :invite_id;
SELECT device_id FROM invitetomedia.redemptions WHERE direct_use_source = 'app' AND invite_id = :invite_id;
RESET enable_seqscan;
RESET enable_bitmapscan;
ALTER TABLE invitetomedia.redemptions DROP COLUMN direct_use_source;

------------------------------------------------------------------------------
-- e. The write guard still refuses a role's direct UPDATE; an application
-- role's consume takes the path; the switch is the superuser's
------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_itm_direct_app, regress_itm_direct_writer;
RESET client_min_messages;
CREATE ROLE regress_itm_direct_app;
CREATE ROLE regress_itm_direct_writer;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_direct_app, regress_itm_direct_writer;
GRANT EXECUTE ON FUNCTION invitetomedia.invite_consume(text, text, text) TO regress_itm_direct_app;
GRANT SELECT, UPDATE ON invitetomedia.invites TO regress_itm_direct_writer;
UPDATE invitetomedia.settings SET link_reusability = 2;
SELECT invite_id, token FROM invitetomedia.invite_create('live', 'owner', 'app@outside.example', 'Ap', 'P') \gset
SET ROLE regress_itm_direct_writer;
SELECT pg_temp.try_state($$UPDATE invitetomedia.invites SET use_count = 0$$);
RESET ROLE;
SET ROLE regress_itm_direct_app;
SET client_min_messages = debug1;
SELECT status, uses_left, user_id FROM invitetomedia.invite_consume(:'token', 'app@outside.example', 'dev1');
SELECT status, uses_left, user_id FROM invitetomedia.invite_consume(:'token', 'APP@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'app@outside.example');
RESET client_min_messages;
SELECT pg_temp.try_state($$SET invitetomedia.direct_use = off$$);
SHOW invitetomedia.direct_use;
RESET ROLE;
SELECT use_count, used_up_at IS NOT NULL AS used_up FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT status, device_id, user_id FROM invitetomedia.redemptions WHERE invite_id = :invite_id ORDER BY at;

-- cleanup
REVOKE ALL ON FUNCTION invitetomedia.invite_consume(text, text, text) FROM regress_itm_direct_app;
REVOKE ALL ON SCHEMA invitetomedia FROM regress_itm_direct_app;
DROP ROLE regress_itm_direct_app;
REVOKE ALL ON invitetomedia.invites FROM regress_itm_direct_writer;
REVOKE ALL ON SCHEMA invitetomedia FROM regress_itm_direct_writer;
DROP ROLE regress_itm_direct_writer;
DROP FUNCTION public.direct_use_audit(), public.direct_use_record_audit();
DROP TABLE public.direct_use_audit;
RESET invitetomedia.direct_use;
