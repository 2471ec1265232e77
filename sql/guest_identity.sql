-- issue 18, part A: a guest link is not a login (1.1.1).  Each block is a
-- reproduction of the second security review of 1.1, which answered
-- otherwise; each is run with the join's two ways: without a device (the
-- table access method, itm_direct.c, where it can) and with one (SQL).
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;

-- the directory as a fingerprint: any change to any user shows
CREATE FUNCTION pg_temp.users_fp() RETURNS text
LANGUAGE sql AS $$
    SELECT count(*) || ' users, ' ||
           md5(string_agg(u::text, '|' ORDER BY u.user_id))
      FROM invitetomedia.users u
$$;
SELECT pg_temp.users_fp() AS before \gset
SELECT c.token AS open_token FROM invitetomedia.guest_link_create('live', 'owner', 'Open') c \gset
SELECT c.token AS full_token FROM invitetomedia.guest_link_create('live', 'owner', 'One click', 1) c \gset

------------------------------------------------------------------------------
-- 1. a guest becomes nobody: 1.1 answered ok with user_id = admin for
--    'ADMIN@media.example', and the lobby signed that user for the platform
------------------------------------------------------------------------------
CREATE TEMP TABLE admin_joins AS
SELECT v.device, j.*
  FROM (VALUES (NULL), ('dev-mallory')) AS v(device),
       LATERAL invitetomedia.guest_link_join(:'open_token', 'ADMIN@media.example', 'Mallory', 'Evil', v.device) j;
SELECT device, status, user_id, role, join_id IS NOT NULL AS has_join_id FROM admin_joins ORDER BY device NULLS FIRST;
-- join_id names the join's record: what was claimed, and no user
SELECT a.device, g.status, g.email, g.first_name, g.last_name, g.user_id
  FROM admin_joins a JOIN invitetomedia.guest_link_joins g USING (join_id)
 ORDER BY a.device NULLS FIRST;
-- the device rejoins as the same guest (its first ok join), still no user
SELECT status, user_id,
       join_id = (SELECT min(g.join_id) FROM invitetomedia.guest_link_joins g
                   WHERE g.device_id = 'dev-mallory' AND g.status = 'ok') AS same_guest
  FROM invitetomedia.guest_link_join(:'open_token', 'admin@media.example', 'Mallory', 'Evil', 'dev-mallory');
-- every join wrote its record and no user
SELECT status, count(*), count(user_id) AS with_user FROM invitetomedia.guest_link_joins GROUP BY 1 ORDER BY 1;
SELECT pg_temp.users_fp() = :'before' AS users_unchanged;

------------------------------------------------------------------------------
-- 2. no registration oracle: the answer to a join does not depend on
--    whether the address has an account.  1.1, on a restricted domain:
--    registered -> ok (exhausted on a full link), unregistered ->
--    domain_restricted; elsewhere the returned user_id told.
------------------------------------------------------------------------------
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{university.edu}';
-- the fixture's user 'existing' is Existing.Person@University.edu
SELECT v.who, d.device, j.status, j.user_id, j.clicks_left
  FROM (VALUES ('registered', 'existing.person@university.edu'),
               ('unregistered', 'nobody.here@university.edu')) AS v(who, email),
       (VALUES (NULL), ('dev-oracle')) AS d(device),
       (VALUES (:'open_token'), (:'full_token')) AS t(token),
       LATERAL invitetomedia.guest_link_join(t.token, v.email, 'Pro', 'Be', d.device) j
 ORDER BY t.token = :'full_token', d.device NULLS FIRST, v.who;
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{}';
-- elsewhere: the same columns whoever has the address (join_id aside)
SELECT v.who, j.status, j.user_id, j.role, j.clicks_left
  FROM (VALUES ('registered', 'viewer@media.example'),
               ('unregistered', 'not.a.user@media.example')) AS v(who, email),
       LATERAL invitetomedia.guest_link_join(:'open_token', v.email, 'Pro', 'Be') j
 ORDER BY v.who;
-- the full one-click link: exhausted for both, after one guest took it
SELECT status FROM invitetomedia.guest_link_join(:'full_token', 'first@outside.example', 'Fi', 'Rst');
SELECT v.who, j.status, j.user_id
  FROM (VALUES ('registered', 'viewer@media.example'),
               ('unregistered', 'not.a.user@media.example')) AS v(who, email),
       LATERAL invitetomedia.guest_link_join(:'full_token', v.email, 'Pro', 'Be') j
 ORDER BY v.who;
SELECT pg_temp.users_fp() = :'before' AS users_unchanged;

------------------------------------------------------------------------------
-- 3. no squatting: 1.1 created an anonymous user for the address a guest
--    typed, and the README's directory sync then failed on
--    users_email_lower_key when the real person signed up.  1.1.1 creates
--    none; the anonymous users 1.1 (or an invite, which proves the
--    address) created give way to the sign-up (the README's recipe,
--    t/070_readme_recipes.pl runs it as written).
------------------------------------------------------------------------------
SELECT status, user_id FROM invitetomedia.guest_link_join(:'open_token', 'Future.Customer@outside.example', 'Fu', 'Ture');
SELECT count(*) AS users_for_future_customer FROM invitetomedia.users
 WHERE lower(email COLLATE "C") = 'future.customer@outside.example';
-- what 1.1 left behind: an anonymous user keyed by the address
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
VALUES ('squat@outside.example', 'Squat@Outside.example', 'Sq', 'Uat', 'anonymous');
-- the sync's first statement: the anonymous user gives the address up ...
DELETE FROM invitetomedia.users
 WHERE lower(email COLLATE "C") = lower('squat@outside.example' COLLATE "C")
   AND role = 'anonymous' AND user_id <> 'sq-42';
-- ... and the sign-up's row goes in (2.0: users' key is (tenant_id,
-- user_id), tenant_id filled with the role's tenant)
INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
VALUES ('sq-42', 'squat@outside.example', 'Real', 'Person', 'viewer')
ON CONFLICT (tenant_id, user_id) DO UPDATE SET email = EXCLUDED.email;
SELECT user_id, email, role FROM invitetomedia.users WHERE lower(email COLLATE "C") = 'squat@outside.example';
