-- bench/minimal_schema.sql
--
-- The minimal-schema floor ("minfloor", issue 13): the tables a consume
-- needs when nothing but its correctness is asked of them, filled with the
-- same links as the site (bench.py runs this file after loading the site;
-- the minfloor script is the floor's statement on these tables).
--
-- bench.min_invites keeps the columns the consume reads or writes: the
-- token's hash (the key it is found by: unique, so a token names one link),
-- the conditions (revoked_at, expires_at, not_before, failed_attempts,
-- max_uses, use_count, email), what it returns (invite_id, media_id, role,
-- names) and what it records (used_up_at, last_used_at).  Gone are the
-- columns nothing in a consume touches (created_at, invited_by, revoked_by),
-- the sequence behind invite_id (the ids are the site's, for the records),
-- the three other indexes (invite_id, media_id, (invited_by, created_at))
-- and the CHECK constraints (the UPDATE's WHERE keeps use_count within
-- max_uses by itself).  Kept: fillfactor 80, as on the site, so that uses
-- are HOT updates there too (a storage setting, not schema).
--
-- bench.min_redemptions is append-only in a consume: no key, no sequence,
-- no index.  Nothing on the ok path reads it; the index a device's rejoin
-- or a purge would want (invite_id, device_id) serves no consume without a
-- device, which is what every implementation in the benchmark runs.
--
-- Both are bench's own tables; the users directory and settings are the
-- extension's, as for the floor.

CREATE TABLE bench.min_invites (
    invite_id bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    not_before timestamptz,
    used_up_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    max_uses integer NOT NULL,
    use_count integer NOT NULL,
    failed_attempts integer NOT NULL,
    token_hash bytea PRIMARY KEY,
    email text NOT NULL,
    media_id text NOT NULL,
    role text NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL
) WITH (fillfactor = 80);

CREATE TABLE bench.min_redemptions (
    invite_id bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL,
    user_id text
);

INSERT INTO bench.min_invites
SELECT invite_id, expires_at, not_before, used_up_at, last_used_at, revoked_at,
       max_uses, use_count, failed_attempts, token_hash, email, media_id, role,
       first_name, last_name
  FROM invitetomedia.invites
 ORDER BY invite_id;
