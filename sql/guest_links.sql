-- guest_link_create, guest_link_revoke, and guest links in invite_revoke_all,
-- invite_purge, the guest_link_status view and the privileges (1.1)
\i sql/include/fixture.psql

-- what the guest tables hold, to show that a refused call wrote nothing
CREATE FUNCTION pg_temp.guest_rows() RETURNS text
LANGUAGE sql AS $$
    SELECT format('guest_links=%s guest_link_joins=%s invites=%s users=%s',
        (SELECT count(*) FROM invitetomedia.guest_links),
        (SELECT count(*) FROM invitetomedia.guest_link_joins),
        (SELECT count(*) FROM invitetomedia.invites),
        (SELECT count(*) FROM invitetomedia.users))
$$;
-- try_undone(sql): as try(), but a call that succeeds is rolled back, so
-- that probing who may create leaves no link behind (and takes no slot)
CREATE FUNCTION pg_temp.try_undone(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RAISE EXCEPTION 'undone' USING ERRCODE = 'ZZ001';
EXCEPTION
    WHEN SQLSTATE 'ZZ001' THEN RETURN 'ok';
    WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- the links this file made, with what guest_link_create returned
CREATE TEMP TABLE made (label text PRIMARY KEY, guest_link_id bigint, token text,
                        url text, expires_at timestamptz, made_at timestamptz DEFAULT now());

------------------------------------------------------------------------------
-- guest_link_create
------------------------------------------------------------------------------

-- disabled: 55000, nothing written
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', 'Webcast attendees')$$);
SELECT pg_temp.guest_rows();
UPDATE invitetomedia.settings SET enabled = true;

-- who may create: exactly those who may invite (the rule of invite_create,
-- may_invite), for each setting of allowed_users_roles
CREATE FUNCTION pg_temp.who_may(media text)
RETURNS TABLE(user_id text, may_invite boolean, guest_link_create text, invite_create text)
LANGUAGE sql AS $$
    SELECT u.user_id, invitetomedia.may_invite(u.user_id, media),
           left(pg_temp.try_undone(format(
               'SELECT * FROM invitetomedia.guest_link_create(%L, %L, ''Probe'')', media, u.user_id)), 5),
           left(pg_temp.try_undone(format(
               'SELECT * FROM invitetomedia.invite_create(%L, %L, ''probe@outside.example'', ''P'', ''Robe'')', media, u.user_id)), 5)
      FROM invitetomedia.users u ORDER BY u.user_id
$$;
SELECT * FROM pg_temp.who_may('live');
UPDATE invitetomedia.settings SET allowed_users_roles = 'admin';
SELECT * FROM pg_temp.who_may('live');
UPDATE invitetomedia.settings SET allowed_users_roles = 'unmoderated_admin';
SELECT * FROM pg_temp.who_may('live');
UPDATE invitetomedia.settings SET allowed_users_roles = 'specific';
INSERT INTO invitetomedia.allowed_users VALUES ('user', 'copublisher'), ('group', 'speakers');
SELECT * FROM pg_temp.who_may('live');
UPDATE invitetomedia.settings SET allowed_users_roles = 'private_only';
DELETE FROM invitetomedia.allowed_users;
SELECT * FROM pg_temp.who_may('vvid');
-- the refusal in full
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'coviewer', 'Webcast attendees')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('vid', 'coowner', 'Webcast attendees')$$);
-- unknown media or actor: 42704
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('nothing', 'owner', 'Webcast attendees')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'nobody', 'Webcast attendees')$$);
-- NULL media_id, actor_id or name: 22004
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create(NULL, 'owner', 'Webcast attendees')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', NULL, 'Webcast attendees')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', NULL)$$);
-- the name: 1..200 characters after trimming, no control characters: 22023
SELECT v.what, pg_temp.try_undone(format($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', %L)$$, v.name)) AS try
  FROM (VALUES ('empty', ''),
               ('spaces only', '   '),
               ('201 characters', repeat('n', 201)),
               ('201 characters, two bytes each', repeat('é', 201)),
               ('line feed', E'Webcast\nattendees'),
               ('tab', E'Webcast\tattendees'),
               ('carriage return', E'Webcast attendees\r'),
               ('zero-width space', E'Webcast\u200battendees'),
               ('200 characters', repeat('n', 200)),
               ('200 characters, two bytes each', repeat('é', 200)),
               ('200 characters and spaces around', '  ' || repeat('n', 200) || '  '),
               ('one character', 'x')) AS v(what, name);
-- click_limit at least 1, valid_days 1..365: 22023
SELECT v.click_limit, v.valid_days,
       pg_temp.try_undone(format($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', 'Limits', %s, %s)$$,
                                 coalesce(v.click_limit::text, 'NULL'), coalesce(v.valid_days::text, 'NULL'))) AS try
  FROM (VALUES (0, NULL), (-1, NULL), (-2147483648, NULL),
               (NULL, 0), (NULL, -1), (NULL, 366), (NULL, 2147483647),
               (1, NULL), (2147483647, NULL), (NULL, 1), (NULL, 365), (1, 1)) AS v(click_limit, valid_days);
-- none of the refusals above wrote anything
SELECT pg_temp.guest_rows();

-- what it returns: the id, the token (once), url = link_base_url || token,
-- expires_at NULL without valid_days, else now() + valid_days days
INSERT INTO made SELECT 'open', c.* FROM invitetomedia.guest_link_create('live', 'coeditor', '  Webcast attendees  ') c;
INSERT INTO made SELECT 'week', c.* FROM invitetomedia.guest_link_create('live', 'owner', 'Press', 2, 7) c;
UPDATE invitetomedia.settings SET link_base_url = 'https://media.example/join?token=';
INSERT INTO made SELECT 'year', c.* FROM invitetomedia.guest_link_create('vid', 'owner', 'Partners', NULL, 365) c;
UPDATE invitetomedia.settings SET link_base_url = 'http://localhost/invitetomedia/';
SELECT label,
       token ~ '^itg_[A-Za-z0-9_-]{48}$' AS guest_token,
       length(token) AS token_length,
       CASE label WHEN 'year' THEN url = 'https://media.example/join?token=' || token
                  ELSE url = 'http://localhost/invitetomedia/' || token END AS url_is_base_and_token,
       expires_at IS NULL AS never_expires,
       expires_at = made_at + make_interval(days => CASE label WHEN 'week' THEN 7 WHEN 'year' THEN 365 END) AS now_plus_days
  FROM made ORDER BY made_at, label;
SELECT count(DISTINCT token) AS distinct_tokens FROM made;
-- stored: the token's SHA-256 only, the name trimmed, no clicks yet
SELECT m.label, g.media_id, g.name, g.created_by, g.click_limit, g.clicks,
       g.expires_at IS NOT DISTINCT FROM m.expires_at AS same_expiry,
       g.token_hash = digest(m.token, 'sha256') AS hash_of_token,
       g.created_at = m.made_at AS created_now,
       g.used_up_at IS NULL AND g.revoked_at IS NULL AS live
  FROM invitetomedia.guest_links g JOIN made m USING (guest_link_id)
 ORDER BY g.created_at, g.name;
SELECT count(*) AS rows_holding_a_token
  FROM invitetomedia.guest_links g, made m
 WHERE strpos(g::text, m.token) > 0 OR strpos(g::text, substr(m.token, 5)) > 0;

-- at most three usable links per media: the fourth is refused (54000), writing nothing
INSERT INTO made SELECT 'third', c.* FROM invitetomedia.guest_link_create('live', 'owner', 'Speakers', 1) c;
SELECT pg_temp.guest_rows();
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', 'Fourth')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'coowner', 'Fourth', 10, 1)$$);
SELECT pg_temp.guest_rows();
-- per media: another media has its own three
SELECT pg_temp.try_undone($$SELECT * FROM invitetomedia.guest_link_create('vid', 'owner', 'Second of vid')$$);
-- a revoked link frees its slot
SELECT invitetomedia.guest_link_revoke(guest_link_id, 'owner') AS revoked FROM made WHERE label = 'open';
INSERT INTO made SELECT 'after_revoke', c.* FROM invitetomedia.guest_link_create('live', 'owner', 'After a revoke') c;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', 'Fourth')$$);
-- an expired link frees its slot (the expiry instant itself counts as expired)
UPDATE invitetomedia.guest_links SET expires_at = now()
 WHERE guest_link_id = (SELECT guest_link_id FROM made WHERE label = 'week');
INSERT INTO made SELECT 'after_expiry', c.* FROM invitetomedia.guest_link_create('live', 'owner', 'After an expiry') c;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', 'Fourth')$$);
-- an exhausted link frees its slot
SELECT token AS third_token FROM made WHERE label = 'third' \gset
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'third_token', 'one@outside.example', 'One', 'Click');
INSERT INTO made SELECT 'after_exhaustion', c.* FROM invitetomedia.guest_link_create('live', 'owner', 'After the last click') c;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'owner', 'Fourth')$$);
-- the links of live now
SELECT g.name, s.state FROM invitetomedia.guest_link_status s JOIN invitetomedia.guest_links g USING (guest_link_id)
 WHERE g.media_id = 'live' ORDER BY g.created_at, g.name;

------------------------------------------------------------------------------
-- guest_link_revoke: the rules and errors of invite_revoke
------------------------------------------------------------------------------
TRUNCATE invitetomedia.guest_links;
SELECT c.guest_link_id AS gl FROM invitetomedia.guest_link_create('live', 'coeditor', 'Revoke me') c \gset
-- not permitted (42501), unknown actor or link (42704): nothing changes
SELECT u, regexp_replace(pg_temp.try(format('SELECT invitetomedia.guest_link_revoke(%s, %L)', :gl, u)), 'link \d+', 'link N') AS try
  FROM unnest(ARRAY['stranger', 'coviewer', 'viewer', 'nobody']) AS u;
SELECT pg_temp.try('SELECT invitetomedia.guest_link_revoke(999999, ''owner'')');
SELECT revoked_at IS NULL AS still_active FROM invitetomedia.guest_links WHERE guest_link_id = :gl;
-- NULLs: 22004; an actor_id no id may be: 22023, as for invite_revoke
SELECT pg_temp.try(format('SELECT invitetomedia.guest_link_revoke(%s, NULL)', :gl));
SELECT pg_temp.try('SELECT invitetomedia.guest_link_revoke(NULL, ''owner'')');
SELECT left(pg_temp.try(format('SELECT invitetomedia.guest_link_revoke(%s, E''owner\n'')', :gl)), 5) AS control_character;
SELECT left(pg_temp.try(format('SELECT invitetomedia.guest_link_revoke(%s, %L)', :gl, repeat('o', 256))), 5) AS over_256_bytes;
SELECT left(pg_temp.try(format('SELECT invitetomedia.invite_revoke(%s, E''owner\n'')', c.invite_id)), 5) AS invite_revoke_control_character,
       left(pg_temp.try(format('SELECT invitetomedia.invite_revoke(%s, %L)', c.invite_id, repeat('o', 256))), 5) AS invite_revoke_over_256_bytes
  FROM invitetomedia.invite_create('live', 'owner', 'rv@outside.example', 'R', 'V') c;
SELECT revoked_at IS NULL AS still_active FROM invitetomedia.guest_links WHERE guest_link_id = :gl;
-- the creator: true when revoked now, false when it already was
SELECT invitetomedia.guest_link_revoke(:gl, 'coeditor') AS revoked_now;
SELECT invitetomedia.guest_link_revoke(:gl, 'coeditor') AS revoked_now;
SELECT revoked_by, revoked_at IS NOT NULL AS revoked FROM invitetomedia.guest_links WHERE guest_link_id = :gl;
-- anyone who may invite to the media, and administrators (also without
-- any right on the media: 'alive' is the admin's own, uadmin has no part in it)
SELECT u, invitetomedia.guest_link_revoke(c.guest_link_id, u) AS revoked_now,
       invitetomedia.guest_link_revoke(c.guest_link_id, u) AS revoked_again
  FROM unnest(ARRAY['owner', 'coowner', 'copublisher']) AS u,
       LATERAL invitetomedia.guest_link_create('live', 'coeditor', 'By ' || u) c;
SELECT u, invitetomedia.guest_link_revoke(c.guest_link_id, u) AS revoked_now
  FROM unnest(ARRAY['admin', 'uadmin']) AS u,
       LATERAL invitetomedia.guest_link_create('alive', 'admin', 'By ' || u) c;
-- the creator still may when it no longer may invite; a co-owner who left may not
SELECT c.guest_link_id AS gl FROM invitetomedia.guest_link_create('live', 'coowner', 'Left') c \gset
DELETE FROM invitetomedia.media_collaborators WHERE media_id = 'live' AND user_id IN ('coowner', 'coeditor');
SELECT c.guest_link_id AS gl2 FROM invitetomedia.guest_link_create('live', 'owner', 'Owner''s') c \gset
SELECT regexp_replace(pg_temp.try(format('SELECT invitetomedia.guest_link_revoke(%s, ''coeditor'')', :gl2)), 'link \d+', 'link N') AS try;
SELECT invitetomedia.guest_link_revoke(:gl, 'coowner') AS revoked_by_creator;
INSERT INTO invitetomedia.media_collaborators (media_id, user_id, permission) VALUES
    ('live', 'coowner', 'co_owner'), ('live', 'coeditor', 'co_editor');
SELECT g.name, g.created_by, g.revoked_by FROM invitetomedia.guest_links g ORDER BY g.created_at, g.name;

------------------------------------------------------------------------------
-- invite_revoke_all: guest links too
------------------------------------------------------------------------------
TRUNCATE invitetomedia.guest_links, invitetomedia.invites;
SELECT c.guest_link_id AS ra_open, c.token AS ra_open_token FROM invitetomedia.guest_link_create('live', 'owner', 'Open') c \gset
SELECT c.guest_link_id AS ra_limited, c.token AS ra_limited_token FROM invitetomedia.guest_link_create('live', 'coeditor', 'Limited', 5, 30) c \gset
SELECT c.guest_link_id AS ra_done FROM invitetomedia.guest_link_create('live', 'owner', 'Revoked before') c \gset
SELECT invitetomedia.guest_link_revoke(:ra_done, 'owner');
SELECT c.guest_link_id AS ra_other FROM invitetomedia.guest_link_create('vid', 'owner', 'Another media') c \gset
SELECT count(*) AS invites FROM invitetomedia.invite_create('live', 'owner', 'ra1@outside.example', 'R', 'A');
SELECT status FROM invitetomedia.guest_link_join(:'ra_limited_token', 'early@outside.example', 'E', 'Arly');
-- refused: nothing revoked
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('live', 'coviewer')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('live', 'nobody')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('nothing', 'owner')$$);
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS unrevoked_guest_links FROM invitetomedia.guest_links;
-- one invite and two guest links revoked now; the one revoked before and the other media's stay as they were
SELECT invitetomedia.invite_revoke_all('live', 'copublisher') AS revoked_now;
SELECT g.name, g.media_id, g.revoked_by, g.revoked_at IS NOT NULL AS revoked
  FROM invitetomedia.guest_links g ORDER BY g.created_at, g.name;
SELECT invitetomedia.invite_revoke_all('live', 'copublisher') AS revoked_again;
SELECT status FROM invitetomedia.guest_link_join(:'ra_open_token', 'late@outside.example', 'L', 'Ate');
SELECT status FROM invitetomedia.guest_link_join(:'ra_limited_token', 'late@outside.example', 'L', 'Ate');
-- an administrator with no part in the media
SELECT count(*) FROM invitetomedia.guest_link_create('vid', 'owner', 'Second of vid');
SELECT invitetomedia.invite_revoke_all('vid', 'uadmin') AS revoked_by_uadmin;

------------------------------------------------------------------------------
-- guest_link_status: states and clicks
------------------------------------------------------------------------------
TRUNCATE invitetomedia.guest_links, invitetomedia.invites;
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = 'invitetomedia' AND table_name = 'guest_link_status' ORDER BY ordinal_position;
SELECT c.guest_link_id AS st_open, c.token AS st_open_token FROM invitetomedia.guest_link_create('live', 'owner', 'Open') c \gset
SELECT c.guest_link_id AS st_limited, c.token AS st_limited_token FROM invitetomedia.guest_link_create('live', 'owner', 'Limited', 3, 10) c \gset
SELECT c.guest_link_id AS st_one, c.token AS st_one_token FROM invitetomedia.guest_link_create('live', 'owner', 'One click', 1) c \gset
-- two ok, a rejoin (no click) and a refusal on the unlimited link; one ok on the limited one
SELECT status FROM invitetomedia.guest_link_join(:'st_open_token', 's1@outside.example', 'S', 'One', 'dev-1');
SELECT status FROM invitetomedia.guest_link_join(:'st_open_token', 's2@outside.example', 'S', 'Two');
SELECT status FROM invitetomedia.guest_link_join(:'st_open_token', 's1@outside.example', 'S', 'One', 'dev-1');
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{closed.example}';
SELECT status FROM invitetomedia.guest_link_join(:'st_open_token', 's3@closed.example', 'S', 'Three');
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{}';
SELECT status FROM invitetomedia.guest_link_join(:'st_limited_token', 's1@outside.example', 'S', 'One');
SELECT status FROM invitetomedia.guest_link_join(:'st_one_token', 's1@outside.example', 'S', 'One');
SELECT guest_link_id = :st_open AS is_open, media_id, name, created_by,
       expires_at = created_at + interval '10 days' AS ten_days, click_limit, clicks, state
  FROM invitetomedia.guest_link_status ORDER BY created_at, name;
-- expired (the instant itself), revoked; revoked beats expired, expired beats exhausted
SELECT c.guest_link_id AS st_x1 FROM invitetomedia.guest_link_create('vid', 'owner', 'Expired') c \gset
SELECT c.guest_link_id AS st_x2 FROM invitetomedia.guest_link_create('vid', 'owner', 'Revoked and expired') c \gset
SELECT c.guest_link_id AS st_x3 FROM invitetomedia.guest_link_create('doc', 'owner', 'Revoked') c \gset
UPDATE invitetomedia.guest_links SET expires_at = now() WHERE guest_link_id = :st_x1;
UPDATE invitetomedia.guest_links SET expires_at = now() - interval '1 day' WHERE guest_link_id IN (:st_x2, :st_one);
SELECT invitetomedia.guest_link_revoke(:st_x2, 'owner'), invitetomedia.guest_link_revoke(:st_x3, 'owner');
SELECT name, click_limit, clicks, state FROM invitetomedia.guest_link_status ORDER BY created_at, name;

------------------------------------------------------------------------------
-- invite_purge: finished guest links and their joins
------------------------------------------------------------------------------
TRUNCATE invitetomedia.guest_links, invitetomedia.invites;
SELECT c.guest_link_id AS p_active, c.token AS p_active_token FROM invitetomedia.guest_link_create('live', 'owner', 'Active') c \gset
SELECT c.guest_link_id AS p_old_expired, c.token AS p_old_expired_token FROM invitetomedia.guest_link_create('live', 'owner', 'Expired long ago') c \gset
SELECT c.guest_link_id AS p_new_expired FROM invitetomedia.guest_link_create('live', 'owner', 'Expired lately') c \gset
SELECT c.guest_link_id AS p_old_revoked, c.token AS p_old_revoked_token FROM invitetomedia.guest_link_create('vid', 'owner', 'Revoked long ago') c \gset
SELECT c.guest_link_id AS p_new_revoked FROM invitetomedia.guest_link_create('vid', 'owner', 'Revoked lately') c \gset
SELECT c.guest_link_id AS p_old_used, c.token AS p_old_used_token FROM invitetomedia.guest_link_create('vid', 'owner', 'Used up long ago', 1) c \gset
SELECT c.guest_link_id AS p_new_used, c.token AS p_new_used_token FROM invitetomedia.guest_link_create('doc', 'owner', 'Used up lately', 1) c \gset
SELECT c.invite_id AS p_invite FROM invitetomedia.invite_create('doc', 'owner', 'pi@outside.example', 'P', 'I') c \gset
SELECT status FROM invitetomedia.guest_link_join(:'p_active_token', 'pa@outside.example', 'P', 'A');
SELECT status FROM invitetomedia.guest_link_join(:'p_old_expired_token', 'pe@outside.example', 'P', 'E');
SELECT status FROM invitetomedia.guest_link_join(:'p_old_revoked_token', 'pr@outside.example', 'P', 'R');
SELECT status FROM invitetomedia.guest_link_join(:'p_old_used_token', 'pu@outside.example', 'P', 'U');
SELECT status FROM invitetomedia.guest_link_join(:'p_old_used_token', 'pu2@outside.example', 'P', 'U');
SELECT status FROM invitetomedia.guest_link_join(:'p_new_used_token', 'pn@outside.example', 'P', 'N');
UPDATE invitetomedia.guest_links SET expires_at = now() - interval '31 days', created_at = now() - interval '40 days' WHERE guest_link_id = :p_old_expired;
UPDATE invitetomedia.guest_links SET expires_at = now() - interval '29 days' WHERE guest_link_id = :p_new_expired;
UPDATE invitetomedia.guest_links SET revoked_at = now() - interval '31 days' WHERE guest_link_id = :p_old_revoked;
UPDATE invitetomedia.guest_links SET revoked_at = now() - interval '2 hours' WHERE guest_link_id = :p_new_revoked;
UPDATE invitetomedia.guest_links SET used_up_at = now() - interval '31 days' WHERE guest_link_id = :p_old_used;
UPDATE invitetomedia.invites SET expires_at = now() - interval '31 days' WHERE invite_id = :p_invite;
SELECT g.name, count(j.join_id) AS joins FROM invitetomedia.guest_links g
  LEFT JOIN invitetomedia.guest_link_joins j USING (guest_link_id) GROUP BY g.guest_link_id, g.name ORDER BY g.name;
-- three guest links and one invite finished more than 30 days ago
SELECT invitetomedia.invite_purge() AS purged;
SELECT g.name, count(j.join_id) AS joins FROM invitetomedia.guest_links g
  LEFT JOIN invitetomedia.guest_link_joins j USING (guest_link_id) GROUP BY g.guest_link_id, g.name ORDER BY g.name;
SELECT count(*) AS orphan_joins FROM invitetomedia.guest_link_joins j
 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.guest_links g WHERE g.guest_link_id = j.guest_link_id);
-- a purged link's token is not_found now, and leaves no record
SELECT * FROM invitetomedia.guest_link_join(:'p_old_revoked_token', 'pr@outside.example', 'P', 'R');
SELECT count(*) AS joins FROM invitetomedia.guest_link_joins WHERE guest_link_id = :p_old_revoked;
SELECT invitetomedia.invite_purge() AS purged_again;
-- keep '0': every finished link goes; one that never expires and has no click limit
-- stays while unrevoked, however old
UPDATE invitetomedia.guest_links SET created_at = now() - interval '10 years' WHERE guest_link_id = :p_active;
SELECT invitetomedia.invite_purge('0') AS purged_with_zero;
SELECT name, state FROM invitetomedia.guest_link_status ORDER BY created_at, name;

------------------------------------------------------------------------------
-- privileges: nothing of guest links for PUBLIC
------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_itm_guest_usage, regress_itm_guest_owner;
RESET client_min_messages;
CREATE ROLE regress_itm_guest_usage;
CREATE ROLE regress_itm_guest_owner;
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_guest_usage, regress_itm_guest_owner;
-- the owner-facing grant of the README: the views, not the tables
GRANT SELECT ON invitetomedia.guest_link_status, invitetomedia.guest_joins TO regress_itm_guest_owner;
SELECT p.oid::regprocedure AS function, has_function_privilege('regress_itm_guest_usage', p.oid, 'EXECUTE') AS usage_role_may,
       EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public_may
  FROM pg_proc p
 WHERE p.pronamespace = 'invitetomedia'::regnamespace
   AND p.proname IN ('guest_link_create', 'guest_link_join', 'guest_link_revoke', 'guest_links_cleanup')
 ORDER BY 1::text;
-- (2.0 draws the ids: the one sequence of guest links left is the relay's)
SELECT c.relname, c.relkind, has_table_privilege('regress_itm_guest_usage', c.oid, 'SELECT') AS usage_role_may_read,
       EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0) AS public_has_a_grant
  FROM pg_class c
 WHERE c.relnamespace = 'invitetomedia'::regnamespace
   AND c.relname IN ('guest_links', 'guest_link_joins', 'guest_link_status', 'guest_joins',
                     'guest_link_joins_event_seq')
 ORDER BY c.relname;
SELECT c.guest_link_id AS priv_gl, c.token AS priv_token FROM invitetomedia.guest_link_create('room', 'owner', 'Privileges') c \gset
SELECT status FROM invitetomedia.guest_link_join(:'priv_token', 'priv@outside.example', 'P', 'Riv');
SET ROLE regress_itm_guest_usage;
SELECT what, pg_temp.try(sql) FROM (VALUES
    ('guest_link_create', $$SELECT * FROM invitetomedia.guest_link_create('room', 'owner', 'Mine')$$),
    ('guest_link_join', format($$SELECT * FROM invitetomedia.guest_link_join(%L, 'u@outside.example', 'U', 'Sage')$$, :'priv_token')),
    ('guest_link_revoke', format($$SELECT invitetomedia.guest_link_revoke(%s, 'owner')$$, :priv_gl)),
    ('read guest_link_status', 'SELECT count(*) FROM invitetomedia.guest_link_status'),
    ('read guest_joins', 'SELECT count(*) FROM invitetomedia.guest_joins'),
    ('read guest_links', 'SELECT count(*) FROM invitetomedia.guest_links'),
    ('read guest_link_joins', 'SELECT count(*) FROM invitetomedia.guest_link_joins'),
    ('write guest_links', $$UPDATE invitetomedia.guest_links SET revoked_at = NULL$$),
    ('next join event number', $$SELECT nextval('invitetomedia.guest_link_joins_event_seq')$$)) AS t(what, sql);
RESET ROLE;
SET ROLE regress_itm_guest_owner;
SELECT name, clicks, state FROM invitetomedia.guest_link_status WHERE guest_link_id = :priv_gl;
SELECT status, email FROM invitetomedia.guest_joins WHERE guest_link_id = :priv_gl;
SELECT what, pg_temp.try(sql) FROM (VALUES
    ('read guest_links', 'SELECT count(*) FROM invitetomedia.guest_links'),
    ('read guest_link_joins', 'SELECT count(*) FROM invitetomedia.guest_link_joins'),
    ('guest_link_join', format($$SELECT * FROM invitetomedia.guest_link_join(%L, 'u@outside.example', 'U', 'Sage')$$, :'priv_token'))) AS t(what, sql);
RESET ROLE;
SELECT pg_temp.guest_rows();
DROP OWNED BY regress_itm_guest_usage, regress_itm_guest_owner;
DROP ROLE regress_itm_guest_usage, regress_itm_guest_owner;
