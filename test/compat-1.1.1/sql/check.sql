-- invite_check: the lobby page's look-up; consumes and records nothing
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 2;

SELECT * FROM invitetomedia.invite_create('live', 'owner', 'lobby@outside.example', 'Lo', 'Bby', 'speaker') \gset
-- ok, with what the lobby shows; never the invitee's email
SELECT status, media_id, media_title, role, expires_at = :'expires_at' AS same_expiry, uses_left
  FROM invitetomedia.invite_check(:'token');
SELECT pg_catalog.pg_get_function_result('invitetomedia.invite_check(text)'::regprocedure);
-- checking twice changes nothing
SELECT status, uses_left FROM invitetomedia.invite_check(:'token');
SELECT use_count FROM invitetomedia.invites;
SELECT pg_temp.rows();

-- it follows consume's order: not_found, disabled, revoked, expired, exhausted
SELECT status FROM invitetomedia.invite_check('itm_not_a_token');
SELECT status FROM invitetomedia.invite_check(overlay(:'token' placing (CASE WHEN substr(:'token', 10, 1) = 'x' THEN 'y' ELSE 'x' END) from 10 for 1));
SELECT status FROM invitetomedia.invite_check('');
SELECT status, uses_left FROM invitetomedia.invite_consume(:'token', 'lobby@outside.example');
SELECT status, uses_left FROM invitetomedia.invite_check(:'token');
SELECT status FROM invitetomedia.invite_consume(:'token', 'lobby@outside.example');
SELECT * FROM invitetomedia.invite_check(:'token');
UPDATE invitetomedia.invites SET expires_at = now() - interval '1 second';
SELECT status FROM invitetomedia.invite_check(:'token');
UPDATE invitetomedia.invites SET revoked_at = now();
SELECT status FROM invitetomedia.invite_check(:'token');
UPDATE invitetomedia.settings SET enabled = false;
SELECT status FROM invitetomedia.invite_check(:'token');
SELECT status FROM invitetomedia.invite_check('itm_not_a_token');
-- the checks wrote nothing: the two records are the two consumes
SELECT count(*) AS redemptions FROM invitetomedia.redemptions;

-- unlimited links have no uses_left
UPDATE invitetomedia.settings SET enabled = true, link_reusability = -1;
SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'lobby@outside.example', 'Lo', 'Bby') \gset
SELECT status, media_title, role, uses_left FROM invitetomedia.invite_check(:'token');
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_check(NULL)$$);

-- A token whose only fault is its checksum is refused before any table is
-- read (a typo; a forger can compute a CRC, so this is a convenience, not
-- a defence).  Seen where a read would show: in a read-only transaction a
-- consume that reached the table would be refused with 25006, and the
-- invites' scan counters would move.
UPDATE invitetomedia.settings SET enabled = true;
SELECT token AS good FROM invitetomedia.invite_create('vid', 'owner', 'crc@outside.example', 'C', 'Rc') \gset
-- one character changed: same length and alphabet, wrong checksum
SELECT overlay(:'good' placing (CASE WHEN substr(:'good', 20, 1) = 'A' THEN 'B' ELSE 'A' END)
               from 20 for 1) AS bad_crc \gset
SELECT length(:'bad_crc') = length(:'good') AS same_length, :'bad_crc' <> :'good' AS differs;
BEGIN READ ONLY;
SELECT status FROM invitetomedia.invite_consume(:'bad_crc', 'crc@outside.example');
SELECT pg_temp.try(format('SELECT * FROM invitetomedia.invite_consume(%L, %L)', :'good', 'crc@outside.example'));
ROLLBACK;
BEGIN;
SELECT pg_stat_get_xact_numscans('invitetomedia.invites'::regclass)
     + pg_stat_get_xact_numscans('invitetomedia.invites_token_hash_key'::regclass) AS scans0 \gset
SELECT status FROM invitetomedia.invite_check(:'bad_crc');
SELECT pg_stat_get_xact_numscans('invitetomedia.invites'::regclass)
     + pg_stat_get_xact_numscans('invitetomedia.invites_token_hash_key'::regclass) - :scans0
       AS invites_scans_for_bad_checksum;
SELECT status FROM invitetomedia.invite_check(:'good');
SELECT pg_stat_get_xact_numscans('invitetomedia.invites'::regclass)
     + pg_stat_get_xact_numscans('invitetomedia.invites_token_hash_key'::regclass) - :scans0
       AS invites_scans_after_good_token;
COMMIT;
