-- Scheduled links (1.1): invite_create's not_before; not_yet from
-- invite_consume and invite_check; invite_check's opens_at
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true, link_duration = 120, link_reusability = 2;

-- the signatures: not_before is invite_create's last parameter, opens_at
-- invite_check's last column
SELECT pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
  FROM pg_proc p
 WHERE p.oid = 'invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz)'::regprocedure;
SELECT pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
  FROM pg_proc p WHERE p.oid = 'invitetomedia.invite_check(text)'::regprocedure;
SELECT count(*) AS invite_create_forms FROM pg_proc
 WHERE proname = 'invite_create' AND pronamespace = 'invitetomedia'::regnamespace;

-- named: opens in two days; the link lasts link_duration (120 minutes) from then
SELECT invite_id, token, expires_at FROM invitetomedia.invite_create('live', 'owner', 'sched@outside.example', 'Sche', 'Duled', 'speaker',
       not_before => now() + interval '2 days') \gset
SELECT not_before > now() + interval '47 hours' AS two_days_ahead,
       expires_at = not_before + interval '120 minutes' AS expires_not_before_plus_120_minutes,
       expires_at = :'expires_at' AS returned_expiry
  FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT not_before AS opens FROM invitetomedia.invites WHERE invite_id = :invite_id \gset

-- invite_check: not_yet, with the columns filled as for ok (the lobby's
-- countdown); opens_at = not_before
SELECT status, media_id, media_title, role, expires_at = :'expires_at' AS same_expiry, uses_left,
       opens_at = :'opens'::timestamptz AS opens_at_is_not_before
  FROM invitetomedia.invite_check(:'token');
-- invite_consume: not_yet, every other column empty; nothing used, even by
-- a wrong email, which is not_yet too (and counts nothing towards the lockout)
SELECT * FROM invitetomedia.invite_consume(:'token', 'sched@outside.example');
SELECT * FROM invitetomedia.invite_consume(:'token', 'sched@outside.example', 'laptop');
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong@outside.example');
SELECT use_count, failed_attempts, last_used_at FROM invitetomedia.invites WHERE invite_id = :invite_id;
-- each attempt is recorded as not_yet; no user was created
SELECT status, device_id FROM invitetomedia.redemptions WHERE invite_id = :invite_id ORDER BY redemption_id;
SELECT count(*) AS users FROM invitetomedia.users WHERE user_id = 'sched@outside.example';

-- once not_before has passed (moved back here as the table's owner), it works
UPDATE invitetomedia.invites SET not_before = now() - interval '1 minute' WHERE invite_id = :invite_id;
SELECT status, uses_left, opens_at < now() AS opened FROM invitetomedia.invite_check(:'token');
SELECT status, role, user_id, uses_left FROM invitetomedia.invite_consume(:'token', 'sched@outside.example', 'laptop');
SELECT status FROM invitetomedia.invite_consume(:'token', 'sched@outside.example', 'laptop');

-- positional: the eighth argument
SELECT invite_id AS pos, token AS pos_token FROM invitetomedia.invite_create('vid', 'owner', 'pos@outside.example', 'P', 'Os', 'viewer', false,
       now() + interval '3 hours') \gset
SELECT not_before > now() + interval '2 hours' AS scheduled, expires_at = not_before + interval '120 minutes' AS from_not_before
  FROM invitetomedia.invites WHERE invite_id = :pos;
SELECT status, opens_at > now() AS opens_later FROM invitetomedia.invite_check(:'pos_token');

-- the 1.0 call forms still work, and open at once (not_before NULL)
BEGIN;
SELECT invite_id AS seven, token AS seven_token, expires_at AS seven_expires
  FROM invitetomedia.invite_create('vid', 'owner', 'seven@outside.example', 'Se', 'Ven', 'viewer', false) \gset
SELECT not_before IS NULL AS opens_now, expires_at = now() + interval '120 minutes' AS from_now
  FROM invitetomedia.invites WHERE invite_id = :seven;
COMMIT;
SELECT count(*) AS five_arguments FROM invitetomedia.invite_create('vid', 'owner', 'five@outside.example', 'Fi', 'Ve');
SELECT count(*) AS six_arguments FROM invitetomedia.invite_create('live', 'owner', 'six@outside.example', 'Si', 'X', 'moderator');
SELECT count(*) AS explicit_null FROM invitetomedia.invite_create('vid', 'owner', 'null@outside.example', 'Nu', 'Ll', not_before => NULL);
SELECT status, opens_at FROM invitetomedia.invite_check(:'seven_token');
SELECT status FROM invitetomedia.invite_consume(:'seven_token', 'seven@outside.example');

-- a not_before in the past counts as now: stored as NULL, the expiry from
-- now, usable at once
BEGIN;
SELECT invite_id AS past, token AS past_token, expires_at AS past_expires
  FROM invitetomedia.invite_create('vid', 'owner', 'past@outside.example', 'Pa', 'St',
       not_before => now() - interval '3 days') \gset
SELECT :'past_expires'::timestamptz = now() + interval '120 minutes' AS expires_from_now;
COMMIT;
SELECT not_before IS NULL AS stored_as_null FROM invitetomedia.invites WHERE invite_id = :past;
SELECT status, opens_at FROM invitetomedia.invite_check(:'past_token');
SELECT status FROM invitetomedia.invite_consume(:'past_token', 'past@outside.example');
-- now itself counts as now
BEGIN;
SELECT invite_id AS at_now FROM invitetomedia.invite_create('vid', 'owner', 'now@outside.example', 'N', 'Ow', not_before => now()) \gset
SELECT not_before IS NULL AS stored_as_null, expires_at = now() + interval '120 minutes' AS from_now
  FROM invitetomedia.invites WHERE invite_id = :at_now;
COMMIT;

-- infinite times are refused with 22023, writing nothing
SELECT pg_temp.rows() AS before;
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'inf@outside.example', 'I', 'Nf', not_before => 'infinity')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'inf@outside.example', 'I', 'Nf', 'viewer', false, '-infinity')$$);
SELECT pg_temp.rows() AS after;

-- scheduled with send_email: the message is queued at once (the invitee
-- gets the link ahead of the session)
INSERT INTO invitetomedia.email_templates VALUES ('invite', 'Invite', 'Open {URL} until {EXPIRES_AT}');
UPDATE invitetomedia.settings SET invite_email_template = 'invite';
SELECT invite_id AS mailed FROM invitetomedia.invite_create('live', 'owner', 'mailed@outside.example', 'Ma', 'Iled', 'viewer', true,
       now() + interval '1 day') \gset
SELECT count(*) AS queued FROM invitetomedia.outbox WHERE invite_id = :mailed;

-- other refusals keep 1.0's empty columns, opens_at included
SELECT invite_id AS rv, token AS rv_token FROM invitetomedia.invite_create('live', 'owner', 'rv@outside.example', 'R', 'V',
       not_before => now() + interval '1 day') \gset
SELECT invitetomedia.invite_revoke(:rv, 'owner');
SELECT * FROM invitetomedia.invite_check(:'rv_token');
SELECT * FROM invitetomedia.invite_consume(:'rv_token', 'rv@outside.example');
-- a scheduled link whose expiry has passed is expired, not not_yet
SELECT invite_id AS ex, token AS ex_token FROM invitetomedia.invite_create('live', 'owner', 'ex@outside.example', 'E', 'X',
       not_before => now() + interval '1 day') \gset
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute' WHERE invite_id = :ex;
SELECT * FROM invitetomedia.invite_check(:'ex_token');
SELECT status FROM invitetomedia.invite_consume(:'ex_token', 'ex@outside.example');
-- and disabled comes first
UPDATE invitetomedia.settings SET enabled = false;
SELECT * FROM invitetomedia.invite_check(:'pos_token');
SELECT status FROM invitetomedia.invite_consume(:'pos_token', 'pos@outside.example');
UPDATE invitetomedia.settings SET enabled = true;
