-- invite_create: who may invite, what is checked, what is stored
\i sql/include/fixture.psql

-- disabled by default: refused with 55000, nothing written
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'guest@outside.example', 'Gina', 'Guest')$$);
SELECT pg_temp.rows();
UPDATE invitetomedia.settings SET enabled = true;

-- the owner invites; the token is returned once, only its hash is stored
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'Guest@Outside.example', 'Gina', 'Guest') \gset
SELECT :'token' ~ '^itm_[A-Za-z0-9_-]{48}$' AS token_format,
       :'url' = 'http://localhost/invitetomedia/' || :'token' AS url_is_base_plus_token,
       :'max_uses' = '1' AS single_use_by_default,
       :'expires_at'::timestamptz BETWEEN now() + interval '1439 minutes'
                                      AND now() + interval '1441 minutes' AS expires_in_a_day;
SELECT invite_id = :invite_id AS same_id, token_hash = digest(:'token', 'sha256') AS hash_matches,
       media_id, role, email, first_name, last_name, invited_by, max_uses, use_count,
       revoked_at IS NULL AS not_revoked, expires_at = :'expires_at' AS same_expiry
  FROM invitetomedia.invites;
-- the token itself is nowhere in the database
SELECT count(*) AS rows_holding_the_token
  FROM invitetomedia.invites i
 WHERE i::text LIKE '%' || :'token' || '%'
    OR encode(i.token_hash, 'escape') LIKE '%' || :'token' || '%';
-- two links never share a token
SELECT count(DISTINCT c.token) AS distinct_tokens, count(DISTINCT i.token_hash) AS distinct_hashes
  FROM generate_series(1, 50) g,
       LATERAL invitetomedia.invite_create('live', 'owner', 'many' || g || '@outside.example', 'M', 'Any') c,
       LATERAL (SELECT digest(c.token, 'sha256') AS token_hash) i;
DELETE FROM invitetomedia.invites WHERE first_name = 'M';

-- who may invite: owner and co_owner/co_editor/co_publisher, not co_viewer
SELECT u, pg_temp.try(format($$SELECT invitetomedia.invite_create('live', %L, 'g@outside.example', 'G', 'G')$$, u))
  FROM unnest(ARRAY['owner', 'coowner', 'coeditor', 'copublisher', 'coviewer', 'stranger']) AS u;
-- allowed_users_roles = 'private_only': the role private_only or higher
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('vvid', 'viewer', 'g@outside.example', 'G', 'G')$$);
-- 'admin': admin or higher
UPDATE invitetomedia.settings SET allowed_users_roles = 'admin';
SELECT u, m, pg_temp.try(format($$SELECT invitetomedia.invite_create(%L, %L, 'g@outside.example', 'G', 'G')$$, m, u))
  FROM (VALUES ('owner', 'live'), ('admin', 'alive'), ('uadmin', 'live')) AS t(u, m);
-- 'unmoderated_admin': that role only
UPDATE invitetomedia.settings SET allowed_users_roles = 'unmoderated_admin';
SELECT u, m, pg_temp.try(format($$SELECT invitetomedia.invite_create(%L, %L, 'g@outside.example', 'G', 'G')$$, m, u))
  FROM (VALUES ('owner', 'live'), ('admin', 'alive'), ('uadmin', 'live')) AS t(u, m);
-- 'specific': listed users and members of listed groups, still only on their media
UPDATE invitetomedia.settings SET allowed_users_roles = 'specific';
INSERT INTO invitetomedia.allowed_users VALUES ('user', 'copublisher'), ('group', 'speakers');
SELECT u, pg_temp.try(format($$SELECT invitetomedia.invite_create('live', %L, 'g@outside.example', 'G', 'G')$$, u))
  FROM unnest(ARRAY['owner', 'coowner', 'coeditor', 'copublisher', 'stranger', 'viewer']) AS u;
-- a listed group member who is not a collaborator of the media is still refused
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('vid', 'coeditor', 'g@outside.example', 'G', 'G')$$);
DELETE FROM invitetomedia.allowed_users;
UPDATE invitetomedia.settings SET allowed_users_roles = 'private_only';
DELETE FROM invitetomedia.invites WHERE email = 'g@outside.example';

-- unknown media or inviter: 42704
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('nope', 'owner', 'g@outside.example', 'G', 'G')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'nobody', 'g@outside.example', 'G', 'G')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('', 'owner', 'g@outside.example', 'G', 'G')$$);

-- roles by media type: on-demand viewer only; live and room viewer, moderator, speaker
SELECT m, r, pg_temp.try(format($$SELECT invitetomedia.invite_create(%L, 'owner', 'r@outside.example', 'R', 'R', %L)$$, m, r))
  FROM unnest(ARRAY['vid', 'doc', 'live', 'room']) AS m,
       unnest(ARRAY['viewer', 'moderator', 'speaker']) AS r
 ORDER BY m, r;
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'r@outside.example', 'R', 'R', 'admin')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'r@outside.example', 'R', 'R', 'Viewer')$$);
DELETE FROM invitetomedia.invites WHERE email = 'r@outside.example';

-- malformed email addresses: 22023
SELECT left(e, 30) AS email, pg_temp.try(format($$SELECT invitetomedia.invite_create('live', 'owner', %L, 'E', 'E')$$, e))
  FROM unnest(ARRAY[
    '', '   ', 'plainaddress', '@outside.example', 'a@', 'a@@outside.example', 'a@b@outside.example',
    '"quoted"@outside.example', '"a b"@outside.example', '.a@outside.example', 'a.@outside.example',
    'a..b@outside.example', 'a b@outside.example', 'a(comment)@outside.example', 'a@outside',
    'a@-outside.example', 'a@outside-.example', 'a@outside..example', 'a@.outside.example',
    'a@outside.example.', 'a@outside_x.example', 'a@192.168.0.1', 'a@[192.168.0.1]',
    'jöhn@outside.example', 'a@bücher.example', 'a@exаmple.com',
    repeat('l', 65) || '@outside.example', 'a@' || repeat('d', 64) || '.example',
    'a@' || repeat('abcdefghi.', 25) || 'example']) AS e;
-- accepted: the usual forms, surrounding spaces trimmed, punycode domains
SELECT left(e, 30) AS email, pg_temp.try(format($$SELECT invitetomedia.invite_create('live', 'owner', %L, 'E', 'E')$$, e))
  FROM unnest(ARRAY[
    'first.last@outside.example', 'first+tag@outside.example', '  padded@outside.example  ',
    'o''brien@outside.example', 'x@xn--bcher-kva.example', 'UPPER@OUTSIDE.EXAMPLE',
    repeat('l', 64) || '@outside.example', 'a@b.co']) AS e;
SELECT email FROM invitetomedia.invites WHERE first_name = 'E' ORDER BY email;
DELETE FROM invitetomedia.invites WHERE first_name = 'E';

-- names: trimmed, not empty, at most 100 characters, no control characters
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', '', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', '   ')$$);
SELECT pg_temp.try(format($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', %L, 'N')$$, repeat('é', 101)));
SELECT pg_temp.try(format($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', %L, 'N')$$, repeat('é', 100)));
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', E'Eve\r\nBcc: all@outside.example', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', E'Tab\tName')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', E'Nul\u0085Line')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', E'\u202Eevil', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', E'Line\u2028Sep')$$);
-- control characters anywhere, ids and email included
SELECT pg_temp.try($$SELECT invitetomedia.invite_create(E'live\n', 'owner', 'n@outside.example', 'N', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', E'owner\r', 'n@outside.example', 'N', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', E'n@outside.example\r\nBcc: x@y.example', 'N', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', 'N', E'viewer\n')$$);
SELECT pg_temp.try(format($$SELECT invitetomedia.invite_create(%L, 'owner', 'n@outside.example', 'N', 'N')$$, repeat('m', 256)));
-- names with letters from everywhere are fine
SELECT count(*) FROM invitetomedia.invite_create('live', 'owner', 'n@outside.example', '  Zoë  ', 'Ångström-O''Neil 王');
SELECT first_name, last_name FROM invitetomedia.invites WHERE email = 'n@outside.example';
DELETE FROM invitetomedia.invites WHERE email = 'n@outside.example';

-- NULL for any argument: 22004
SELECT pg_temp.try($$SELECT invitetomedia.invite_create(NULL, 'owner', 'n@outside.example', 'N', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', NULL, 'n@outside.example', 'N', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', NULL, 'N', 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', NULL, 'N')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', NULL)$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', 'N', NULL)$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 'n@outside.example', 'N', 'N', 'viewer', NULL)$$);

-- new users from restricted domains (and their subdomains) may not be invited
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{university.edu}';
SELECT e, pg_temp.try(format($$SELECT invitetomedia.invite_create('live', 'owner', %L, 'D', 'D')$$, e))
  FROM unnest(ARRAY[
    'new@university.edu', 'NEW@University.EDU', 'new@cs.university.edu', 'new@a.b.university.edu',
    'new@notuniversity.edu', 'new@university.edu.evil.com', 'new@university.education',
    'existing.person@university.edu', 'EXISTING.PERSON@UNIVERSITY.EDU']) AS e;
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{}';
DELETE FROM invitetomedia.invites WHERE first_name = 'D';

-- every refusal above wrote nothing: only the first link (Guest@Outside.example) is left
SELECT pg_temp.rows();

-- send_email needs a template
SELECT pg_temp.try($$SELECT invitetomedia.invite_create('live', 'owner', 's@outside.example', 'S', 'S', 'viewer', true)$$);
INSERT INTO invitetomedia.email_templates VALUES ('invite',
    'You are invited to {MEDIA_TITLE} as {ROLE}',
    E'Hello {FIRST_NAME} {LAST_NAME} <{EMAIL}>,\n{INVITER_NAME} invites you: {URL}\nValid until {EXPIRES_AT}. {UNKNOWN} stays.');
UPDATE invitetomedia.settings SET invite_email_template = 'invite', link_base_url = 'https://media.example.com/i/';
SELECT * FROM invitetomedia.invite_create('live', 'coeditor', 's@outside.example', 'Zoë', '{URL} {EMAIL}', 'speaker', true) \gset
SELECT invite_id = :invite_id AS same_invite, to_email, to_name, subject,
       body = format(E'Hello Zoë {URL} {EMAIL} <s@outside.example>,\nCora Coeditor invites you: %s\nValid until %s. {UNKNOWN} stays.',
                     :'url', to_char(:'expires_at'::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')) AS body_as_expected,
       attempts, sent_at IS NULL AS unsent
  FROM invitetomedia.outbox;
-- without send_email, nothing is queued
SELECT count(*) FROM invitetomedia.invite_create('live', 'owner', 't@outside.example', 'T', 'T');
SELECT count(*) AS messages FROM invitetomedia.outbox;

-- max_uses and expires_at are fixed when the link is made
UPDATE invitetomedia.settings SET link_reusability = 3, link_duration = 60;
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'fixed@outside.example', 'F', 'F') \gset
UPDATE invitetomedia.settings SET link_reusability = -1, link_duration = 5;
SELECT max_uses, expires_at = :'expires_at' AS expiry_kept,
       expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS in_an_hour
  FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT max_uses FROM invitetomedia.invite_create('live', 'owner', 'unlimited@outside.example', 'U', 'U');

-- IP literals and comments: the hint says why
CREATE FUNCTION pg_temp.hint(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || h;
END
$$;
UPDATE invitetomedia.settings SET enabled = true;
SELECT e AS email, pg_temp.hint(format(
         'SELECT * FROM invitetomedia.invite_create(%L, %L, %L, %L, %L)', 'vid', 'owner', e, 'A', 'B')) AS refused
  FROM (VALUES ('a@[127.0.0.1]'), ('a@[IPv6:2001:db8::1]'), ('a@b.example (comment)'),
               ('(comment)a@b.example'), ('a@bücher.example')) v(e);
