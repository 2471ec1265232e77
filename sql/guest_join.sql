-- guest_link_join: tokens, statuses in order, clicks, rejoin, users, the
-- records of every attempt and the guest_joins view (1.1)
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;

-- what the tables hold, to show that a call wrote nothing
CREATE FUNCTION pg_temp.guest_rows() RETURNS text
LANGUAGE sql AS $$
    SELECT format('guest_link_joins=%s clicks=%s users=%s redemptions=%s',
        (SELECT count(*) FROM invitetomedia.guest_link_joins),
        (SELECT sum(clicks) FROM invitetomedia.guest_links),
        (SELECT count(*) FROM invitetomedia.users),
        (SELECT count(*) FROM invitetomedia.redemptions))
$$;

SELECT c.guest_link_id AS open_id, c.token AS open_token
  FROM invitetomedia.guest_link_create('live', 'owner', 'Webcast attendees') c \gset
SELECT c.invite_id, c.token AS invite_token
  FROM invitetomedia.invite_create('live', 'owner', 'invitee@outside.example', 'Ivo', 'Invitee') c \gset

------------------------------------------------------------------------------
-- tokens
------------------------------------------------------------------------------

-- a malformed, mistyped or invite token is not_found, every other column
-- NULL, and leaves no record
SELECT v.what, j.*
  FROM (VALUES ('empty', ''),
               ('prefix only', 'itg_'),
               ('too short', 'itg_short'),
               ('wrong prefix', 'abc_' || substr(:'open_token', 5)),
               ('the invite prefix', 'itm_' || substr(:'open_token', 5)),
               ('one character short', substr(:'open_token', 1, 51)),
               ('one character long', :'open_token' || 'A'),
               ('upper-cased', upper(:'open_token')),
               ('character outside the alphabet', overlay(:'open_token' placing '*' from 20 for 1)),
               ('one character changed (checksum)',
                overlay(:'open_token' placing (CASE WHEN substr(:'open_token', 30, 1) = 'A' THEN 'B' ELSE 'A' END) from 30 for 1)),
               ('leading space', ' ' || :'open_token'),
               ('trailing line feed', :'open_token' || E'\n'),
               ('an invite token', :'invite_token'),
               ('an invite token with the guest prefix', 'itg_' || substr(:'invite_token', 5))) AS v(what, t),
       LATERAL invitetomedia.guest_link_join(v.t, 'guest@outside.example', 'Gina', 'Guest', 'kiosk') j;
SELECT pg_temp.guest_rows();
-- and a guest token is not_found for invite_consume and invite_check (no record)
SELECT * FROM invitetomedia.invite_consume(:'open_token', 'guest@outside.example');
SELECT * FROM invitetomedia.invite_consume(:'open_token', 'invitee@outside.example', 'kiosk');
SELECT * FROM invitetomedia.invite_check(:'open_token');
SELECT status FROM invitetomedia.invite_consume('itm_' || substr(:'open_token', 5), 'invitee@outside.example');
SELECT status FROM invitetomedia.invite_check('itm_' || substr(:'open_token', 5));
SELECT pg_temp.guest_rows();
-- (the invite's token is a working one)
SELECT status FROM invitetomedia.invite_check(:'invite_token');

------------------------------------------------------------------------------
-- ok: role viewer, a guest and never a user (1.1.1; sql/guest_identity)
------------------------------------------------------------------------------

-- a new email: no user is created, user_id is NULL, join_id is the join's
-- record; an unlimited link that never expires returns clicks_left and
-- expires_at NULL
SELECT status, guest_link_id = :open_id AS same_link, media_id, role, user_id, clicks_left, expires_at,
       join_id IS NOT NULL AS has_join_id
  FROM invitetomedia.guest_link_join(:'open_token', '  Gina.Guest@Outside.EXAMPLE ', ' Gina ', 'Guest');
SELECT * FROM invitetomedia.users WHERE user_id = 'gina.guest@outside.example';
-- the record keeps what was claimed (trimmed), and no user
SELECT status, email, first_name, last_name, user_id FROM invitetomedia.guest_link_joins
 ORDER BY joined_at DESC LIMIT 1;
-- the same person again (another case): a join of its own
SELECT status, user_id FROM invitetomedia.guest_link_join(:'open_token', 'gina.guest@OUTSIDE.example', 'G.', 'G.');
-- the address of an existing user of the directory: a guest all the same,
-- the user untouched
SELECT status, user_id, role FROM invitetomedia.guest_link_join(:'open_token', 'EXISTING.person@university.EDU', 'Someone', 'Else');
SELECT user_id, email, first_name, last_name, role FROM invitetomedia.users WHERE user_id = 'existing';
SELECT count(*) AS users FROM invitetomedia.users;
-- a user_id that another address holds does not matter either (1.1 refused
-- this join with 23505: it tried to create the user)
INSERT INTO invitetomedia.users VALUES ('clash@outside.example', 'other@outside.example', 'O', 'O', 'viewer');
SELECT c.guest_link_id AS clash_id, c.token AS clash_token
  FROM invitetomedia.guest_link_create('room', 'owner', 'Clash', 5) c \gset
SELECT pg_temp.guest_rows();
SELECT status, user_id FROM invitetomedia.guest_link_join(:'clash_token', 'clash@outside.example', 'C', 'Lash');
SELECT pg_temp.guest_rows();

------------------------------------------------------------------------------
-- clicks: counted for click-limited links; rejoin takes none
------------------------------------------------------------------------------
SELECT c.guest_link_id AS two_id, c.token AS two_token, c.expires_at AS two_expires_at
  FROM invitetomedia.guest_link_create('live', 'owner', 'Two clicks', 2, 5) c \gset
SELECT status, guest_link_id = :two_id AS same_link, media_id, role, user_id, clicks_left,
       expires_at = :'two_expires_at' AS link_expiry
  FROM invitetomedia.guest_link_join(:'two_token', 'ann@outside.example', 'Ann', 'First', 'dev-a');
SELECT status, user_id, clicks_left FROM invitetomedia.guest_link_join(:'two_token', 'bob@outside.example', 'Bob', 'Second');
SELECT clicks, used_up_at IS NOT NULL AS used_up FROM invitetomedia.guest_links WHERE guest_link_id = :two_id;
-- no clicks left: exhausted, every other column NULL
SELECT * FROM invitetomedia.guest_link_join(:'two_token', 'cid@outside.example', 'Cid', 'Third', 'dev-c');
SELECT status FROM invitetomedia.guest_link_join(:'two_token', 'bob@outside.example', 'Bob', 'Second');
-- the device that joined rejoins after exhaustion, without a click
SELECT status, guest_link_id = :two_id AS same_link, media_id, role, user_id, clicks_left,
       expires_at = :'two_expires_at' AS link_expiry
  FROM invitetomedia.guest_link_join(:'two_token', 'ann@outside.example', 'Ann', 'First', 'dev-a');
-- a device that was only refused does not
SELECT status FROM invitetomedia.guest_link_join(:'two_token', 'cid@outside.example', 'Cid', 'Third', 'dev-c');
SELECT clicks FROM invitetomedia.guest_links WHERE guest_link_id = :two_id;
-- before exhaustion too: a rejoin leaves the click for someone else
SELECT c.guest_link_id AS three_id, c.token AS three_token
  FROM invitetomedia.guest_link_create('room', 'owner', 'Three clicks', 3) c \gset
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First', 'dev-x');
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First', 'dev-x');
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First', 'dev-x');
-- a device's join of another link counts there (dev-a joined Two clicks, not this one)
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First', 'dev-a');
-- without a device_id there is no rejoin
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First');
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First');
SELECT clicks, click_limit FROM invitetomedia.guest_links WHERE guest_link_id = :three_id;
-- an unlimited link: rejoin returns clicks_left NULL too
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'open_token', 'dan@outside.example', 'Dan', 'D', 'dev-d');
SELECT status, user_id, clicks_left, expires_at FROM invitetomedia.guest_link_join(:'open_token', 'dan@outside.example', 'Dan', 'D', 'dev-d');
-- the view counts an unlimited link's ok joins (not its rejoins); the row counts none
SELECT s.name, s.click_limit, s.clicks AS view_clicks, g.clicks AS row_clicks, s.state
  FROM invitetomedia.guest_link_status s JOIN invitetomedia.guest_links g USING (guest_link_id)
 ORDER BY s.created_at;

------------------------------------------------------------------------------
-- domain_restricted: every guest is judged as a new user (guest_allowed());
-- an address of a registered user answers as an unregistered one
------------------------------------------------------------------------------
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{university.edu}';
SELECT * FROM invitetomedia.guest_link_join(:'open_token', 'new@university.edu', 'New', 'Student');
SELECT status FROM invitetomedia.guest_link_join(:'open_token', ' Someone@CS.University.EDU', 'Sub', 'Domain');
SELECT status, user_id FROM invitetomedia.guest_link_join(:'open_token', 'existing.person@UNIVERSITY.edu', 'Erin', 'Existing');
SELECT status FROM invitetomedia.guest_link_join(:'open_token', 'visitor@university.education', 'Vis', 'Itor');
SELECT user_id FROM invitetomedia.users WHERE email ILIKE '%university.edu' ORDER BY user_id;

------------------------------------------------------------------------------
-- the order: not_found, disabled, revoked, expired, rejoin,
-- domain_restricted, exhausted, ok (first match wins)
------------------------------------------------------------------------------
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{closed.example}';
-- link A: joined by dev-o, then exhausted (click_limit 1)
SELECT c.guest_link_id AS a_id, c.token AS a_token FROM invitetomedia.guest_link_create('doc', 'owner', 'Order', 1, 30) c \gset
SELECT status FROM invitetomedia.guest_link_join(:'a_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
-- domain_restricted beats exhausted; exhausted for an existing user
SELECT status FROM invitetomedia.guest_link_join(:'a_token', 'new@closed.example', 'New', 'Closed');
SELECT status FROM invitetomedia.guest_link_join(:'a_token', 'viewer@media.example', 'Vera', 'Viewer');
-- rejoin beats domain_restricted and exhausted (the device's earlier join counts, whatever address it types now)
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'a_token', 'new@closed.example', 'New', 'Closed', 'dev-o');
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'a_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
-- expired beats rejoin and exhausted (the expiry instant itself counts)
UPDATE invitetomedia.guest_links SET expires_at = now() WHERE guest_link_id = :a_id;
SELECT * FROM invitetomedia.guest_link_join(:'a_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
SELECT status FROM invitetomedia.guest_link_join(:'a_token', 'new@closed.example', 'New', 'Closed');
-- revoked beats expired and rejoin
SELECT invitetomedia.guest_link_revoke(:a_id, 'owner') AS revoked;
SELECT * FROM invitetomedia.guest_link_join(:'a_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
-- revoked on a live link, and for the device that joined it
SELECT c.guest_link_id AS b_id, c.token AS b_token FROM invitetomedia.guest_link_create('doc', 'owner', 'Revoked') c \gset
SELECT status FROM invitetomedia.guest_link_join(:'b_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
SELECT invitetomedia.guest_link_revoke(:b_id, 'owner') AS revoked;
SELECT status FROM invitetomedia.guest_link_join(:'b_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
SELECT status FROM invitetomedia.guest_link_join(:'b_token', 'pat@outside.example', 'Pat', 'P');
-- disabled beats revoked and everything after it; not_found beats disabled (no record)
UPDATE invitetomedia.settings SET enabled = false;
SELECT * FROM invitetomedia.guest_link_join(:'b_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
SELECT status FROM invitetomedia.guest_link_join(:'a_token', 'olga@outside.example', 'Olga', 'O', 'dev-o');
SELECT status FROM invitetomedia.guest_link_join(:'three_token', 'ann@outside.example', 'Ann', 'First', 'dev-x');
SELECT status FROM invitetomedia.guest_link_join(:'open_token', 'eve@outside.example', 'Eve', 'E');
SELECT status FROM invitetomedia.guest_link_join(:'invite_token', 'eve@outside.example', 'Eve', 'E');
SELECT status FROM invitetomedia.guest_link_join('itg_' || substr(:'invite_token', 5), 'eve@outside.example', 'Eve', 'E');
SELECT clicks FROM invitetomedia.guest_links WHERE guest_link_id = :three_id;
UPDATE invitetomedia.settings SET enabled = true, restrict_new_user_domains = '{}';
SELECT status FROM invitetomedia.guest_link_join(:'open_token', 'eve@outside.example', 'Eve', 'E');

------------------------------------------------------------------------------
-- what the guest types: 22023 (NULLs 22004), nothing written
------------------------------------------------------------------------------
SELECT pg_temp.guest_rows();
SELECT v.what, pg_temp.try(format($$SELECT * FROM invitetomedia.guest_link_join(%L, %L, %L, %L, %L)$$,
                                  v.token, v.email, v.first_name, v.last_name, v.device_id)) AS try
  FROM (VALUES
    ('email: empty',               :'clash_token', '',                        'Fay', 'F', NULL),
    ('email: spaces',              :'clash_token', '   ',                     'Fay', 'F', NULL),
    ('email: no @',                :'clash_token', 'fay.outside.example',     'Fay', 'F', NULL),
    ('email: two @',               :'clash_token', 'fay@@outside.example',    'Fay', 'F', NULL),
    ('email: no domain',           :'clash_token', 'fay@',                    'Fay', 'F', NULL),
    ('email: space inside',        :'clash_token', 'f ay@outside.example',    'Fay', 'F', NULL),
    ('email: line feed',           :'clash_token', E'fay@outside.example\n',  'Fay', 'F', NULL),
    ('email: header injection',    :'clash_token', E'fay@outside.example\r\nBcc: x@evil.example', 'Fay', 'F', NULL),
    ('email: non-ASCII',           :'clash_token', 'fäy@outside.example',     'Fay', 'F', NULL),
    ('email: comment',             :'clash_token', 'fay(x)@outside.example',  'Fay', 'F', NULL),
    ('email: over-long',           :'clash_token', repeat('f', 300) || '@outside.example', 'Fay', 'F', NULL),
    ('first_name: empty',          :'clash_token', 'fay@outside.example',     '',    'F', NULL),
    ('first_name: spaces',         :'clash_token', 'fay@outside.example',     '   ', 'F', NULL),
    ('first_name: 101 characters', :'clash_token', 'fay@outside.example',     repeat('é', 101), 'F', NULL),
    ('first_name: line feed',      :'clash_token', 'fay@outside.example',     E'Fa\ny', 'F', NULL),
    ('first_name: bidi override',  :'clash_token', 'fay@outside.example',     E'Fa\u202Ey', 'F', NULL),
    ('last_name: empty',           :'clash_token', 'fay@outside.example',     'Fay', '',  NULL),
    ('last_name: 101 characters',  :'clash_token', 'fay@outside.example',     'Fay', repeat('l', 101), NULL),
    ('last_name: tab',             :'clash_token', 'fay@outside.example',     'Fay', E'F\t', NULL),
    ('device_id: control',         :'clash_token', 'fay@outside.example',     'Fay', 'F', E'dev\r\nice'),
    ('device_id: 256 bytes',       :'clash_token', 'fay@outside.example',     'Fay', 'F', repeat('d', 256)),
    ('bad email, unknown token',   'itg_nothing',  'fay.outside.example',     'Fay', 'F', NULL),
    ('bad name, revoked link',     :'b_token',     'fay@outside.example',     '',    'F', NULL)) AS v(what, token, email, first_name, last_name, device_id);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_join(NULL, 'fay@outside.example', 'Fay', 'F')$$);
SELECT pg_temp.try(format($$SELECT * FROM invitetomedia.guest_link_join(%L, NULL, 'Fay', 'F')$$, :'clash_token'));
SELECT pg_temp.try(format($$SELECT * FROM invitetomedia.guest_link_join(%L, 'fay@outside.example', NULL, 'F')$$, :'clash_token'));
SELECT pg_temp.try(format($$SELECT * FROM invitetomedia.guest_link_join(%L, 'fay@outside.example', 'Fay', NULL)$$, :'clash_token'));
SELECT pg_temp.guest_rows();
-- the longest names pass (100 characters, trimmed), as does a 255-byte device_id
SELECT status, clicks_left FROM invitetomedia.guest_link_join(:'clash_token', 'fay@outside.example',
       ' ' || repeat('é', 100) || ' ', repeat('l', 100), repeat('d', 255));
SELECT length(first_name) AS first_name_length, length(last_name) AS last_name_length, length(device_id) AS device_id_length
  FROM invitetomedia.guest_joins WHERE email = 'fay@outside.example';

------------------------------------------------------------------------------
-- the records: every attempt on a known link, with what the guest typed
------------------------------------------------------------------------------
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = 'invitetomedia' AND table_name = 'guest_joins' ORDER BY ordinal_position;
SELECT status, email, first_name, last_name, device_id, joined_at IS NOT NULL AS dated
  FROM invitetomedia.guest_joins WHERE guest_link_id = :two_id ORDER BY joined_at, status;
SELECT status, email, first_name, last_name, device_id
  FROM invitetomedia.guest_joins WHERE guest_link_id = :a_id ORDER BY joined_at, status;
SELECT status, email, first_name, last_name, device_id
  FROM invitetomedia.guest_joins WHERE guest_link_id = :open_id ORDER BY joined_at, status;
-- every status but not_found is recorded
SELECT status, count(*) FROM invitetomedia.guest_joins GROUP BY status ORDER BY status;
-- on every link, the ok records account for its clicks
SELECT count(*) AS links_out_of_balance
  FROM invitetomedia.guest_links g
 WHERE g.click_limit IS NOT NULL
   AND g.clicks <> (SELECT count(*) FROM invitetomedia.guest_link_joins j
                     WHERE j.guest_link_id = g.guest_link_id AND j.status = 'ok');
-- the users of the ok records, and of the rejoins (the device's user)
SELECT j.status, j.email, j.user_id
  FROM invitetomedia.guest_link_joins j
 WHERE j.guest_link_id IN (:two_id, :three_id) AND j.status IN ('ok', 'rejoin')
 ORDER BY j.joined_at;
