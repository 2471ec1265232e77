-- Rate limit per inviter (1.1): settings.invites_per_hour counts the invite
-- and guest links one actor created in the last hour; beyond it 53400.
-- (Concurrent creations: specs/ for the race.)
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;

-- the setting: integer, default 0 (no limit), negative or NULL refused with
-- 23514 and a message naming it
SELECT column_name, data_type, column_default, is_nullable FROM information_schema.columns
 WHERE table_schema = 'invitetomedia' AND table_name = 'settings' AND column_name = 'invites_per_hour';
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invites_per_hour = -1$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invites_per_hour = -2147483648$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invites_per_hour = NULL$$);
SELECT invites_per_hour FROM invitetomedia.settings;
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invites_per_hour = 1$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invites_per_hour = 2147483647$$);
UPDATE invitetomedia.settings SET invites_per_hour = 0;

-- 0: no limit
SELECT count(*) AS made FROM generate_series(1, 25) n,
       LATERAL invitetomedia.invite_create('vid', 'owner', 'bulk' || n || '@outside.example', 'B', n::text) c;
SELECT count(*) AS made FROM invitetomedia.guest_link_create('vid', 'owner', 'Bulk audience');

-- a limit of 3, after the 26 links above: refused at once
UPDATE invitetomedia.settings SET invites_per_hour = 3;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'owner', 'x@outside.example', 'X', 'X')$$);
-- those links were made more than an hour ago: they no longer count
UPDATE invitetomedia.invites SET created_at = now() - interval '61 minutes' WHERE invited_by = 'owner';
UPDATE invitetomedia.guest_links SET created_at = now() - interval '61 minutes' WHERE created_by = 'owner';

-- invite and guest links count together, on any media: three pass, the
-- fourth is refused whichever kind it is
SELECT invite_id AS first_invite FROM invitetomedia.invite_create('live', 'owner', 'r1@outside.example', 'R', 'One') \gset
SELECT count(*) AS made FROM invitetomedia.guest_link_create('live', 'owner', 'Audience');
-- (the 1.0 call forms count, and are limited, the same way)
SELECT count(*) AS made FROM invitetomedia.invite_create('room', 'owner', 'r3@outside.example', 'R', 'Three', 'speaker', false);
SELECT pg_temp.rows() AS before_refusals;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'owner', 'r4@outside.example', 'R', 'Four', 'viewer', false)$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('doc', 'owner', 'r4@outside.example', 'R', 'Four', 'viewer', false, now() + interval '1 day')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('doc', 'owner', 'Readers')$$);
-- refusals write nothing (and are not counted)
SELECT pg_temp.rows() AS after_refusals;
SELECT count(*) AS guest_links FROM invitetomedia.guest_links WHERE created_by = 'owner';

-- other actors are not affected; each has a limit of its own
SELECT count(*) AS by_coowner FROM generate_series(1, 3) n,
       LATERAL invitetomedia.invite_create('live', 'coowner', 'co' || n || '@outside.example', 'C', n::text);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('live', 'coowner', 'Fourth by coowner')$$);
SELECT count(*) AS by_coeditor FROM invitetomedia.invite_create('live', 'coeditor', 'ce@outside.example', 'C', 'E');

-- creations count, not live links: revoking one gives no room
SELECT invitetomedia.invite_revoke(:first_invite, 'owner') AS revoked;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'owner', 'r5@outside.example', 'R', 'Five')$$);

-- the window is the last hour: a link made 59 minutes ago counts, one made
-- 61 minutes ago does not
UPDATE invitetomedia.invites SET created_at = now() - interval '59 minutes' WHERE invite_id = :first_invite;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'owner', 'r5@outside.example', 'R', 'Five')$$);
UPDATE invitetomedia.invites SET created_at = now() - interval '61 minutes' WHERE invite_id = :first_invite;
SELECT count(*) AS made FROM invitetomedia.invite_create('live', 'owner', 'r5@outside.example', 'R', 'Five');
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'owner', 'r6@outside.example', 'R', 'Six')$$);
-- the same for guest links
UPDATE invitetomedia.guest_links SET created_at = now() - interval '59 minutes' WHERE created_by = 'owner' AND media_id = 'live';
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('doc', 'owner', 'Readers')$$);
UPDATE invitetomedia.guest_links SET created_at = now() - interval '61 minutes' WHERE created_by = 'owner' AND media_id = 'live';
SELECT count(*) AS made FROM invitetomedia.guest_link_create('doc', 'owner', 'Readers');
SELECT pg_temp.try($$SELECT * FROM invitetomedia.guest_link_create('doc', 'owner', 'More readers')$$);

-- a change of the setting applies at once: 5 leaves room for two more; 0 lifts it
UPDATE invitetomedia.settings SET invites_per_hour = 5;
SELECT count(*) AS made FROM generate_series(1, 2) n,
       LATERAL invitetomedia.invite_create('live', 'owner', 'more' || n || '@outside.example', 'M', n::text);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'owner', 'more3@outside.example', 'M', '3')$$);
UPDATE invitetomedia.settings SET invites_per_hour = 0;
SELECT count(*) AS made FROM generate_series(1, 10) n,
       LATERAL invitetomedia.invite_create('live', 'owner', 'free' || n || '@outside.example', 'F', n::text);
