-- Privileges: an application role with only the documented GRANTs can call
-- the API and nothing else; the sender role only the email_* functions; a
-- role without grants nothing.  search_path hijacking through public and
-- pg_temp never reaches the API.
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;
INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation', 'Hello {FIRST_NAME}: {URL}');
UPDATE invitetomedia.settings SET invite_email_template = 't';

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_itm_app, regress_itm_sender, regress_itm_maint,
                    regress_itm_usage_only, regress_itm_nobody, regress_itm_evil;
RESET client_min_messages;
CREATE ROLE regress_itm_app;
CREATE ROLE regress_itm_sender;
CREATE ROLE regress_itm_maint;
CREATE ROLE regress_itm_usage_only;
CREATE ROLE regress_itm_nobody;
CREATE ROLE regress_itm_evil;

-- the README's grants, and nothing more
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_app;
GRANT EXECUTE ON FUNCTION
    invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz),
    invitetomedia.invite_consume(text, text, text),
    invitetomedia.invite_check(text),
    invitetomedia.invite_revoke(bigint, text)
  TO regress_itm_app;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_sender;
GRANT EXECUTE ON FUNCTION
    invitetomedia.email_claim(integer, interval),
    invitetomedia.email_sent(bigint),
    invitetomedia.email_failed(bigint, text)
  TO regress_itm_sender;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_maint;
GRANT EXECUTE ON FUNCTION invitetomedia.invite_purge(interval) TO regress_itm_maint;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_usage_only;

-- what PUBLIC holds in the schema: nothing
SELECT count(*) AS public_table_grants
  FROM information_schema.role_table_grants
 WHERE table_schema = 'invitetomedia' AND grantee = 'PUBLIC';
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'invitetomedia'::regnamespace
   AND has_function_privilege('regress_itm_nobody', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
SELECT p.oid::regprocedure AS api_function, p.prosecdef AS security_definer, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'invitetomedia'::regnamespace AND p.prokind = 'f'
   AND p.proname IN ('invite_create', 'invite_consume', 'invite_check', 'invite_revoke',
                     'invite_purge', 'email_claim', 'email_sent', 'email_failed', 'email_release',
                     'may_invite', 'domain_allowed')
 ORDER BY p.oid::regprocedure::text;

------------------------------------------------------------------------------
-- the application role
------------------------------------------------------------------------------
SET ROLE regress_itm_app;
SELECT invite_id, token FROM invitetomedia.invite_create(
    'vid', 'owner', 'guest@outside.example', 'Gina', 'Guest', 'viewer', true) \gset
SELECT status, media_id, role FROM invitetomedia.invite_check(:'token');
SELECT status, user_id, uses_left FROM invitetomedia.invite_consume(:'token', 'guest@outside.example', 'dev1');
SELECT invite_id AS id2 FROM invitetomedia.invite_create('vid', 'owner', 'g2@outside.example', 'G', 'Two') \gset
SELECT invitetomedia.invite_revoke(:id2, 'owner') AS revoked;
-- but no table, view, sequence or other function
SELECT what, pg_temp.try(sql) FROM (VALUES
    ('read token hashes', 'SELECT token_hash FROM invitetomedia.invites'),
    ('read invites', 'SELECT count(*) FROM invitetomedia.invites'),
    ('read outbox bodies', 'SELECT body FROM invitetomedia.outbox'),
    ('read redemptions', 'SELECT * FROM invitetomedia.redemptions'),
    ('read users', 'SELECT * FROM invitetomedia.users'),
    ('read settings', 'SELECT * FROM invitetomedia.settings'),
    ('read templates', 'SELECT * FROM invitetomedia.email_templates'),
    ('read email_messages', 'SELECT * FROM invitetomedia.email_messages'),
    ('read email_queue', 'SELECT * FROM invitetomedia.email_queue'),
    ('change settings', 'UPDATE invitetomedia.settings SET link_reusability = -1'),
    ('enable by insert', 'INSERT INTO invitetomedia.settings (enabled) VALUES (true)'),
    ('change a template', $$UPDATE invitetomedia.email_templates SET body = '{URL} evil'$$),
    ('forge an invite', $$INSERT INTO invitetomedia.invites (token_hash, media_id, role, email, first_name, last_name, invited_by, expires_at, max_uses) VALUES (digest('x', 'sha256'), 'vid', 'viewer', 'e@x.example', 'E', 'V', 'owner', 'infinity', -1)$$),
    ('reset a use', 'UPDATE invitetomedia.invites SET use_count = 0'),
    ('delete records', 'DELETE FROM invitetomedia.redemptions'),
    ('become admin', $$UPDATE invitetomedia.users SET role = 'admin'$$),
    -- (2.0 draws ids: the sequences left are the relay's and the tenants')
    ('take a sequence value', $$SELECT nextval('invitetomedia.redemptions_event_seq')$$),
    ('claim emails', 'SELECT * FROM invitetomedia.email_claim(10, ''1 minute'')'),
    ('mark sent', 'SELECT invitetomedia.email_sent(1)'),
    ('mark failed', 'SELECT invitetomedia.email_failed(1, ''x'')'),
    ('purge', 'SELECT invitetomedia.invite_purge(''0'')'),
    ('may_invite', $$SELECT invitetomedia.may_invite('owner', 'vid')$$),
    ('domain_allowed', $$SELECT invitetomedia.domain_allowed('a@b.example')$$),
    ('normalize_domain', $$SELECT invitetomedia.normalize_domain('b.example')$$),
    -- (2.0: the settings' rules are the sites' trigger's)
    ('settings trigger', 'SELECT invitetomedia.sites_validate()'),
    ('create in the schema', 'CREATE TABLE invitetomedia.mine (i int)'),
    ('replace a function', 'CREATE OR REPLACE FUNCTION invitetomedia.role_rank(role text) RETURNS integer LANGUAGE sql RETURN 9')
  ) AS v(what, sql);
-- anyone may LISTEN: the payload carries only a message id
LISTEN invitetomedia_email;
UNLISTEN invitetomedia_email;
RESET ROLE;

------------------------------------------------------------------------------
-- the sender role: the three email functions, not the API, not the tables
------------------------------------------------------------------------------
SET ROLE regress_itm_sender;
SELECT to_email, subject, body ~ '^Hello Gina: http://localhost/invitetomedia/itm_' AS body_has_link
  FROM invitetomedia.email_claim(10, '1 minute') \gset
\echo :to_email :subject :body_has_link
SELECT invitetomedia.email_sent(message_id) FROM invitetomedia.email_claim(10, '0 seconds'::interval + '1 second') WHERE false;
SELECT what, pg_temp.try(sql) FROM (VALUES
    ('create', $$SELECT invitetomedia.invite_create('vid', 'owner', 's@outside.example', 'S', 'S')$$),
    ('consume', $$SELECT invitetomedia.invite_consume('itm_x', 's@outside.example')$$),
    ('check', $$SELECT invitetomedia.invite_check('itm_x')$$),
    ('revoke', $$SELECT invitetomedia.invite_revoke(1, 'owner')$$),
    ('purge', $$SELECT invitetomedia.invite_purge('0')$$),
    ('read outbox', 'SELECT body FROM invitetomedia.outbox'),
    ('read invites', 'SELECT token_hash FROM invitetomedia.invites')
  ) AS v(what, sql);
RESET ROLE;

-- the maintenance role: purge only
SET ROLE regress_itm_maint;
SELECT invitetomedia.invite_purge('30 days') AS purged;
SELECT pg_temp.try($$SELECT invitetomedia.invite_check('itm_x')$$) AS maint_check;
RESET ROLE;

------------------------------------------------------------------------------
-- roles without grants
------------------------------------------------------------------------------
SET ROLE regress_itm_nobody;
SELECT what, pg_temp.try(sql) FROM (VALUES
    ('create', $$SELECT invitetomedia.invite_create('vid', 'owner', 'n@outside.example', 'N', 'N')$$),
    ('consume', format('SELECT invitetomedia.invite_consume(%L, %L)', :'token', 'guest@outside.example')),
    ('check', format('SELECT invitetomedia.invite_check(%L)', :'token')),
    ('revoke', format('SELECT invitetomedia.invite_revoke(%s, %L)', :invite_id, 'owner')),
    ('purge', $$SELECT invitetomedia.invite_purge('0')$$),
    ('claim', 'SELECT invitetomedia.email_claim()'),
    ('read invites', 'SELECT * FROM invitetomedia.invites')
  ) AS v(what, sql);
RESET ROLE;
SET ROLE regress_itm_usage_only;
SELECT what, pg_temp.try(sql) FROM (VALUES
    ('create', $$SELECT invitetomedia.invite_create('vid', 'owner', 'n@outside.example', 'N', 'N')$$),
    ('consume', format('SELECT invitetomedia.invite_consume(%L, %L)', :'token', 'guest@outside.example')),
    ('check', format('SELECT invitetomedia.invite_check(%L)', :'token')),
    ('revoke', format('SELECT invitetomedia.invite_revoke(%s, %L)', :invite_id, 'owner')),
    ('purge', $$SELECT invitetomedia.invite_purge('0')$$),
    ('read invites', 'SELECT * FROM invitetomedia.invites')
  ) AS v(what, sql);
RESET ROLE;
SELECT pg_temp.rows();

------------------------------------------------------------------------------
-- search_path hijacking.  regress_itm_evil holds the application's grants
-- (and the sender's and the maintenance role's, to reach every function) and
-- may create objects in public.  It plants functions and operators in public
-- that shadow the ones the extension uses, and relations in pg_temp that
-- shadow the extension's tables; every shadow announces itself with a
-- WARNING and a row in public.hijack_log.  Then every API function is called
-- with search_path putting the shadows first.  No shadow may run.
------------------------------------------------------------------------------
GRANT regress_itm_app, regress_itm_sender, regress_itm_maint TO regress_itm_evil;
GRANT CREATE ON SCHEMA public TO regress_itm_evil;
CREATE TABLE public.hijack_log (fn text);
GRANT INSERT, SELECT ON public.hijack_log TO PUBLIC;
SET ROLE regress_itm_evil;

CREATE FUNCTION public.hijacked(fn text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'hijacked: %', fn;
    BEGIN
        INSERT INTO public.hijack_log VALUES (fn);
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- in a read-only context the WARNING alone tells
    END;
END $$;
-- functions, each with the exact argument types the extension passes
CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('lower'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION public.btrim(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('btrim'); RETURN pg_catalog.btrim($1); END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('now'); RETURN pg_catalog.now(); END $$;
-- (digest() is pgcrypto's, in public here; the API hashes tokens in C)
CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('sha256'); RETURN pg_catalog.sha256($1); END $$;
CREATE FUNCTION public.length(text) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('length'); RETURN pg_catalog.length($1); END $$;
CREATE FUNCTION public.length(bytea) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('length'); RETURN pg_catalog.length($1); END $$;
CREATE FUNCTION public.strpos(text, text) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('strpos'); RETURN pg_catalog.strpos($1, $2); END $$;
CREATE FUNCTION public.substring(text, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('substring'); RETURN pg_catalog.substring($1, $2); END $$;
CREATE FUNCTION public.right(text, integer) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('right'); RETURN pg_catalog.right($1, $2); END $$;
CREATE FUNCTION public.left(text, integer) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('left'); RETURN pg_catalog.left($1, $2); END $$;
CREATE FUNCTION public.concat_ws(text, text, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('concat_ws'); RETURN pg_catalog.concat_ws($1, $2, $3); END $$;
CREATE FUNCTION public.make_interval(mins integer) RETURNS interval LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('make_interval'); RETURN pg_catalog.make_interval(mins => $1); END $$;
CREATE FUNCTION public.to_char(timestamp, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('to_char'); RETURN pg_catalog.to_char($1, $2); END $$;
CREATE FUNCTION public.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('nextval'); RETURN pg_catalog.nextval($1); END $$;
CREATE FUNCTION public.quote_literal(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('quote_literal'); RETURN pg_catalog.quote_literal($1); END $$;
CREATE FUNCTION public.count(text) RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('count'); RETURN 0; END $$;
CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('unnest'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('pg_notify'); PERFORM pg_catalog.pg_notify($1, $2); END $$;
CREATE FUNCTION public.normalize_domain(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('normalize_domain'); RETURN $1; END $$;
CREATE FUNCTION public.may_invite(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('may_invite'); RETURN true; END $$;
CREATE FUNCTION public.domain_allowed(text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('domain_allowed'); RETURN true; END $$;
CREATE FUNCTION public.role_rank(text) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('role_rank'); RETURN 4; END $$;
-- operators: equality and comparison that always say yes, concatenation, arithmetic
CREATE FUNCTION public.ev_texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('= text'); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ev_texteq);
CREATE FUNCTION public.ev_textne(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('<> text'); RETURN true; END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ev_textne);
CREATE FUNCTION public.ev_byteaeq(bytea, bytea) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('= bytea'); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = public.ev_byteaeq);
CREATE FUNCTION public.ev_int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('= bigint'); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.ev_int8eq);
CREATE FUNCTION public.ev_int4eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('= integer'); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.ev_int4eq);
CREATE FUNCTION public.ev_int4lt(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('< integer'); RETURN true; END $$;
CREATE OPERATOR public.< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.ev_int4lt);
CREATE FUNCTION public.ev_int4ge(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('>= integer'); RETURN true; END $$;
CREATE OPERATOR public.>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.ev_int4ge);
CREATE FUNCTION public.ev_int4pl(integer, integer) RETURNS integer LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('+ integer'); RETURN 0; END $$;
CREATE OPERATOR public.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.ev_int4pl);
CREATE FUNCTION public.ev_tsgt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('> timestamptz'); RETURN true; END $$;
CREATE OPERATOR public.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.ev_tsgt);
CREATE FUNCTION public.ev_tsle(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('<= timestamptz'); RETURN false; END $$;
CREATE OPERATOR public.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.ev_tsle);
CREATE FUNCTION public.ev_tsmi(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('- timestamptz'); RETURN $1; END $$;
CREATE OPERATOR public.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.ev_tsmi);
CREATE FUNCTION public.ev_tspl(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('+ timestamptz'); RETURN 'infinity'; END $$;
CREATE OPERATOR public.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.ev_tspl);
CREATE FUNCTION public.ev_textcat(text, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('||'); RETURN $1 OPERATOR(pg_catalog.||) $2; END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ev_textcat);
CREATE FUNCTION public.ev_textre(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('~ text'); RETURN true; END $$;
CREATE OPERATOR public.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ev_textre);
CREATE OPERATOR public.~* (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ev_textre);
CREATE FUNCTION public.ev_textnre(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.hijacked('!~ text'); RETURN false; END $$;
CREATE OPERATOR public.!~ (LEFTARG = text, RIGHTARG = text, FUNCTION = public.ev_textnre);
-- relations in pg_temp named like the extension's tables
CREATE TEMP TABLE settings AS SELECT true AS singleton, true AS enabled;
CREATE TEMP TABLE invites (invite_id bigint, token_hash bytea);
CREATE TEMP TABLE users (user_id text, email text, role text);
CREATE TEMP TABLE media (media_id text, owner_id text);
CREATE TEMP TABLE outbox (message_id bigint);
CREATE TEMP TABLE redemptions (invite_id bigint);
CREATE TEMP TABLE email_templates (name text);

-- the fixture's try() uses unqualified || and <>, so it would trip the
-- shadows itself; this one uses nothing a shadow could catch
CREATE FUNCTION pg_temp.try_h(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN pg_catalog.concat(SQLSTATE, ': ', SQLERRM);
END $$;

-- the trap works: an unqualified call in an ordinary query is caught
SET search_path = public, pg_catalog;
SELECT lower('X') AS trap_works;
SELECT 'a'::text = 'b'::text AS operator_trap_works, now() IS NOT NULL AS now_trap_works;
SELECT count(*) AS trap_rows FROM public.hijack_log;
RESET ROLE;
TRUNCATE public.hijack_log;
SET ROLE regress_itm_evil;

-- every API function, with the shadows first in the path
SET search_path = public, pg_catalog, pg_temp;
SELECT invite_id AS e1, token AS et1 FROM invitetomedia.invite_create(
    'live', 'owner', 'evil@outside.example', 'Eve', 'Evil', 'moderator', true) \gset
SELECT status, role FROM invitetomedia.invite_check(:'et1');
SELECT status, role, uses_left FROM invitetomedia.invite_consume(:'et1', ' EVIL@outside.example ', 'd1');
SELECT status FROM invitetomedia.invite_consume(:'et1', 'evil@outside.example', 'd1');
SELECT status FROM invitetomedia.invite_consume(:'et1', 'evil@outside.example', 'd2');
SELECT status FROM invitetomedia.invite_consume(:'et1', 'wrong@outside.example');
SELECT status FROM invitetomedia.invite_consume('itm_bad', 'evil@outside.example');
SELECT pg_temp.try_h($$SELECT invitetomedia.invite_create('vid', 'stranger', 'x@outside.example', 'X', 'X')$$) AS stranger_refused;
SELECT pg_temp.try_h($$SELECT invitetomedia.invite_create('vid', 'owner', 'x@outside.example', 'X', 'X', 'moderator')$$) AS role_refused;
SELECT invitetomedia.invite_revoke(:e1, 'owner') AS revoked;
SELECT status FROM invitetomedia.invite_consume(:'et1', 'evil@outside.example');
SELECT count(*) AS claimed FROM invitetomedia.email_claim(10, '1 minute');
SELECT invite_id AS e2 FROM invitetomedia.invite_create('vid', 'owner', 'evil2@outside.example', 'Eve', 'Two', 'viewer', true) \gset
SELECT invitetomedia.email_sent(message_id) AS sent, invitetomedia.email_failed(message_id, 'x') AS failed_after_sent
  FROM invitetomedia.email_claim(10, '1 minute');
SELECT invitetomedia.invite_purge('30 days') AS purged;
-- pg_temp first
SET search_path = pg_temp, public, pg_catalog;
SELECT status FROM invitetomedia.invite_check(:'et1');
SELECT count(*) AS created FROM invitetomedia.invite_create('vid', 'owner', 'evil3@outside.example', 'Eve', 'Three');
SELECT invitetomedia.invite_purge('0') >= 1 AS purged_some;
RESET ROLE;

-- the superuser's own maintenance through triggers and views, same path
SET search_path = public, pg_catalog, pg_temp;
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{Closed.Example}', link_duration = 60;
SELECT restrict_new_user_domains, link_duration FROM invitetomedia.settings;
SELECT state, messages FROM invitetomedia.email_queue;
SELECT pg_temp.try_h($$SELECT invitetomedia.invite_create('vid', 'owner', 'new@closed.example', 'N', 'N')$$) AS restricted;
SELECT invitetomedia.may_invite('stranger', 'vid') AS stranger_may, invitetomedia.domain_allowed('a@sub.closed.example') AS sub_allowed;
DELETE FROM invitetomedia.invites;
RESET search_path;

-- no shadow ran
SELECT count(*) AS hijacked_calls FROM public.hijack_log;

-- clean up
SET client_min_messages = warning;
DROP TABLE pg_temp.settings, pg_temp.invites, pg_temp.users, pg_temp.media,
           pg_temp.outbox, pg_temp.redemptions, pg_temp.email_templates;
DROP OWNED BY regress_itm_evil;
DROP TABLE public.hijack_log;
REVOKE CREATE ON SCHEMA public FROM regress_itm_evil;
DROP OWNED BY regress_itm_app, regress_itm_sender, regress_itm_maint, regress_itm_usage_only;
DROP ROLE regress_itm_app, regress_itm_sender, regress_itm_maint,
          regress_itm_usage_only, regress_itm_nobody, regress_itm_evil;
TRUNCATE invitetomedia.invites, invitetomedia.redemptions, invitetomedia.outbox;
DELETE FROM invitetomedia.users WHERE user_id LIKE '%@%';
UPDATE invitetomedia.settings
   SET enabled = false, link_duration = 1440, link_reusability = 1,
       allowed_users_roles = 'private_only', invite_email_template = NULL,
       restrict_new_user_domains = '{}',
       link_base_url = 'http://localhost/invitetomedia/',
       email_max_attempts = 8, email_retry_delay = '1 minute';
DELETE FROM invitetomedia.email_templates;
RESET client_min_messages;
SELECT pg_temp.rows();
