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
