-- Lockout (1.1): after settings.lockout_attempts wrong emails an invite
-- answers locked until invite_resend; and invite_consume's full status order
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;

-- the setting (2.0: a column of the site, which the settings view shows):
-- integer, default 5 (0 = never lock), negative or NULL refused
-- with 23514 and a message naming it
SELECT column_name, data_type, column_default, is_nullable FROM information_schema.columns
 WHERE table_schema = 'invitetomedia' AND table_name = 'sites' AND column_name = 'lockout_attempts';
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET lockout_attempts = -1$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET lockout_attempts = -2147483648$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET lockout_attempts = NULL$$);
SELECT lockout_attempts FROM invitetomedia.settings;
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET lockout_attempts = 0$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET lockout_attempts = 1$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET lockout_attempts = 2147483647$$);
UPDATE invitetomedia.settings SET lockout_attempts = 5;

-- five wrong emails: each answers email_mismatch (the fifth too), then the
-- invite is locked
UPDATE invitetomedia.settings SET link_reusability = 2;
SELECT invite_id, token FROM invitetomedia.invite_create('live', 'owner', 'lock@outside.example', 'Lo', 'Ck') \gset
SELECT n, (SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong' || n || '@outside.example')) AS status,
       (SELECT status FROM invitetomedia.invite_check(:'token')) AS check_after
  FROM generate_series(1, 4) n;
SELECT failed_attempts FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong5@outside.example');
SELECT failed_attempts FROM invitetomedia.invites WHERE invite_id = :invite_id;
-- locked for invite_check, and for invite_consume even with the right email
-- or a device; every other column empty
SELECT * FROM invitetomedia.invite_check(:'token');
SELECT * FROM invitetomedia.invite_consume(:'token', 'lock@outside.example');
SELECT * FROM invitetomedia.invite_consume(:'token', 'lock@outside.example', 'phone');
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong6@outside.example');
-- nothing was used; locked attempts are recorded, and counted no further
SELECT use_count, failed_attempts FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT status, count(*) FROM invitetomedia.redemptions WHERE invite_id = :invite_id GROUP BY status ORDER BY status;

-- the setting applies at once: a higher threshold, or 0, unlocks; back to
-- 5 or lower locks again
UPDATE invitetomedia.settings SET lockout_attempts = 6;
SELECT status FROM invitetomedia.invite_check(:'token');
UPDATE invitetomedia.settings SET lockout_attempts = 0;
SELECT status FROM invitetomedia.invite_check(:'token');
UPDATE invitetomedia.settings SET lockout_attempts = 3;
SELECT status FROM invitetomedia.invite_check(:'token');
UPDATE invitetomedia.settings SET lockout_attempts = 5;
SELECT status FROM invitetomedia.invite_check(:'token');

-- invite_resend unlocks: a new token, the counter back to 0; the old token
-- answers revoked (not locked) and counts nothing
SELECT token AS new_token FROM invitetomedia.invite_resend(:invite_id, 'owner', false) \gset
SELECT failed_attempts FROM invitetomedia.invites WHERE invite_id = :invite_id;
SELECT status FROM invitetomedia.invite_check(:'token');
SELECT status FROM invitetomedia.invite_consume(:'token', 'wrong7@outside.example');
SELECT status FROM invitetomedia.invite_check(:'new_token');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'new_token', 'lock@outside.example');
SELECT failed_attempts FROM invitetomedia.invites WHERE invite_id = :invite_id;

-- 0 = never lock: wrong emails go on answering email_mismatch
UPDATE invitetomedia.settings SET lockout_attempts = 0;
SELECT invite_id AS never, token AS never_token FROM invitetomedia.invite_create('live', 'owner', 'never@outside.example', 'Ne', 'Ver') \gset
SELECT status, count(*) FROM generate_series(1, 12) n,
       LATERAL invitetomedia.invite_consume(:'never_token', 'wrong@outside.example') c GROUP BY status;
SELECT status FROM invitetomedia.invite_consume(:'never_token', 'never@outside.example');

-- lockout_attempts = 1: the first wrong email answers email_mismatch, every
-- later attempt locked; other invites are not affected
UPDATE invitetomedia.settings SET lockout_attempts = 1;
SELECT invite_id AS one, token AS one_token FROM invitetomedia.invite_create('live', 'owner', 'one@outside.example', 'O', 'Ne') \gset
SELECT token AS two_token FROM invitetomedia.invite_create('live', 'owner', 'two@outside.example', 'T', 'Wo') \gset
SELECT status FROM invitetomedia.invite_consume(:'one_token', 'wrong@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'one_token', 'one@outside.example');
SELECT status FROM invitetomedia.invite_consume(:'two_token', 'two@outside.example');
UPDATE invitetomedia.settings SET lockout_attempts = 5;

-- Status order of invite_consume: 'not_found', 'disabled', 'revoked',
-- 'expired', 'not_yet', 'locked', 'email_mismatch', 'rejoin', 'exhausted',
-- 'ok'.  Each case below holds two (or more) conditions; the first wins.
TRUNCATE invitetomedia.invites;
UPDATE invitetomedia.settings SET link_reusability = 1, lockout_attempts = 2;
CREATE TEMP TABLE t (name text PRIMARY KEY, invite_id bigint, token text);
INSERT INTO t SELECT n, c.invite_id, c.token
  FROM unnest(ARRAY['gone', 'rev', 'revexp', 'expnotyet', 'notyetlocked', 'locked',
                    'lockedall', 'mismatchrejoin', 'rejoinexhausted', 'exhausted', 'ok']) AS n,
       LATERAL invitetomedia.invite_create('live', 'owner', n || '@outside.example', 'N', 'Ame') c;
CREATE FUNCTION pg_temp.tok(n text) RETURNS text LANGUAGE sql AS $$ SELECT token FROM t WHERE name = n $$;
CREATE FUNCTION pg_temp.id(n text) RETURNS bigint LANGUAGE sql AS $$ SELECT invite_id FROM t WHERE name = n $$;
-- set up: used links (one from a device), locked links, then the rest by hand
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('mismatchrejoin'), 'mismatchrejoin@outside.example', 'dev1');
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('rejoinexhausted'), 'rejoinexhausted@outside.example', 'dev2');
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('lockedall'), 'lockedall@outside.example', 'dev3');
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('exhausted'), 'exhausted@outside.example');
SELECT n, (SELECT status FROM invitetomedia.invite_consume(pg_temp.tok(n), 'wrong@outside.example')) AS first,
          (SELECT status FROM invitetomedia.invite_consume(pg_temp.tok(n), 'wrong@outside.example')) AS second
  FROM unnest(ARRAY['notyetlocked', 'locked', 'lockedall']) AS n;
DELETE FROM invitetomedia.invites WHERE invite_id = pg_temp.id('gone');
UPDATE invitetomedia.invites SET revoked_at = now() WHERE invite_id IN (pg_temp.id('rev'), pg_temp.id('revexp'));
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute'
 WHERE invite_id IN (pg_temp.id('revexp'), pg_temp.id('expnotyet'));
UPDATE invitetomedia.invites SET not_before = now() + interval '1 hour'
 WHERE invite_id IN (pg_temp.id('expnotyet'), pg_temp.id('notyetlocked'));

-- not_found over disabled: a well-formed token of no link, module disabled
UPDATE invitetomedia.settings SET enabled = false;
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('gone'), 'gone@outside.example');
-- disabled over revoked
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('rev'), 'rev@outside.example');
UPDATE invitetomedia.settings SET enabled = true;
-- revoked over expired; expired over not_yet; not_yet over locked (with the right email)
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('revexp'), 'revexp@outside.example');
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('expnotyet'), 'expnotyet@outside.example');
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('notyetlocked'), 'notyetlocked@outside.example');
-- locked over email_mismatch; and over rejoin and exhausted (a used-up
-- link, right email, the device that used it)
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('locked'), 'stranger@outside.example');
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('lockedall'), 'lockedall@outside.example', 'dev3');
-- email_mismatch over rejoin (the device that used it, a wrong email)
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('mismatchrejoin'), 'wrong@outside.example', 'dev1');
-- rejoin over exhausted
SELECT status, invite_id = pg_temp.id('rejoinexhausted') AS same_invite, media_id, role, user_id, uses_left
  FROM invitetomedia.invite_consume(pg_temp.tok('rejoinexhausted'), 'rejoinexhausted@outside.example', 'dev2');
-- exhausted over ok (the right email, no use left)
SELECT * FROM invitetomedia.invite_consume(pg_temp.tok('exhausted'), 'exhausted@outside.example');
-- ok
SELECT status, media_id, role, user_id, uses_left
  FROM invitetomedia.invite_consume(pg_temp.tok('ok'), 'ok@outside.example');
-- nothing refused took a use; each refusal is recorded under its status
SELECT name, i.use_count FROM t JOIN invitetomedia.invites i USING (invite_id) ORDER BY name;
SELECT name, array_agg(r.status ORDER BY r.at) AS records
  FROM t JOIN invitetomedia.redemptions r USING (invite_id) GROUP BY name ORDER BY name;

-- invite_check, the same order without the email and device steps:
-- not_found, disabled, revoked, expired, not_yet, locked, exhausted, ok
UPDATE invitetomedia.settings SET enabled = false;
SELECT status FROM invitetomedia.invite_check(pg_temp.tok('gone'));
SELECT status FROM invitetomedia.invite_check(pg_temp.tok('rev'));
UPDATE invitetomedia.settings SET enabled = true;
SELECT status FROM invitetomedia.invite_check(pg_temp.tok('revexp'));
SELECT status FROM invitetomedia.invite_check(pg_temp.tok('expnotyet'));
-- not_yet over locked: with the columns filled for the lobby's countdown
SELECT status, media_id, media_title, role, uses_left, opens_at > now() AS opens_later
  FROM invitetomedia.invite_check(pg_temp.tok('notyetlocked'));
-- locked over exhausted
SELECT * FROM invitetomedia.invite_check(pg_temp.tok('lockedall'));
SELECT * FROM invitetomedia.invite_check(pg_temp.tok('exhausted'));
SELECT token AS fresh FROM invitetomedia.invite_create('live', 'owner', 'fresh@outside.example', 'F', 'Resh') \gset
SELECT status, media_id, media_title, role, uses_left, opens_at FROM invitetomedia.invite_check(:'fresh');
