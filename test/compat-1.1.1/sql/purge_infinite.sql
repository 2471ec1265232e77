-- invite_purge with an infinite keep.  'infinity' and '-infinity' are
-- intervals since PostgreSQL 17: the function refuses them itself (22023,
-- "keep must be finite"), so that it answers alike on every major; before
-- 17 the text is no interval at all (22007, PostgreSQL's own message).
-- Two expected files: purge_infinite.out (15, 16), purge_infinite_1.out
-- (17 and later).
\i sql/include/fixture.psql
-- a finished link that a purge with any finite keep of the past removes
UPDATE invitetomedia.settings SET enabled = true;
SELECT invite_id AS old_id
  FROM invitetomedia.invite_create('vid', 'owner', 'old@outside.example', 'Old', 'Link') \gset
UPDATE invitetomedia.invites SET revoked_at = now() - interval '10 years' WHERE invite_id = :old_id;
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge('infinity')$$) AS infinite_keep;
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge('-infinity')$$) AS minus_infinite_keep;
SELECT pg_temp.try($$SELECT invitetomedia.invite_purge('infinity'::text::interval)$$) AS cast_keep;
-- nothing was purged by the refusals
SELECT count(*) AS still_there FROM invitetomedia.invites WHERE invite_id = :old_id;
-- a finite keep still purges it
SELECT invitetomedia.invite_purge('1 year') AS purged;
