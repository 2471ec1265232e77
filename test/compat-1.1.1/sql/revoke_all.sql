-- invite_revoke_all (1.1): every unrevoked invite (and guest link) of one
-- media at once; returns how many it revoked now
\i sql/include/fixture.psql
INSERT INTO invitetomedia.email_templates VALUES ('invite', 'Invite', 'Open {URL}');
UPDATE invitetomedia.settings SET enabled = true, invite_email_template = 'invite';

SELECT pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
  FROM pg_proc p WHERE p.oid = 'invitetomedia.invite_revoke_all(text, text)'::regprocedure;

-- on live: two pending invites with unsent emails, one with its email sent,
-- one used up, one expired, one already revoked, one guest link; on vid and
-- doc: links that must stay
SELECT invite_id AS a1, token AS a1_token FROM invitetomedia.invite_create('live', 'owner', 'a1@outside.example', 'A', 'One', 'viewer', true) \gset
SELECT invite_id AS a2, token AS a2_token FROM invitetomedia.invite_create('live', 'coeditor', 'a2@outside.example', 'A', 'Two', 'speaker', true) \gset
SELECT invite_id AS a3 FROM invitetomedia.invite_create('live', 'owner', 'a3@outside.example', 'A', 'Three', 'viewer', true) \gset
UPDATE invitetomedia.outbox SET sent_at = now(), body = NULL WHERE invite_id = :a3;
SELECT invite_id AS used, token AS used_token FROM invitetomedia.invite_create('live', 'owner', 'used@outside.example', 'U', 'Sed') \gset
SELECT status FROM invitetomedia.invite_consume(:'used_token', 'used@outside.example');
SELECT invite_id AS expired FROM invitetomedia.invite_create('live', 'owner', 'exp@outside.example', 'E', 'Xp') \gset
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 day' WHERE invite_id = :expired;
SELECT invite_id AS before FROM invitetomedia.invite_create('live', 'owner', 'before@outside.example', 'B', 'Efore') \gset
SELECT invitetomedia.invite_revoke(:before, 'coowner') AS revoked_before;
UPDATE invitetomedia.invites SET revoked_at = '2020-01-01 00:00+00' WHERE invite_id = :before;
SELECT guest_link_id AS g1, token AS g1_token FROM invitetomedia.guest_link_create('live', 'owner', 'Audience') \gset
SELECT invite_id AS other, token AS other_token FROM invitetomedia.invite_create('vid', 'owner', 'other@outside.example', 'O', 'Ther', 'viewer', true) \gset
SELECT invite_id AS doc_inv FROM invitetomedia.invite_create('doc', 'owner', 'doc@outside.example', 'D', 'Oc') \gset
SELECT guest_link_id AS g_other FROM invitetomedia.guest_link_create('vid', 'owner', 'Other audience') \gset
SELECT count(*) AS unsent_on_live FROM invitetomedia.outbox o JOIN invitetomedia.invites i USING (invite_id)
 WHERE i.media_id = 'live' AND o.sent_at IS NULL;

-- five invites and one guest link were unrevoked: six revoked now; again: none
SELECT invitetomedia.invite_revoke_all('live', 'coeditor') AS revoked_now;
SELECT invitetomedia.invite_revoke_all('live', 'coeditor') AS revoked_again;
SELECT email, revoked_at IS NOT NULL AS revoked, revoked_by,
       revoked_at = '2020-01-01 00:00+00' AS kept_first_revocation
  FROM invitetomedia.invites WHERE media_id = 'live' ORDER BY invite_id;
SELECT name, revoked_at IS NOT NULL AS revoked, revoked_by FROM invitetomedia.guest_links
 WHERE media_id = 'live' ORDER BY guest_link_id;
-- their links answer revoked
SELECT (SELECT status FROM invitetomedia.invite_check(:'a1_token')) AS check_a1,
       (SELECT status FROM invitetomedia.invite_consume(:'a2_token', 'a2@outside.example')) AS consume_a2,
       (SELECT status FROM invitetomedia.guest_link_join(:'g1_token', 'g@outside.example', 'G', 'Uest')) AS join_g1;
-- unsent emails of the revoked invites are dropped; the sent one stays
SELECT i.email, o.sent_at IS NOT NULL AS sent
  FROM invitetomedia.outbox o JOIN invitetomedia.invites i USING (invite_id)
 ORDER BY o.message_id;
-- the other media's links are untouched
SELECT media_id, email, revoked_at IS NULL AS unrevoked FROM invitetomedia.invites
 WHERE media_id <> 'live' ORDER BY invite_id;
SELECT media_id, name, revoked_at IS NULL AS unrevoked FROM invitetomedia.guest_links
 WHERE media_id <> 'live' ORDER BY guest_link_id;
SELECT status FROM invitetomedia.invite_check(:'other_token');
-- a media with no links: 0
SELECT invitetomedia.invite_revoke_all('room', 'owner') AS revoked_on_room;

-- who may: whoever may invite to the media, and administrators.  Refused
-- calls revoke nothing.
SELECT count(*) AS made FROM invitetomedia.invite_create('live', 'owner', 'w1@outside.example', 'W', 'One');
SELECT u, pg_temp.try(format('SELECT invitetomedia.invite_revoke_all(%L, %L)', 'live', u)) AS try
  FROM unnest(ARRAY['stranger', 'coviewer', 'viewer', 'existing', 'nobody']) AS u;
SELECT count(*) AS still_unrevoked FROM invitetomedia.invites WHERE media_id = 'live' AND revoked_at IS NULL;
-- each allowed actor revokes a fresh invite (the owner's call also takes w1)
SELECT u, (SELECT invitetomedia.invite_revoke_all('live', u)
             FROM invitetomedia.invite_create('live', 'owner', u || '.victim@outside.example', 'V', 'Ictim') c) AS revoked_now
  FROM unnest(ARRAY['owner', 'coowner', 'coeditor', 'copublisher', 'admin', 'uadmin']) AS u;
-- administrators by role alone, with no part in the media (admin's call
-- takes vid's two invites and its guest link)
SELECT count(*) AS made FROM invitetomedia.invite_create('vid', 'owner', 'v2@outside.example', 'V', 'Two');
SELECT invitetomedia.invite_revoke_all('vid', 'admin') AS revoked_by_admin;
SELECT count(*) AS made FROM invitetomedia.invite_create('vid', 'owner', 'v3@outside.example', 'V', 'Three');
SELECT invitetomedia.invite_revoke_all('vid', 'uadmin') AS revoked_by_uadmin;
-- a collaborator of another media may not
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('vid', 'coowner')$$);
-- the inviter alone is not enough: revoke-all needs may_invite on the media
SELECT invite_id AS by_coeditor FROM invitetomedia.invite_create('live', 'coeditor', 'ce@outside.example', 'C', 'E') \gset
DELETE FROM invitetomedia.media_collaborators WHERE media_id = 'live' AND user_id = 'coeditor';
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('live', 'coeditor')$$);
INSERT INTO invitetomedia.media_collaborators VALUES ('live', 'coeditor', 'co_editor');
-- may_invite follows settings.allowed_users_roles: the owner (private_only)
-- may not once inviting takes an admin
UPDATE invitetomedia.settings SET allowed_users_roles = 'admin';
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('live', 'owner')$$);
UPDATE invitetomedia.settings SET allowed_users_roles = 'private_only';
SELECT revoked_at IS NULL AS still_unrevoked FROM invitetomedia.invites WHERE invite_id = :by_coeditor;

-- unknown media or actor: 42704; NULLs: 22004
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('nomedia', 'owner')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('nomedia', 'nobody')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('live', 'nobody')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all(NULL, 'owner')$$);
SELECT pg_temp.try($$SELECT invitetomedia.invite_revoke_all('live', NULL)$$);
SELECT revoked_at IS NULL AS still_unrevoked FROM invitetomedia.invites WHERE invite_id = :by_coeditor;

-- the revocations belong to the caller's transaction: rolled back, none stays
BEGIN;
SELECT invitetomedia.invite_revoke_all('live', 'owner') AS revoked_in_tx;
ROLLBACK;
SELECT revoked_at IS NULL AS still_unrevoked FROM invitetomedia.invites WHERE invite_id = :by_coeditor;
