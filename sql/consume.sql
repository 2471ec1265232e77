-- invite_consume: statuses in order, atomic use, records, new users
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;

-- a malformed or forged token is not_found and leaves no record
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'Guest@Outside.example', 'Gina', 'Guest', 'moderator') \gset
SELECT v.what, c.status
  FROM (VALUES ('empty', ''),
               ('prefix only', 'itm_'),
               ('too short', 'itm_short'),
               ('wrong prefix', 'abc_' || substr(:'token', 5)),
               ('one character short', substr(:'token', 1, 51)),
               ('one character long', :'token' || 'A'),
               ('upper-cased', upper(:'token')),
               ('character outside the alphabet', overlay(:'token' placing '*' from 20 for 1)),
               ('one character changed (checksum)',
                overlay(:'token' placing (CASE WHEN substr(:'token', 30, 1) = 'A' THEN 'B' ELSE 'A' END) from 30 for 1)),
               ('leading space', ' ' || :'token')) AS v(what, t),
       LATERAL invitetomedia.invite_consume(v.t, 'guest@outside.example') c;
SELECT pg_temp.rows();

-- email_mismatch is recorded and consumes nothing
SELECT * FROM invitetomedia.invite_consume(:'token', 'someone@outside.example');
-- the email is compared case-insensitively and trimmed; ok fills every column
SELECT status, invite_id = :invite_id AS same_invite, media_id, role, user_id, first_name, last_name,
       uses_left, expires_at = :'expires_at' AS same_expiry
  FROM invitetomedia.invite_consume(:'token', '  GUEST@outside.EXAMPLE ');
-- single use: the second try is exhausted
SELECT * FROM invitetomedia.invite_consume(:'token', 'guest@outside.example');
-- the first ok created the user: id = lower-cased email, role anonymous, names from the invite
SELECT * FROM invitetomedia.users WHERE user_id = 'guest@outside.example';
SELECT status, device_id, user_id FROM invitetomedia.redemptions ORDER BY at;
SELECT use_count, used_up_at IS NOT NULL AS used_up FROM invitetomedia.invites;

-- an existing user (matched case-insensitively) is returned, not created again
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'EXISTING.person@university.EDU', 'Erin', 'E') \gset
SELECT status, user_id FROM invitetomedia.invite_consume(:'token', 'existing.person@university.edu');
SELECT count(*) AS users FROM invitetomedia.users;

-- a user_id taken by another address: the consume is refused whole
INSERT INTO invitetomedia.users VALUES ('clash@outside.example', 'other@outside.example', 'O', 'O', 'viewer');
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'clash@outside.example', 'C', 'C') \gset
SELECT pg_temp.try(format($$SELECT * FROM invitetomedia.invite_consume(%L, 'clash@outside.example')$$, :'token'));
SELECT use_count FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- N uses, then exhausted; uses_left counts down
UPDATE invitetomedia.settings SET link_reusability = 3;
SELECT * FROM invitetomedia.invite_create('room', 'owner', 'three@outside.example', 'Tri', 'Three', 'speaker') \gset
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'three@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'three@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'three@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'three@outside.example');
SELECT use_count, max_uses FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- unlimited links: uses_left is NULL
UPDATE invitetomedia.settings SET link_reusability = -1;
SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'many@outside.example', 'Max', 'Many') \gset
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'many@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'many@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'many@outside.example');
SELECT use_count, max_uses FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- rejoin: the same device again succeeds without taking a use, even when exhausted
UPDATE invitetomedia.settings SET link_reusability = 2;
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'dev@outside.example', 'Dev', 'Ice') \gset
SELECT status, uses_left, user_id FROM invitetomedia.invite_consume(:'token', 'dev@outside.example', 'laptop');
SELECT status, uses_left, user_id FROM invitetomedia.invite_consume(:'token', 'dev@outside.example', 'laptop');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'dev@outside.example', 'phone');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'dev@outside.example', 'tablet');
SELECT status, uses_left, media_id, role FROM invitetomedia.invite_consume(:'token', 'dev@outside.example', 'laptop');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'dev@outside.example');
-- a device that was only refused before does not rejoin
SELECT status FROM invitetomedia.invite_consume(:'token', 'dev@outside.example', 'tablet');
-- the wrong email on a known device is still a mismatch
SELECT status FROM invitetomedia.invite_consume(:'token', 'other@outside.example', 'laptop');
SELECT status, device_id FROM invitetomedia.redemptions WHERE invite_id = :invite_id ORDER BY at;
SELECT use_count FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- revoked, expired, disabled; first match wins
UPDATE invitetomedia.settings SET link_reusability = 1;
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'order@outside.example', 'O', 'R') \gset
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute' WHERE invite_id = :invite_id;
SELECT status FROM invitetomedia.invite_consume(:'token', 'order@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong@outside.example');
UPDATE invitetomedia.invites SET revoked_at = now() WHERE invite_id = :invite_id;
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong@outside.example');
UPDATE invitetomedia.settings SET enabled = false;
SELECT * FROM invitetomedia.invite_consume(:'token', 'wrong@outside.example', 'kiosk');
-- disabled still says not_found for a token that does not exist
SELECT status FROM invitetomedia.invite_consume('itm_nothing', 'order@outside.example');
UPDATE invitetomedia.settings SET enabled = true;
-- a used-up link whose email does not match reports the mismatch first
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'last@outside.example', 'L', 'Ast') \gset
SELECT status FROM invitetomedia.invite_consume(:'token', 'last@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'token', 'last@outside.example');
-- the expiry instant itself counts as expired
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'edge@outside.example', 'E', 'Dge') \gset
UPDATE invitetomedia.invites SET expires_at = now() WHERE invite_id = :invite_id;
SELECT status FROM invitetomedia.invite_consume(:'token', 'edge@outside.example');

-- every refused attempt on a known link is recorded with its status and device
SELECT status, count(*) FROM invitetomedia.redemptions GROUP BY status ORDER BY status;
-- and use_count equals the ok records of each link
SELECT count(*) AS links_out_of_balance
  FROM invitetomedia.invites i
 WHERE i.use_count <> (SELECT count(*) FROM invitetomedia.redemptions r
                        WHERE r.invite_id = i.invite_id AND r.status = 'ok');

-- bad arguments
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_consume(NULL, 'a@outside.example')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_consume('itm_x', NULL)$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_consume('itm_x', 'a@outside.example', E'dev\r\nice')$$);
SELECT pg_temp.try(format($$SELECT * FROM invitetomedia.invite_consume('itm_x', 'a@outside.example', %L)$$, repeat('d', 256)));
-- an absurd email is just a mismatch
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'big@outside.example', 'B', 'Ig') \gset
SELECT status FROM invitetomedia.invite_consume(:'token', repeat('x', 1000000));
SELECT status FROM invitetomedia.invite_consume(:'token', E'big@outside.example\n');
SELECT status FROM invitetomedia.invite_consume(:'token', 'big@outside.example');
