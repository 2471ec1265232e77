-- Hostile input: malformed tokens of every length and alphabet, 1 MB
-- arguments, odd Unicode, quoted local parts, header and template
-- injection, SQL fragments, out-of-range settings.  Every refusal is a clear
-- error or a documented status, never a crash, and leaves no row behind.
\i sql/include/fixture.psql

-- every hostile input below is counted (pg_temp.n() in each call); the total
-- is printed at the end and quoted in the README
CREATE SEQUENCE pg_temp.inputs;
CREATE FUNCTION pg_temp.n() RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('pg_temp.inputs') $$;
-- one statement, counted, through the fixture's try()
CREATE FUNCTION pg_temp.t(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.try(sql) FROM pg_temp.n() $$;
-- a 1 MB string (1048576 bytes)
CREATE FUNCTION pg_temp.mb(c text DEFAULT 'a') RETURNS text LANGUAGE sql AS $$
    SELECT repeat(c, 1048576 / octet_length(c)) $$;

UPDATE invitetomedia.settings SET enabled = true;
INSERT INTO invitetomedia.email_templates VALUES
    ('t', 'Invitation for {FIRST_NAME} {LAST_NAME}',
     E'Hello {FIRST_NAME} {LAST_NAME} <{EMAIL}>,\n{INVITER_NAME} invites you to {MEDIA_TITLE}: {URL}');
UPDATE invitetomedia.settings SET invite_email_template = 't', link_reusability = 3;
-- two real links: one to break, one to keep intact
SELECT token AS good, invite_id AS good_id
  FROM invitetomedia.invite_create('vid', 'owner', 'guest@outside.example', 'Gina', 'Guest') \gset
SELECT token AS other FROM invitetomedia.invite_create('vid', 'owner', 'other@outside.example', 'Otto', 'Other') \gset
SELECT pg_temp.rows();

------------------------------------------------------------------------------
-- tokens: every wrong length, alphabet, prefix and checksum is not_found,
-- read nothing and wrote nothing
------------------------------------------------------------------------------

-- lengths 0 .. 60 and a few long ones, made of valid characters, with and
-- without the prefix (52 is the right length: its checksum is wrong)
WITH tries AS (
    SELECT pg_temp.n(), s
      FROM generate_series(0, 60) len,
           LATERAL (VALUES (repeat('A', len)),
                           ('itm_' || repeat('A', greatest(len - 4, 0))),
                           (left(:'good', len))) AS v(s)
    UNION ALL
    SELECT pg_temp.n(), s
      FROM (VALUES (:'good' || 'A'), (:'good' || :'good'), ('itm_' || repeat('A', 1000)),
                   (pg_temp.mb()), (:'good' || pg_temp.mb())) AS v(s)
)
SELECT c.status, count(*) AS tries, min(length(s)) AS shortest, max(length(s)) AS longest
  FROM tries, LATERAL invitetomedia.invite_consume(s, 'guest@outside.example', 'dev') c
 GROUP BY c.status;
-- the only 52-character one above that is not made up is the real token:
-- left(good, 52) is the token itself and was consumed (ok); undo that use
SELECT use_count FROM invitetomedia.invites WHERE invite_id = :good_id;
UPDATE invitetomedia.invites SET use_count = 0 WHERE invite_id = :good_id;
DELETE FROM invitetomedia.redemptions;
DELETE FROM invitetomedia.users WHERE user_id = 'guest@outside.example';

-- every single character of the real token replaced by every other
-- character of the alphabet, and by characters outside it
WITH alphabet AS (
    SELECT ch FROM regexp_split_to_table(
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
        || '+/=.~ !*''"%&?#@:;,<>\`|^{}[]()$' || E'\t' || 'é€' || U&'\0430' || U&'\FF21', '') ch
), tries AS (
    SELECT pg_temp.n(), overlay(:'good' PLACING a.ch FROM pos FOR 1) AS s
      FROM generate_series(1, 52) pos, alphabet a
     WHERE a.ch <> substr(:'good', pos, 1)
)
SELECT c.status, count(*) AS tries
  FROM tries, LATERAL invitetomedia.invite_consume(s, 'guest@outside.example') c
 GROUP BY c.status;

-- case, spacing, encoding and prefix variants of the real token
WITH tries AS (
    SELECT pg_temp.n(), s FROM (VALUES
        (upper(:'good')), (lower(:'good')), (' ' || :'good'), (:'good' || ' '),
        (:'good' || E'\n'), (E'\t' || :'good'), ('ITM_' || substr(:'good', 5)),
        ('itm-' || substr(:'good', 5)), ('itm' || substr(:'good', 5)),
        ('tm_' || substr(:'good', 5)), ('itm_itm_' || substr(:'good', 9)),
        (overlay(overlay(:'good' PLACING '+' FROM 10 FOR 1) PLACING '/' FROM 20 FOR 1)),
        (overlay(:'good' PLACING 'Ａ' FROM 5 FOR 1)),
        ('http://localhost/invitetomedia/' || :'good'),
        (encode(digest(:'good', 'sha256'), 'hex')),
        (encode(digest(:'good', 'sha256'), 'base64')),
        (reverse(:'good')), (substr(:'good', 5)),
        (:'good' || U&'\200B'), (U&'\FEFF' || :'good'),
        ('''; DROP TABLE invitetomedia.invites; --'),
        ('itm_'' OR ''1''=''1'), (:'good' || ''' OR ''1''=''1')) AS v(s)
)
SELECT c.status, count(*) AS tries
  FROM tries, LATERAL invitetomedia.invite_consume(s, 'guest@outside.example') c
 GROUP BY c.status;

-- invite_check agrees on all of those shapes, and neither wrote anything
SELECT c.status, count(*) AS tries
  FROM (SELECT pg_temp.n(), s FROM generate_series(0, 60) len,
               LATERAL (VALUES (repeat('A', len)), ('itm_' || repeat('_', greatest(len - 4, 0)))) v(s)
        UNION ALL SELECT pg_temp.n(), overlay(:'good' PLACING '!' FROM pos FOR 1)
          FROM generate_series(1, 52) pos
        UNION ALL SELECT pg_temp.n(), pg_temp.mb()) t,
       LATERAL invitetomedia.invite_check(t.s) c
 GROUP BY c.status;
SELECT pg_temp.rows(), (SELECT use_count FROM invitetomedia.invites WHERE invite_id = :good_id) AS good_uses;
-- the real token still works
SELECT status FROM invitetomedia.invite_check(:'good');

------------------------------------------------------------------------------
-- 1 MB in every text argument of every API function
------------------------------------------------------------------------------
SELECT arg, pg_temp.t(format(
    'SELECT invitetomedia.invite_create(%s)',
    array_to_string(array_replace(
        ARRAY['''vid''', '''owner''', '''new@outside.example''', '''Nina''', '''New''', '''viewer''', 'false'],
        a, 'pg_temp.mb()'), ', ')))
  FROM unnest(ARRAY['''vid''', '''owner''', '''new@outside.example''', '''Nina''', '''New''', '''viewer''']) WITH ORDINALITY AS u(a, arg);
-- the same with multi-byte characters (1 MB of 'é', 1 MB of emoji) in names
SELECT pg_temp.t($$SELECT invitetomedia.invite_create('vid', 'owner', 'new@outside.example', pg_temp.mb('é'), 'New')$$);
SELECT pg_temp.t($$SELECT invitetomedia.invite_create('vid', 'owner', 'new@outside.example', 'Nina', pg_temp.mb('😀'))$$);
-- an email just over the limits: 65-character local part, 64-character label, 255 characters
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'N', 'N')$$, repeat('a', 65) || '@outside.example'));
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'N', 'N')$$, 'a@' || repeat('b', 64) || '.example'));
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'N', 'N')$$, 'a@' || repeat('b.', 124) || 'example'));
-- a name of exactly 100 characters is fine, 101 is not
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', 'hundred@outside.example', %L, 'N')$$, repeat('é', 101)));
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', 'hundred@outside.example', %L, 'N')$$, repeat('é', 100)));
-- consume: 1 MB token is not_found (nothing read), 1 MB email on a real
-- token is an email_mismatch (recorded, documented), 1 MB device_id refused
SELECT status FROM pg_temp.n(), invitetomedia.invite_consume(pg_temp.mb(), 'guest@outside.example');
SELECT status FROM pg_temp.n(), invitetomedia.invite_consume(:'other', pg_temp.mb());
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_consume(%L, 'other@outside.example', pg_temp.mb())$$, :'other'));
SELECT status FROM pg_temp.n(), invitetomedia.invite_check(pg_temp.mb());
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_revoke(%s, pg_temp.mb())$$, :good_id));
SELECT invitetomedia.may_invite(pg_temp.mb(), 'vid') AS may_invite_actor,
       invitetomedia.may_invite('owner', pg_temp.mb()) AS may_invite_media,
       invitetomedia.domain_allowed(pg_temp.mb()) AS domain_allowed
  FROM pg_temp.n();
SELECT pg_temp.t($$SELECT invitetomedia.normalize_domain(pg_temp.mb())$$);
SELECT pg_temp.t($$SELECT invitetomedia.email_failed(-1, pg_temp.mb())$$);
SELECT pg_temp.rows(), (SELECT count(*) FROM invitetomedia.redemptions WHERE status = 'email_mismatch') AS mismatches_recorded;
DELETE FROM invitetomedia.invites WHERE first_name = repeat('é', 100);

------------------------------------------------------------------------------
-- odd Unicode: bidirectional controls refused everywhere; homoglyph domains
-- refused as non-ASCII; IDN in punycode accepted
------------------------------------------------------------------------------
SELECT name, pg_temp.t(format(
    $$SELECT invitetomedia.invite_create('vid', 'owner', 'rtl@outside.example', %L, 'Last')$$,
    'Ann' || ch || 'evil'))
  FROM (VALUES ('RLM', U&'\200F'), ('LRM', U&'\200E'), ('RLO', U&'\202E'), ('LRE', U&'\202A'),
               ('PDF', U&'\202C'), ('RLI', U&'\2067'), ('PDI', U&'\2069'), ('ALM', U&'\061C'),
               ('LS', U&'\2028'), ('PS', U&'\2029'), ('NEL', U&'\0085'), ('DEL', U&'\007F'),
               ('ESC', U&'\001B'), ('BEL', U&'\0007')) AS v(name, ch);
-- the override in every other text argument of invite_create
SELECT arg, pg_temp.t(format(
    'SELECT invitetomedia.invite_create(%s)',
    array_to_string(array_replace(
        ARRAY['''vid''', '''owner''', '''rtl@outside.example''', '''Ann''', '''Lee''', '''viewer'''],
        a, quote_literal(U&'\202E' || trim(both '''' from a))), ', ')))
  FROM unnest(ARRAY['''vid''', '''owner''', '''rtl@outside.example''', '''Lee''', '''viewer''']) WITH ORDINALITY AS u(a, arg);
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_consume(%L, 'other@outside.example', %L)$$, :'other', U&'dev\202E1'));
SELECT pg_temp.t($$SELECT invitetomedia.invite_revoke(1, U&'owner\200F')$$);
-- homoglyphs: Cyrillic а (U+0430) and Greek ο (U+03BF) in the domain or the local part
SELECT e, pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'H', 'G')$$, e))
  FROM unnest(ARRAY['user@ex' || U&'\0430' || 'mple.com', 'user@g' || U&'\03BF\03BF' || 'gle.com',
                    'p' || U&'\0430' || 'ypal@outside.example', 'user@bücher.example',
                    'user@outside' || U&'\3002' || 'example', 'user@outside' || U&'\FF0E' || 'example']) AS e;
-- IDN in punycode is an ordinary ASCII domain: accepted
SELECT pg_temp.t($$SELECT invitetomedia.invite_create('vid', 'owner', 'user@xn--bcher-kva.example', 'Idn', 'User')$$);
SELECT email FROM invitetomedia.invites WHERE first_name = 'Idn';
-- and in restrict_new_user_domains: punycode accepted, Unicode refused with a hint
SELECT pg_temp.t($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{bücher.example}'$$);
SELECT pg_temp.t($$UPDATE invitetomedia.settings SET restrict_new_user_domains = ARRAY['ex' || U&'\0430' || 'mple.com']$$);
SELECT pg_temp.t($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{XN--BCHER-KVA.Example}'$$);
SELECT restrict_new_user_domains FROM invitetomedia.settings;
SELECT pg_temp.t($$SELECT invitetomedia.invite_create('vid', 'owner', 'other@xn--bcher-kva.example', 'Idn', 'Two')$$);
SELECT pg_temp.t($$SELECT invitetomedia.invite_create('vid', 'owner', 'other@sub.XN--bcher-kva.example', 'Idn', 'Three')$$);
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{}';
-- names with combining marks, emoji and other scripts are fine
SELECT pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', 'zoe@outside.example', %L, %L)$$,
                        U&'Zoe\0308', 'Ωμέγα 😀 محمد'));
SELECT first_name, last_name FROM invitetomedia.invites WHERE email = 'zoe@outside.example';
DELETE FROM invitetomedia.invites WHERE first_name IN ('Idn', U&'Zoe\0308');
SELECT pg_temp.rows();

------------------------------------------------------------------------------
-- email syntax: quoted local parts, comments, odd forms
------------------------------------------------------------------------------
SELECT e, pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'Q', 'Q')$$, e))
  FROM unnest(ARRAY[
    '"john doe"@outside.example', '"john@doe"@outside.example', '"a"b@outside.example',
    'john(comment)@outside.example', 'john@[192.168.0.1]', 'john@192.168.0.1',
    'john@localhost', 'John Doe <john@outside.example>', 'john@outside.example>',
    '.john@outside.example', 'john.@outside.example', 'jo..hn@outside.example',
    'john@outside..example', 'john@-outside.example', 'john@outside-.example',
    'john@.outside.example', 'john@outside.example.', '@outside.example', 'john@',
    'john', '', ' ', 'a@b@outside.example', 'john\@outside.example',
    'john@outside.example,eve@evil.example', 'john@outside.example;eve@evil.example',
    'john @outside.example', 'john@out side.example', 'john@outside_example.com',
    'john%eve@outside.example']) AS e;
-- and these are ordinary addresses (apostrophe, plus, surrounding spaces)
SELECT e, pg_temp.t(format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'Q', 'Q')$$, e))
  FROM unnest(ARRAY['o''brien@outside.example', 'a+tag@outside.example', '  spaced@outside.example  ',
                    E'\ttabbed@outside.example']) AS e;
SELECT email FROM invitetomedia.invites WHERE first_name = 'Q' ORDER BY email;
DELETE FROM invitetomedia.invites WHERE first_name = 'Q';

------------------------------------------------------------------------------
-- header injection: CR, LF and friends in every text argument
------------------------------------------------------------------------------
SELECT what, pg_temp.t(sql) FROM (VALUES
  ('first_name CRLF', format($$SELECT invitetomedia.invite_create('vid', 'owner', 'h@outside.example', %L, 'L', 'viewer', true)$$, E'Eve\r\nBcc: victim@outside.example')),
  ('last_name LF', format($$SELECT invitetomedia.invite_create('vid', 'owner', 'h@outside.example', 'F', %L, 'viewer', true)$$, E'Eve\nSubject: hi')),
  ('last_name CR', format($$SELECT invitetomedia.invite_create('vid', 'owner', 'h@outside.example', 'F', %L, 'viewer', true)$$, E'Eve\rX')),
  ('email CRLF', format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'F', 'L', 'viewer', true)$$, E'h@outside.example\r\nBcc: v@outside.example')),
  ('email LF inside', format($$SELECT invitetomedia.invite_create('vid', 'owner', %L, 'F', 'L', 'viewer', true)$$, E'h\n@outside.example')),
  ('media_id LF', format($$SELECT invitetomedia.invite_create(%L, 'owner', 'h@outside.example', 'F', 'L')$$, E'vid\n')),
  ('inviter_id CR', format($$SELECT invitetomedia.invite_create('vid', %L, 'h@outside.example', 'F', 'L')$$, E'owner\r')),
  ('role LF', format($$SELECT invitetomedia.invite_create('vid', 'owner', 'h@outside.example', 'F', 'L', %L)$$, E'viewer\n')),
  ('first_name TAB inside', format($$SELECT invitetomedia.invite_create('vid', 'owner', 'h@outside.example', %L, 'L')$$, E'A\tB')),
  ('device_id CRLF', format($$SELECT invitetomedia.invite_consume(%L, 'other@outside.example', %L)$$, :'other', E'd\r\n')),
  ('actor_id LF', format($$SELECT invitetomedia.invite_revoke(%s, %L)$$, :good_id, E'owner\n')),
  ('template subject CRLF', $$INSERT INTO invitetomedia.email_templates VALUES ('bad', E'Hi\r\nBcc: x@y.example', '{URL}')$$),
  ('template subject LF', $$UPDATE invitetomedia.email_templates SET subject = E'Hi\nX' WHERE name = 't'$$)
  ) AS v(what, sql), LATERAL pg_temp.n();
SELECT pg_temp.rows();
-- spaces around a name are trimmed (a tab is a control character: refused above)
SELECT pg_temp.t($$SELECT invitetomedia.invite_create('vid', 'owner', 'trim@outside.example', '  Tina ', '  Trim  ')$$);
SELECT '[' || first_name || '|' || last_name || ']' AS stored FROM invitetomedia.invites WHERE email = 'trim@outside.example';
DELETE FROM invitetomedia.invites WHERE email = 'trim@outside.example';

------------------------------------------------------------------------------
-- template injection: placeholders inside names stay literal
------------------------------------------------------------------------------
SELECT pg_temp.n(), invite_id AS inj_id
  FROM invitetomedia.invite_create('vid', 'owner', 'inject@outside.example',
       '{URL}{EMAIL}', '{LAST_NAME}{INVITER_NAME}{{URL}}', 'viewer', true) \gset
SELECT subject, to_name,
       regexp_replace(body, 'itm_[A-Za-z0-9_-]{48}', '<token>', 'g') AS body,
       (SELECT count(*) FROM regexp_matches(body, 'itm_[A-Za-z0-9_-]{48}', 'g')) AS links_in_body
  FROM invitetomedia.outbox WHERE invite_id = :inj_id;
-- the media title and inviter name come from the directory: same rule
UPDATE invitetomedia.media SET title = 'Film {URL} {FIRST_NAME}' WHERE media_id = 'vid';
UPDATE invitetomedia.users SET first_name = '{URL}' WHERE user_id = 'owner';
SELECT pg_temp.n(), invite_id AS inj2_id
  FROM invitetomedia.invite_create('vid', 'owner', 'inject2@outside.example', 'Ivy', 'Inject', 'viewer', true) \gset
SELECT regexp_replace(body, 'itm_[A-Za-z0-9_-]{48}', '<token>', 'g') AS body,
       (SELECT count(*) FROM regexp_matches(body, 'itm_[A-Za-z0-9_-]{48}', 'g')) AS links_in_body
  FROM invitetomedia.outbox WHERE invite_id = :inj2_id;
UPDATE invitetomedia.media SET title = 'Intro video' WHERE media_id = 'vid';
UPDATE invitetomedia.users SET first_name = 'Olivia' WHERE user_id = 'owner';
DELETE FROM invitetomedia.invites WHERE invite_id IN (:inj_id, :inj2_id);

------------------------------------------------------------------------------
-- SQL fragments in every text argument: data, never code
------------------------------------------------------------------------------
CREATE TABLE public.x (i int);
INSERT INTO public.x VALUES (1);
SELECT arg, pg_temp.t(format(
    'SELECT invitetomedia.invite_create(%s)',
    array_to_string(array_replace(
        ARRAY['''vid''', '''owner''', '''sql@outside.example''', '''Sol''', '''Ql''', '''viewer'''],
        a, quote_literal(frag)), ', ')))
  FROM unnest(ARRAY['''vid''', '''owner''', '''sql@outside.example''', '''Sol''', '''Ql''', '''viewer''']) WITH ORDINALITY AS u(a, arg),
       unnest(ARRAY['''; DROP TABLE public.x; --', ''' OR ''1''=''1', '$$; DROP TABLE public.x; $$',
                    '\''; DROP TABLE public.x; --', 'x''); DELETE FROM invitetomedia.users; --']) AS frag
 ORDER BY arg, frag;
SELECT first_name, last_name FROM invitetomedia.invites WHERE email = 'sql@outside.example' ORDER BY 1, 2;
SELECT frag, c.status
  FROM unnest(ARRAY['''; DROP TABLE public.x; --', ''' OR ''1''=''1']) AS frag,
       LATERAL (SELECT pg_temp.n()) n,
       LATERAL invitetomedia.invite_consume(frag, frag, frag) c;
SELECT frag, c.status
  FROM unnest(ARRAY['''; DROP TABLE public.x; --', ''' OR ''1''=''1']) AS frag,
       LATERAL (SELECT pg_temp.n()) n,
       LATERAL invitetomedia.invite_consume(:'other', frag, frag) c;
SELECT device_id FROM invitetomedia.redemptions WHERE status = 'email_mismatch' AND device_id IS NOT NULL ORDER BY 1;
SELECT frag, pg_temp.t(format('SELECT invitetomedia.invite_revoke(%s, %L)', :good_id, frag)),
       invitetomedia.may_invite(frag, frag), invitetomedia.domain_allowed(frag)
  FROM unnest(ARRAY['''; DROP TABLE public.x; --', ''' OR ''1''=''1']) AS frag;
SELECT pg_temp.t($$SELECT invitetomedia.invite_purge('''; DROP TABLE public.x; --')$$);
SELECT * FROM public.x;
SELECT count(*) AS users_still_there FROM invitetomedia.users;
DROP TABLE public.x;
DELETE FROM invitetomedia.invites WHERE email = 'sql@outside.example';

------------------------------------------------------------------------------
-- settings: negative, zero, huge and malformed values are refused with the
-- setting's name and what it accepts; the row is unchanged
------------------------------------------------------------------------------
SELECT s::text AS before FROM invitetomedia.settings s \gset
SELECT v, pg_temp.t(format('UPDATE invitetomedia.settings SET %s', v)) AS refused
  FROM unnest(ARRAY[
    'link_duration = -1', 'link_duration = 0', 'link_duration = 525601',
    'link_duration = 2147483647', 'link_duration = -2147483648', 'link_duration = NULL',
    'link_reusability = 0', 'link_reusability = -2', 'link_reusability = -2147483648',
    'link_reusability = NULL',
    'allowed_users_roles = ''root''', 'allowed_users_roles = ''''', 'allowed_users_roles = ''ADMIN''',
    'allowed_users_roles = NULL',
    'invite_email_template = ''missing''',
    'restrict_new_user_domains = NULL', 'restrict_new_user_domains = ''{NULL}''',
    'restrict_new_user_domains = ''{*.evil.example}''', 'restrict_new_user_domains = ''{""}''',
    'restrict_new_user_domains = ''{evil}''', 'restrict_new_user_domains = ''{1.2.3.4}''',
    'restrict_new_user_domains = ''{a@b.example}''',
    'restrict_new_user_domains = ARRAY[''evil.example; DROP TABLE x'']',
    'link_base_url = ''javascript:alert(1)''', 'link_base_url = ''ftp://files.example/''',
    'link_base_url = ''http://''', 'link_base_url = ''http:// evil.example/''',
    'link_base_url = E''http://a.example/\r\nX: y''', 'link_base_url = ''//evil.example/''',
    'link_base_url = NULL', 'link_base_url = ''http://a.example/'' || repeat(''a'', 2000)',
    'email_max_attempts = 0', 'email_max_attempts = 101', 'email_max_attempts = -1',
    'email_retry_delay = ''0''', 'email_retry_delay = ''-1 second''', 'email_retry_delay = ''2 days''',
    'email_retry_delay = NULL', 'enabled = NULL', 'singleton = false']) AS v;
SELECT pg_temp.t('UPDATE invitetomedia.settings SET link_duration = 99999999999') AS out_of_int_range;
SELECT pg_temp.t('DELETE FROM invitetomedia.settings') AS delete_row;
SELECT pg_temp.t('TRUNCATE invitetomedia.settings') AS truncate_table;
SELECT pg_temp.t('INSERT INTO invitetomedia.settings (singleton) VALUES (false)') AS second_row;
SELECT s::text = :'before' AS settings_unchanged, (SELECT count(*) FROM invitetomedia.settings) AS rows
  FROM invitetomedia.settings s;
-- the edges of the ranges are accepted
SELECT v, pg_temp.t(format('UPDATE invitetomedia.settings SET %s', v)) AS accepted
  FROM unnest(ARRAY['link_duration = 1', 'link_duration = 525600', 'link_reusability = -1',
                    'link_reusability = 2147483647', 'email_max_attempts = 1',
                    'email_max_attempts = 100', 'email_retry_delay = ''1 second''',
                    'email_retry_delay = ''1 day''']) AS v;
-- a huge reusability is a link with that many uses, no overflow
SELECT max_uses
  FROM pg_temp.n(), invitetomedia.invite_create('vid', 'owner', 'huge@outside.example', 'H', 'U');
SELECT c.status, c.uses_left FROM invitetomedia.invites i,
       LATERAL invitetomedia.invite_consume(:'good', 'guest@outside.example') c
 WHERE i.invite_id = :good_id;
-- purge with odd intervals (infinite ones: purge_infinite.sql)
SELECT pg_temp.t($$SELECT invitetomedia.invite_purge('-1 second')$$) AS negative_keep;
SELECT pg_temp.t($$SELECT invitetomedia.invite_purge(NULL)$$) AS null_keep;

-- NULL in every argument of every API function: 22004
SELECT pg_temp.t(format('SELECT invitetomedia.invite_create(%s)',
    array_to_string(array_replace(
        ARRAY['''vid''', '''owner''', '''n@outside.example''', '''Nf''', '''Nl''', '''viewer''', 'false'],
        a, 'NULL'), ', '))) AS invite_create_null_arg
  FROM unnest(ARRAY['''vid''', '''owner''', '''n@outside.example''', '''Nf''', '''Nl''', '''viewer''', 'false']) WITH ORDINALITY u(a, i)
 ORDER BY i;
SELECT pg_temp.t('SELECT invitetomedia.invite_consume(NULL, ''a@b.example'')') AS consume_null_token,
       pg_temp.t('SELECT invitetomedia.invite_consume(''itm_x'', NULL)') AS consume_null_email,
       pg_temp.t('SELECT invitetomedia.invite_check(NULL)') AS check_null,
       pg_temp.t('SELECT invitetomedia.invite_revoke(NULL, ''owner'')') AS revoke_null_id,
       pg_temp.t(format('SELECT invitetomedia.invite_revoke(%s, NULL)', :good_id)) AS revoke_null_actor;
SELECT pg_temp.t('SELECT invitetomedia.invite_revoke(-9223372036854775808, ''owner'')') AS revoke_min_id,
       pg_temp.t('SELECT invitetomedia.invite_revoke(9223372036854775807, ''owner'')') AS revoke_max_id;

-- after all that: the directory and the two links are as they were
SELECT pg_temp.rows();
SELECT status FROM invitetomedia.invite_consume(:'other', 'OTHER@outside.example ');
-- the figure quoted in the README's Reliability section
SELECT currval('pg_temp.inputs') AS abuse_inputs_tried;

-- leave no invite behind and the settings at their defaults
SET client_min_messages = warning;
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
