-- invite_revoke and invite_purge
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;
INSERT INTO invitetomedia.email_templates VALUES ('invite', 'Invite', 'Open {URL}');
UPDATE invitetomedia.settings SET invite_email_template = 'invite';

SELECT * FROM invitetomedia.invite_create('live', 'coeditor', 'r1@outside.example', 'R', 'One', 'viewer', true) \gset
-- who may revoke: the inviter, anyone who may invite on the media, admins
SELECT u, regexp_replace(pg_temp.try(format('SELECT invitetomedia.invite_revoke(%s, %L)', :invite_id, u)), 'invite \d+', 'invite N') AS try
  FROM unnest(ARRAY['stranger', 'coviewer', 'viewer', 'nobody']) AS u;
SELECT revoked_at IS NULL AS still_active FROM invitetomedia.invites WHERE invite_id = :invite_id;
-- true when revoked now, false when it already was
SELECT invitetomedia.invite_revoke(:invite_id, 'coeditor') AS revoked_now;
SELECT invitetomedia.invite_revoke(:invite_id, 'coeditor') AS revoked_now;
SELECT revoked_by, revoked_at IS NOT NULL AS revoked FROM invitetomedia.invites WHERE invite_id = :invite_id;
-- its unsent email is dropped
SELECT count(*) AS queued_for_revoked FROM invitetomedia.outbox WHERE invite_id = :invite_id;
SELECT status FROM invitetomedia.invite_consume(:'token', 'r1@outside.example');

SELECT u, invitetomedia.invite_revoke(c.invite_id, u) AS revoked_now
  FROM unnest(ARRAY['owner', 'coowner', 'copublisher', 'admin', 'uadmin']) WITH ORDINALITY AS t(u, n),
       LATERAL invitetomedia.invite_create('live', 'coeditor', 'r' || n || '@outside.example', 'R', 'N') c;

-- a sent message stays (its body was already scrubbed); unsent ones go
SELECT * FROM invitetomedia.invite_create('live', 'owner', 'mixed@outside.example', 'M', 'X', 'viewer', true) \gset
INSERT INTO invitetomedia.outbox (invite_id, to_email, to_name, subject, body, sent_at)
     VALUES (:invite_id, 'mixed@outside.example', 'M X', 'Invite', NULL, now());
SELECT invitetomedia.invite_revoke(:invite_id, 'owner');
SELECT sent_at IS NOT NULL AS sent, body IS NULL AS scrubbed FROM invitetomedia.outbox WHERE invite_id = :invite_id;

-- unknown invite or actor, NULLs
SELECT pg_temp.try('SELECT invitetomedia.invite_revoke(999999, ''owner'')');
SELECT pg_temp.try(format('SELECT invitetomedia.invite_revoke(%s, NULL)', :invite_id));
SELECT pg_temp.try('SELECT invitetomedia.invite_revoke(NULL, ''owner'')');
SELECT pg_temp.try(format('SELECT invitetomedia.invite_revoke(%s, E''owner\n'')', :invite_id));

-- purge: links expired, used up or revoked longer ago than keep, with their records
TRUNCATE invitetomedia.invites, invitetomedia.redemptions, invitetomedia.outbox;
UPDATE invitetomedia.settings SET link_reusability = 1;
SELECT c.invite_id AS active FROM invitetomedia.invite_create('live', 'owner', 'active@outside.example', 'A', 'A') c \gset
SELECT c.invite_id AS old_expired FROM invitetomedia.invite_create('live', 'owner', 'oe@outside.example', 'A', 'A') c \gset
SELECT c.invite_id AS new_expired FROM invitetomedia.invite_create('live', 'owner', 'ne@outside.example', 'A', 'A') c \gset
SELECT c.invite_id AS old_revoked FROM invitetomedia.invite_create('live', 'owner', 'or@outside.example', 'A', 'A', 'viewer', true) c \gset
SELECT c.invite_id AS new_revoked FROM invitetomedia.invite_create('live', 'owner', 'nr@outside.example', 'A', 'A') c \gset
SELECT c.invite_id AS old_used, c.token AS old_used_token FROM invitetomedia.invite_create('live', 'owner', 'ou@outside.example', 'A', 'A') c \gset
SELECT c.invite_id AS new_used, c.token AS new_used_token FROM invitetomedia.invite_create('live', 'owner', 'nu@outside.example', 'A', 'A') c \gset
SELECT status FROM invitetomedia.invite_consume(:'old_used_token', 'ou@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'old_used_token', 'wrong@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'new_used_token', 'nu@outside.example');
UPDATE invitetomedia.invites SET expires_at = now() - interval '31 days', created_at = now() - interval '40 days' WHERE invite_id = :old_expired;
UPDATE invitetomedia.invites SET expires_at = now() - interval '29 days' WHERE invite_id = :new_expired;
UPDATE invitetomedia.invites SET revoked_at = now() - interval '31 days' WHERE invite_id = :old_revoked;
UPDATE invitetomedia.invites SET revoked_at = now() - interval '2 hours' WHERE invite_id = :new_revoked;
UPDATE invitetomedia.invites SET used_up_at = now() - interval '31 days' WHERE invite_id = :old_used;
SELECT invitetomedia.invite_purge() AS purged;
SELECT email FROM invitetomedia.invites ORDER BY invite_id;
SELECT count(*) AS orphan_redemptions FROM invitetomedia.redemptions r
 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i WHERE i.invite_id = r.invite_id);
SELECT count(*) AS orphan_messages FROM invitetomedia.outbox o
 WHERE NOT EXISTS (SELECT 1 FROM invitetomedia.invites i WHERE i.invite_id = o.invite_id);
SELECT invitetomedia.invite_purge() AS purged_again;
SELECT invitetomedia.invite_purge('1 day') AS purged_with_one_day;
SELECT invitetomedia.invite_purge('0') AS purged_with_zero;
SELECT email FROM invitetomedia.invites ORDER BY invite_id;
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge('-1 day')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge(NULL)$$);

-- a keep that only looks positive: interval comparison counts a month as
-- 30 days, so '-12 mons 361 days' compares above zero, yet now() minus it
-- is 4 or 5 days ahead (a year has 365 or 366): live links would go
SELECT '-12 mons 361 days'::interval > '0' AS compares_positive,
       now() - '-12 mons 361 days'::interval > now() AS cutoff_ahead;
UPDATE invitetomedia.settings SET enabled = true;
SELECT count(*) AS made FROM invitetomedia.invite_create('live', 'owner', 'live@outside.example', 'L', 'Ive');
SELECT count(*) AS links_before FROM invitetomedia.invites;
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge('-12 mons 361 days')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge('1 year -370 days')$$);
SELECT count(*) AS links_after FROM invitetomedia.invites;
-- a keep whose cutoff is not ahead is fine, months and all
SELECT invitetomedia.invite_purge('1 mon -20 days') AS purged_finished_only;
SELECT count(*) AS links_left FROM invitetomedia.invites;
