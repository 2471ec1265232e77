-- invitetomedia.invite_status (1.1): invite links and their state, for owners
-- and DBAs; no token hashes, no message bodies
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true, lockout_attempts = 2;

-- the columns, in order: no token_hash, no lockout counter
SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
 WHERE attrelid = 'invitetomedia.invite_status'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;
-- not readable by PUBLIC
SELECT count(*) AS public_grants FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.oid = 'invitetomedia.invite_status'::regclass AND a.grantee = 0;
SELECT c.relacl IS NOT NULL AS has_acl FROM pg_class c WHERE c.oid = 'invitetomedia.invite_status'::regclass;

-- one invite in each state
CREATE TEMP TABLE t (name text PRIMARY KEY, invite_id bigint, token text);
CREATE FUNCTION pg_temp.tok(n text) RETURNS text LANGUAGE sql AS $$ SELECT token FROM t WHERE name = n $$;
CREATE FUNCTION pg_temp.id(n text) RETURNS bigint LANGUAGE sql AS $$ SELECT invite_id FROM t WHERE name = n $$;
UPDATE invitetomedia.settings SET link_reusability = 2;
INSERT INTO t SELECT n, c.invite_id, c.token
  FROM unnest(ARRAY['pending', 'used', 'exhausted', 'not_yet', 'locked', 'expired', 'revoked',
                    'revoked_expired', 'expired_locked', 'locked_not_yet', 'not_yet_exhausted',
                    'mismatched']) AS n,
       LATERAL invitetomedia.invite_create('live', 'coeditor', n || '@outside.example', 'N', 'Ame', 'speaker') c;
UPDATE invitetomedia.settings SET link_reusability = -1;
INSERT INTO t SELECT n, c.invite_id, c.token
  FROM unnest(ARRAY['unlimited_used', 'unlimited_pending']) AS n,
       LATERAL invitetomedia.invite_create('vid', 'owner', n || '@outside.example', 'N', 'Ame') c;
INSERT INTO t SELECT 'scheduled', c.invite_id, c.token
  FROM invitetomedia.invite_create('doc', 'owner', 'scheduled@outside.example', 'S', 'Ch',
                                   not_before => now() + interval '1 day') c;

-- uses: one of two (used), two of two (exhausted); unlimited with uses (used)
SELECT n, (SELECT status FROM invitetomedia.invite_consume(pg_temp.tok(n), n || '@outside.example')) AS status
  FROM unnest(ARRAY['used', 'exhausted', 'exhausted', 'not_yet_exhausted', 'not_yet_exhausted',
                    'unlimited_used', 'unlimited_used', 'unlimited_used', 'expired_locked']) WITH ORDINALITY AS u(n, i)
 ORDER BY i;
-- two wrong emails lock (lockout_attempts = 2); one does not
SELECT n, (SELECT status FROM invitetomedia.invite_consume(pg_temp.tok(n), 'wrong@outside.example')) AS status
  FROM unnest(ARRAY['locked', 'locked', 'expired_locked', 'expired_locked', 'locked_not_yet', 'locked_not_yet',
                    'mismatched']) WITH ORDINALITY AS u(n, i)
 ORDER BY i;
-- the rest as the table's owner: revocations, expiries, openings
SELECT invitetomedia.invite_revoke(pg_temp.id(n), 'owner') AS revoked FROM unnest(ARRAY['revoked', 'revoked_expired']) AS n;
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 minute'
 WHERE invite_id IN (pg_temp.id('expired'), pg_temp.id('revoked_expired'), pg_temp.id('expired_locked'));
UPDATE invitetomedia.invites SET not_before = now() + interval '1 hour'
 WHERE invite_id IN (pg_temp.id('not_yet'), pg_temp.id('locked_not_yet'), pg_temp.id('not_yet_exhausted'));

-- the states, checked in the order revoked, expired, locked, not_yet,
-- exhausted, used (a use and uses left), pending (no use yet)
SELECT t.name, s.state, s.use_count, s.max_uses
  FROM t JOIN invitetomedia.invite_status s USING (invite_id) ORDER BY s.invite_id;
SELECT state, count(*) FROM invitetomedia.invite_status GROUP BY state ORDER BY state;

-- the columns hold the invite's own values
SELECT s.invite_id = i.invite_id AS same_id, s.media_id, s.email, s.role, s.invited_by,
       s.created_at = i.created_at AS same_created_at, s.not_before = i.not_before AS same_not_before,
       s.expires_at = i.expires_at AS same_expires_at, s.max_uses, s.use_count, s.last_used_at, s.state
  FROM invitetomedia.invite_status s JOIN invitetomedia.invites i USING (invite_id)
 WHERE s.invite_id = pg_temp.id('scheduled');

-- last_used_at: set by an ok (the time of its record), not by a refusal
-- nor a rejoin
SELECT t.name, s.last_used_at IS NOT NULL AS has_last_use,
       s.last_used_at = (SELECT max(r.at) FROM invitetomedia.redemptions r
                          WHERE r.invite_id = s.invite_id AND r.status = 'ok') AS last_ok
  FROM t JOIN invitetomedia.invite_status s USING (invite_id) ORDER BY s.invite_id;
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('pending'), 'pending@outside.example', 'tablet');
SELECT state, last_used_at IS NOT NULL AS has_last_use FROM invitetomedia.invite_status WHERE invite_id = pg_temp.id('pending');
SELECT last_used_at AS first_use FROM invitetomedia.invite_status WHERE invite_id = pg_temp.id('pending') \gset
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('pending'), 'pending@outside.example', 'tablet');
SELECT status FROM invitetomedia.invite_consume(pg_temp.tok('pending'), 'wrong@outside.example');
SELECT last_used_at = :'first_use' AS unchanged_by_rejoin_and_mismatch
  FROM invitetomedia.invite_status WHERE invite_id = pg_temp.id('pending');

-- locked follows the setting at once: 0 never locks
UPDATE invitetomedia.settings SET lockout_attempts = 0;
SELECT t.name, s.state FROM t JOIN invitetomedia.invite_status s USING (invite_id)
 WHERE t.name IN ('locked', 'expired_locked', 'locked_not_yet', 'mismatched') ORDER BY s.invite_id;
UPDATE invitetomedia.settings SET lockout_attempts = 1;
SELECT t.name, s.state FROM t JOIN invitetomedia.invite_status s USING (invite_id)
 WHERE t.name IN ('locked', 'expired_locked', 'locked_not_yet', 'mismatched') ORDER BY s.invite_id;
-- a resend unlocks
SELECT count(*) AS resent FROM invitetomedia.invite_resend(pg_temp.id('locked'), 'coeditor', false);
SELECT state FROM invitetomedia.invite_status WHERE invite_id = pg_temp.id('locked');
