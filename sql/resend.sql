-- invite_resend (1.1): the same invite gets a new token; the old one answers
-- revoked at once; a new expiry from the current link_duration; uses,
-- records and the device history stay; the lockout counter resets; unsent
-- emails of the old token go, and with send_email a new one is queued.
\i sql/include/fixture.psql
INSERT INTO invitetomedia.email_templates
     VALUES ('invite', 'Invite from {INVITER_NAME}', 'Hello {FIRST_NAME}, {INVITER_NAME} invites you: {URL}');
UPDATE invitetomedia.settings
   SET enabled = true, link_reusability = 3, invite_email_template = 'invite';

-- the signature: send_email defaults to true
SELECT pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
  FROM pg_proc p WHERE p.oid = 'invitetomedia.invite_resend(bigint, text, boolean)'::regprocedure;

-- an invite with history: one use from a laptop, one wrong email, its email unsent
SELECT invite_id, token AS old_token, expires_at AS old_expires_at
  FROM invitetomedia.invite_create('live', 'coeditor', 'rosa@outside.example', 'Rosa', 'Send', 'speaker', true) \gset
SELECT status, uses_left FROM invitetomedia.invite_consume(:'old_token', 'rosa@outside.example', 'laptop');
SELECT status FROM invitetomedia.invite_consume(:'old_token', 'wrong@outside.example');
SELECT use_count, failed_attempts, max_uses FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT count(*) AS unsent_messages FROM invitetomedia.outbox WHERE invite_id = :invite_id AND sent_at IS NULL;

-- the resend, after link_duration changed from 1440 to 60 minutes: the new
-- expiry is now + 60 minutes (one transaction, so now() is the resend's)
UPDATE invitetomedia.settings SET link_duration = 60;
BEGIN;
SELECT * FROM invitetomedia.invite_resend(:invite_id, 'coeditor', false) \gset new_
SELECT :'new_token' <> :'old_token' AS token_is_new,
       left(:'new_token', 4) AS prefix, length(:'new_token') AS token_length,
       :'new_url' = 'http://localhost/invitetomedia/' || :'new_token' AS url_is_base_and_token,
       :'new_expires_at'::timestamptz = now() + interval '60 minutes' AS expires_now_plus_60_minutes,
       :'new_expires_at'::timestamptz < :'old_expires_at'::timestamptz AS earlier_than_the_old_expiry,
       :new_max_uses AS max_uses;
COMMIT;
-- use_count stays, the lockout counter is reset, the stored expiry is the returned one
SELECT use_count, failed_attempts, max_uses, expires_at = :'new_expires_at' AS stored_expiry
  FROM invitetomedia.invites WHERE invite_id = :invite_id;
-- the unsent message of the old token is gone; send_email false queues none
SELECT count(*) AS messages FROM invitetomedia.outbox WHERE invite_id = :invite_id;

-- the old token answers revoked at once, to the lobby and to a consume, with
-- every other column empty (even for the device that used it)
SELECT * FROM invitetomedia.invite_check(:'old_token');
SELECT * FROM invitetomedia.invite_consume(:'old_token', 'rosa@outside.example', 'laptop');
SELECT * FROM invitetomedia.invite_consume(:'old_token', 'rosa@outside.example');
-- a wrong email on the old token is revoked too, and counts nothing towards the lockout
SELECT status FROM invitetomedia.invite_consume(:'old_token', 'wrong@outside.example');
SELECT failed_attempts FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- the new token works: uses_left counts the use taken with the old one
SELECT status, media_id, media_title, role, uses_left, expires_at = :'new_expires_at' AS new_expiry, opens_at
  FROM invitetomedia.invite_check(:'new_token');
SELECT status, invite_id = :invite_id AS same_invite, media_id, role, user_id, first_name, last_name, uses_left,
       expires_at = :'new_expires_at' AS new_expiry
  FROM invitetomedia.invite_consume(:'new_token', 'rosa@outside.example');
-- the history stays: the laptop that joined with the old token rejoins with the new one
SELECT status, uses_left FROM invitetomedia.invite_consume(:'new_token', 'rosa@outside.example', 'laptop');
-- every attempt is recorded on the one invite: the old token's as revoked
SELECT status, device_id FROM invitetomedia.redemptions WHERE invite_id = :invite_id ORDER BY at;
SELECT use_count FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- a second resend retires the second token as well; the first stays revoked
SELECT token AS third_token FROM invitetomedia.invite_resend(:invite_id, 'coeditor', false) \gset
SELECT (SELECT status FROM invitetomedia.invite_check(:'old_token')) AS first_token,
       (SELECT status FROM invitetomedia.invite_check(:'new_token')) AS second_token,
       (SELECT status FROM invitetomedia.invite_check(:'third_token')) AS third_token;
SELECT count(*) AS retired_tokens FROM invitetomedia.retired_tokens WHERE invite_id = :invite_id;

-- send_email (the default): the message for the new link is queued and the
-- sender woken (NOTIFY invitetomedia_email with its message_id, as
-- invite_create does; see specs/notify.spec); the inviter named in it is
-- the invite's inviter, whoever resends
UPDATE invitetomedia.settings SET link_duration = 1440;
SELECT token AS mail_token, url AS mail_url FROM invitetomedia.invite_resend(:invite_id, 'owner') \gset
SELECT to_email, to_name, subject, body = 'Hello Rosa, Cora Coeditor invites you: ' || :'mail_url' AS body_has_new_link,
       position(:'third_token' in body) = 0 AS old_link_absent, sent_at IS NULL AS unsent
  FROM invitetomedia.outbox WHERE invite_id = :invite_id;
-- a sent message stays (its body already scrubbed); an unsent one is replaced
UPDATE invitetomedia.outbox SET sent_at = now(), body = NULL WHERE invite_id = :invite_id;
SELECT token AS mail_token2, url AS mail_url2 FROM invitetomedia.invite_resend(:invite_id, 'coeditor', true) \gset
SELECT sent_at IS NOT NULL AS sent, body IS NULL AS scrubbed,
       body = 'Hello Rosa, Cora Coeditor invites you: ' || :'mail_url2' AS body_has_new_link
  FROM invitetomedia.outbox WHERE invite_id = :invite_id ORDER BY created_at;
SELECT count(*) AS resent FROM invitetomedia.invite_resend(:invite_id, 'coeditor', false);
SELECT sent_at IS NOT NULL AS sent FROM invitetomedia.outbox WHERE invite_id = :invite_id ORDER BY created_at;

-- a scheduled invite: the new expiry counts from not_before, when later than now
UPDATE invitetomedia.settings SET link_duration = 90;
SELECT invite_id AS sched FROM invitetomedia.invite_create('live', 'owner', 'later@outside.example', 'La', 'Ter',
       not_before => now() + interval '2 days') \gset
SELECT expires_at AS sched_expires FROM invitetomedia.invite_resend(:sched, 'owner', false) \gset
SELECT :'sched_expires'::timestamptz = not_before + interval '90 minutes' AS expires_not_before_plus_90_minutes,
       not_before > now() + interval '47 hours' AS still_scheduled
  FROM invitetomedia.invites WHERE invite_id = :sched;
-- one whose not_before passed: from now again
SELECT invite_id AS opened FROM invitetomedia.invite_create('live', 'owner', 'opened@outside.example', 'O', 'Pen',
       not_before => now() + interval '1 hour') \gset
UPDATE invitetomedia.invites SET not_before = now() - interval '1 hour' WHERE invite_id = :opened;
BEGIN;
SELECT expires_at = now() + interval '90 minutes' AS expires_now_plus_90_minutes
  FROM invitetomedia.invite_resend(:opened, 'owner', false);
COMMIT;

-- re-invite after expiry: an expired invite gets a live link again
UPDATE invitetomedia.settings SET link_duration = 1440, link_reusability = 1;
SELECT invite_id AS exp_id, token AS exp_token FROM invitetomedia.invite_create('live', 'owner', 'late@outside.example', 'La', 'Te') \gset
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 day' WHERE invite_id = :exp_id;
SELECT status FROM invitetomedia.invite_check(:'exp_token');
SELECT token AS exp_token2 FROM invitetomedia.invite_resend(:exp_id, 'owner', false) \gset
SELECT status FROM invitetomedia.invite_check(:'exp_token');
SELECT status, expires_at > now() + interval '23 hours' AS a_day_ahead FROM invitetomedia.invite_check(:'exp_token2');
SELECT status FROM invitetomedia.invite_consume(:'exp_token2', 'late@outside.example');

-- who may: as for invite_revoke.  Refused: a user who may not invite to the
-- media (42501), an unknown user or invite (42704)
SELECT invite_id AS who, token AS who_token
  FROM invitetomedia.invite_create('live', 'coeditor', 'who@outside.example', 'W', 'Ho') \gset
SELECT u, regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :who, u)),
                         'invite \d+', 'invite N') AS try
  FROM unnest(ARRAY['stranger', 'coviewer', 'viewer', 'nobody']) AS u;
SELECT pg_temp.try('SELECT * FROM invitetomedia.invite_resend(999999, ''owner'', false)');
-- the refusals changed nothing: the token still works, nothing retired
SELECT status FROM invitetomedia.invite_check(:'who_token');
SELECT count(*) AS retired FROM invitetomedia.retired_tokens WHERE invite_id = :who;
-- allowed (1.1.1): whoever may invite to the media now (may_invite()), as
-- for a new invite: the inviter, the owner, co-owners and co-publishers,
-- and an unmoderated admin who co-owns it
SELECT u, (SELECT count(*) FROM invitetomedia.invite_resend(:who, u, false)) AS resent
  FROM unnest(ARRAY['coeditor', 'owner', 'coowner', 'copublisher', 'uadmin']) AS u;
SELECT count(*) AS retired FROM invitetomedia.retired_tokens WHERE invite_id = :who;
SELECT status FROM invitetomedia.invite_check(:'who_token');
-- an administrator who may not invite to the media (admin is only its
-- co_viewer) is refused (42501): a resend opens the link again.  1.1 let
-- administrators resend by their role alone.
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :who, 'admin')),
                      'invite \d+', 'invite N') AS admin_co_viewer;
SELECT invite_id AS vid_inv, token AS vid_token
  FROM invitetomedia.invite_create('vid', 'owner', 'v@outside.example', 'V', 'Id') \gset
SELECT u, invitetomedia.may_invite(u, 'vid') AS may_invite,
       regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :vid_inv, u)),
                      'invite \d+', 'invite N') AS try
  FROM unnest(ARRAY['admin', 'uadmin', 'coowner']) AS u;
SELECT status FROM invitetomedia.invite_check(:'vid_token');
-- issue 18, item 6: an inviter who lost the right to invite to the media
-- (removed as co_editor) can no longer open his expired link again: 1.1
-- let him, and the new token consumed ok.  Revoking it stays allowed.
SELECT invite_id AS gone_inv, token AS gone_token
  FROM invitetomedia.invite_create('live', 'coeditor', 'spk@outside.example', 'S', 'Peaker', 'speaker') \gset
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute' WHERE invite_id = :gone_inv;
DELETE FROM invitetomedia.media_collaborators WHERE media_id = 'live' AND user_id = 'coeditor';
SELECT invitetomedia.may_invite('coeditor', 'live') AS coeditor_may_invite;
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, true)', :gone_inv, 'coeditor')),
                      'invite \d+', 'invite N') AS resent_by_former_inviter;
SELECT status FROM invitetomedia.invite_consume(:'gone_token', 'spk@outside.example');
SELECT count(*) AS retired, (SELECT count(*) FROM invitetomedia.resends WHERE invite_id = :gone_inv) AS resends
  FROM invitetomedia.retired_tokens WHERE invite_id = :gone_inv;
SELECT invitetomedia.invite_revoke(:gone_inv, 'coeditor') AS revoked_by_former_inviter;
INSERT INTO invitetomedia.media_collaborators VALUES ('live', 'coeditor', 'co_editor');

-- a NULL media_id (NOT NULL dropped) names the column: no right to invite
-- to a media can be checked (the 1.1.1 rule crashed the server on it until
-- test/difffuzz found it)
SELECT invite_id AS nm FROM invitetomedia.invite_create('live', 'owner', 'nm@outside.example', 'N', 'M') \gset
ALTER TABLE invitetomedia.invites ALTER COLUMN media_id DROP NOT NULL;
UPDATE invitetomedia.invites SET media_id = NULL WHERE invite_id = :nm;
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :nm, 'owner')),
                      'invite \d+', 'invite N') AS null_media_id;
DELETE FROM invitetomedia.invites WHERE invite_id = :nm;
ALTER TABLE invitetomedia.invites ALTER COLUMN media_id SET NOT NULL;

-- issue 18, item 5: a resend that mails the link counts towards
-- settings.invites_per_hour like a new link (1.1 mailed one address 51
-- times under a limit of 1); one without email does not (no mail leaves).
-- Every resend is recorded in resends.
SELECT invite_id AS lim, token AS lim_token
  FROM invitetomedia.invite_create('live', 'copublisher', 'lim@outside.example', 'Li', 'Mit') \gset
SELECT invite_email_template IS NOT NULL AS a_template FROM invitetomedia.settings;
UPDATE invitetomedia.settings SET invites_per_hour = 2;
-- the create counted once: one mailed resend still fits, the next does not
SELECT count(*) AS mailed_once FROM invitetomedia.invite_resend(:lim, 'copublisher', true);
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, true)', :lim, 'copublisher')),
                      'invite \d+', 'invite N') AS mailed_twice;
-- refused whole: no new token, no message, no record
SELECT count(*) AS retired, (SELECT count(*) FROM invitetomedia.outbox WHERE invite_id = :lim) AS messages,
       (SELECT count(*) FROM invitetomedia.resends WHERE invite_id = :lim) AS resends
  FROM invitetomedia.retired_tokens WHERE invite_id = :lim;
-- without email: not limited, recorded
SELECT count(*) AS resent_without_email FROM invitetomedia.invite_resend(:lim, 'copublisher', false);
SELECT actor_id, emailed FROM invitetomedia.resends WHERE invite_id = :lim ORDER BY resent_at;
-- the mailed resend counts for a new invite too
SELECT regexp_replace(pg_temp.try($$SELECT * FROM invitetomedia.invite_create('live', 'copublisher', 'l2@outside.example', 'L', 'Two')$$),
                      'invite \d+', 'invite N') AS create_after_resends;
-- an hour later they no longer count
UPDATE invitetomedia.resends SET resent_at = resent_at - interval '61 minutes';
UPDATE invitetomedia.invites SET created_at = created_at - interval '61 minutes' WHERE invite_id = :lim;
SELECT count(*) AS mailed_after_an_hour FROM invitetomedia.invite_resend(:lim, 'copublisher', true);
UPDATE invitetomedia.settings SET invites_per_hour = 0;

-- refused with 55000, writing nothing: a revoked invite, an exhausted one,
-- send_email with no template; and while the module is disabled
SELECT invite_id AS rv, token AS rv_token FROM invitetomedia.invite_create('live', 'owner', 'rv@outside.example', 'R', 'V', 'viewer', true) \gset
SELECT invitetomedia.invite_revoke(:rv, 'owner');
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :rv, 'owner')),
                      'invite \d+', 'invite N') AS revoked;
SELECT status FROM invitetomedia.invite_check(:'rv_token');
SELECT invite_id AS ex, token AS ex_token FROM invitetomedia.invite_create('live', 'owner', 'ex@outside.example', 'E', 'X') \gset
SELECT status FROM invitetomedia.invite_consume(:'ex_token', 'ex@outside.example');
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :ex, 'owner')),
                      'invite \d+', 'invite N') AS exhausted;
SELECT status FROM invitetomedia.invite_check(:'ex_token');
-- an unlimited link never runs out: it may be resent after many uses
UPDATE invitetomedia.settings SET link_reusability = -1;
SELECT invite_id AS unl, token AS unl_token FROM invitetomedia.invite_create('vid', 'owner', 'unl@outside.example', 'U', 'Nl') \gset
SELECT status FROM invitetomedia.invite_consume(:'unl_token', 'unl@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'unl_token', 'unl@outside.example');
SELECT max_uses FROM invitetomedia.invite_resend(:unl, 'owner', false);
UPDATE invitetomedia.settings SET link_reusability = 1;

SELECT invite_id AS nt, token AS nt_token FROM invitetomedia.invite_create('live', 'owner', 'nt@outside.example', 'N', 'T', 'viewer', true) \gset
SELECT message_id AS nt_message FROM invitetomedia.outbox WHERE invite_id = :nt \gset
UPDATE invitetomedia.settings SET invite_email_template = NULL;
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L)', :nt, 'owner')),
                      'invite \d+', 'invite N') AS default_send_email_no_template;
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, true)', :nt, 'owner')),
                      'invite \d+', 'invite N') AS send_email_no_template;
-- nothing changed: the token works, its unsent message is still queued
SELECT status FROM invitetomedia.invite_check(:'nt_token');
SELECT message_id = :nt_message AS same_message FROM invitetomedia.outbox WHERE invite_id = :nt;
-- without send_email no template is needed; the old unsent message still goes
SELECT count(*) AS resent_without_email FROM invitetomedia.invite_resend(:nt, 'owner', false);
SELECT count(*) AS messages FROM invitetomedia.outbox WHERE invite_id = :nt;
-- disabled
UPDATE invitetomedia.settings SET enabled = false;
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, %L, false)', :nt, 'owner')),
                      'invite \d+', 'invite N') AS disabled;
-- the status order holds for a replaced token too: disabled comes before
-- revoked, as for any known link (recorded as disabled)
SELECT * FROM invitetomedia.invite_check(:'nt_token');
SELECT * FROM invitetomedia.invite_consume(:'nt_token', 'nt@outside.example');
SELECT status FROM invitetomedia.redemptions WHERE invite_id = :nt ORDER BY at;
UPDATE invitetomedia.settings SET enabled = true;

-- NULL arguments
SELECT pg_temp.try('SELECT * FROM invitetomedia.invite_resend(NULL, ''owner'', false)');
SELECT pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, NULL, false)', :nt));
SELECT pg_temp.try(format('SELECT * FROM invitetomedia.invite_resend(%s, ''owner'', NULL)', :nt));
