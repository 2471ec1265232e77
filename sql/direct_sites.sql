-- The direct path (itm_direct.c) on 2.0's tables: a link found by its
-- tenant and token hash through the unique index (tenant_id, token_hash),
-- at its own site only; the site's row (enabled, lockout_attempts) read by
-- the primary key of sites; the record written with the tenant, the link's
-- site and the drawn id; the invitee found among the tenant's users, the
-- media title among the tenant's media.  Each case runs both ways (direct
-- on, then off, each rolled back: sql/include/both_ways.psql) and must
-- answer the same (same: t).  DEBUG2 shows where the path ran ("through
-- the table access method"), DEBUG1 where it declined and why.
\i sql/include/fixture.psql
UPDATE invitetomedia.settings
   SET enabled = true, link_reusability = 3, lockout_attempts = 2;
SET invitetomedia.direct_use = on;
\i sql/include/both_ways.psql

-- a second site of the default tenant; a second tenant, its site, its role
SELECT invitetomedia.tenant() AS deft \gset
SELECT invitetomedia.site_create(:deft, 'second', 'https://second.example/i/');
SELECT invitetomedia.tenant_create('globex') AS globex \gset
SELECT invitetomedia.site_create(:globex, 'globex-kms', 'https://kms.globex.example/i/', true);
UPDATE invitetomedia.sites SET enabled = true, link_reusability = 3, lockout_attempts = 2
 WHERE site_id IN ('second', 'globex-kms');
CREATE ROLE regress_itm_globex;
INSERT INTO invitetomedia.tenant_roles (role_name, tenant_id) VALUES ('regress_itm_globex', :globex);
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_globex;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia TO regress_itm_globex;
-- (both ways, as that role: it may switch the path, and read the records,
-- its tenant's only)
GRANT SET ON PARAMETER invitetomedia.direct_use TO regress_itm_globex;
GRANT SELECT ON invitetomedia.redemptions TO regress_itm_globex;
-- the same media id and email in both tenants: other titles, other users
INSERT INTO invitetomedia.users (tenant_id, user_id, email, role) VALUES
    (:globex, 'gadmin', 'admin@globex.example', 'admin'),
    (:globex, 'g-shared', 'Shared@Outside.example', 'viewer'),
    (:deft, 'd-shared', 'shared@outside.example', 'viewer');
INSERT INTO invitetomedia.media (tenant_id, media_id, media_type, title, owner_id) VALUES
    (:globex, 'vid', 'video', 'Globex video', 'gadmin');

-- links: at the default site, at the second site, at globex's site
SELECT token AS tok_d FROM invitetomedia.invite_create('vid', 'owner', 'shared@outside.example', 'S', 'D') \gset
SELECT token AS tok_s FROM invitetomedia.invite_create_at('second', 'vid', 'owner', 'shared@outside.example', 'S', 'S') \gset
SELECT token AS tok_new FROM invitetomedia.invite_create_at('second', 'vid', 'owner', 'new.person@outside.example', 'New', 'Person') \gset
SET ROLE regress_itm_globex;
SELECT token AS tok_g FROM invitetomedia.invite_create('vid', 'gadmin', 'shared@outside.example', 'S', 'G') \gset
RESET ROLE;

-- 1: invite_check, the path runs, and answers as the statement
SET client_min_messages = debug2;
SELECT * FROM pg_temp.both(format('SELECT status || '' '' || media_title FROM invitetomedia.invite_check(%L)', :'tok_d'));
RESET client_min_messages;
SELECT * FROM pg_temp.both(format('SELECT status || '' '' || media_title FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));
-- a link of another site of the tenant, of another tenant: not found here
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check(%L)', :'tok_s'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_d'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check(%L)', :'tok_g'));
-- globex reads its own link, with its own media's title
SET ROLE regress_itm_globex;
SELECT * FROM pg_temp.both(format('SELECT status || '' '' || media_title FROM invitetomedia.invite_check(%L)', :'tok_g'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check(%L)', :'tok_d'));
RESET ROLE;

-- 2: invite_consume: the use and its record, the tenant's user; then()
-- reads back, in a statement of its own, what the call wrote
CREATE FUNCTION pg_temp.then(call text, readback text) RETURNS text
LANGUAGE sql AS $$ SELECT format('SELECT public.both_ways_then(%L, %L)', call, readback) $$;
SET client_min_messages = debug2;
SELECT * FROM pg_temp.both(pg_temp.then(
    format('SELECT status || '' '' || user_id || '' '' || uses_left FROM invitetomedia.invite_consume(%L, %L)',
           :'tok_d', 'SHARED@outside.example'),
    $r$SELECT string_agg(tenant_id::text || ' ' || site_id || ' ' || status || ' ' || coalesce(user_id, '-') || ' ' || (event_seq IS NULL), ', ') FROM invitetomedia.redemptions$r$));
RESET client_min_messages;
SELECT * FROM pg_temp.both(pg_temp.then(
    format('SELECT status || '' '' || user_id FROM invitetomedia.invite_consume_at(%L, %L, %L)',
           'second', :'tok_s', 'shared@outside.example'),
    $r$SELECT string_agg(tenant_id::text || ' ' || site_id || ' ' || status || ' ' || coalesce(user_id, '-'), ', ') FROM invitetomedia.redemptions$r$));
-- a first use: the user is made in the link's tenant
SELECT * FROM pg_temp.both(pg_temp.then(
    format('SELECT status || '' '' || user_id FROM invitetomedia.invite_consume_at(%L, %L, %L)',
           'second', :'tok_new', 'new.person@outside.example'),
    $r$SELECT string_agg(tenant_id::text || ' ' || user_id || ' ' || role, ', ') FROM invitetomedia.users WHERE email = 'new.person@outside.example'$r$));
-- globex's link used by globex: its own user (g-shared), not the default
-- tenant's; the record of globex (its role reads its tenant's rows only)
SET ROLE regress_itm_globex;
SET client_min_messages = debug2;
SELECT * FROM pg_temp.both(pg_temp.then(
    format('SELECT status || '' '' || user_id FROM invitetomedia.invite_consume(%L, %L)',
           :'tok_g', 'shared@outside.example'),
    $r$SELECT string_agg(tenant_id::text || ' ' || site_id || ' ' || status || ' ' || coalesce(user_id, '-'), ', ') FROM invitetomedia.redemptions$r$));
RESET client_min_messages;
RESET ROLE;
-- across sites and tenants: not found, nothing used
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume(%L, %L)', :'tok_s', 'shared@outside.example'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume_at(%L, %L, %L)', 'second', :'tok_d', 'shared@outside.example'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume(%L, %L)', :'tok_g', 'shared@outside.example'));
SET ROLE regress_itm_globex;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume(%L, %L)', :'tok_d', 'shared@outside.example'));
RESET ROLE;
SELECT use_count, site_id FROM invitetomedia.invites ORDER BY site_id, email;

-- 3: the site's own settings: disabled, lockout after 2 wrong emails
UPDATE invitetomedia.sites SET enabled = false WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume_at(%L, %L, %L)', 'second', :'tok_s', 'shared@outside.example'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));
-- the default site is still enabled
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume(%L, %L)', :'tok_d', 'shared@outside.example'));
UPDATE invitetomedia.sites SET enabled = true WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format($q$SELECT concat_ws(',',
    (SELECT status FROM invitetomedia.invite_consume_at('second', %L, 'wrong@outside.example')),
    (SELECT status FROM invitetomedia.invite_consume_at('second', %L, 'wrong@outside.example')),
    (SELECT status FROM invitetomedia.invite_consume_at('second', %L, 'shared@outside.example')),
    (SELECT status FROM invitetomedia.invite_check_at('second', %L)))$q$,
    :'tok_s', :'tok_s', :'tok_s', :'tok_s'));
-- no lockout at the second site: the same three calls take a use
UPDATE invitetomedia.sites SET lockout_attempts = 0 WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format($q$SELECT concat_ws(',',
    (SELECT status FROM invitetomedia.invite_consume_at('second', %L, 'wrong@outside.example')),
    (SELECT status FROM invitetomedia.invite_consume_at('second', %L, 'wrong@outside.example')),
    (SELECT status FROM invitetomedia.invite_consume_at('second', %L, 'shared@outside.example')))$q$,
    :'tok_s', :'tok_s', :'tok_s'));

-- the site's row is found again where it was (itm_direct.c remembers
-- where it is): after HOT updates and their pruning, after VACUUM, after
-- VACUUM FULL moved it, the answers follow the row
SELECT count(*) FROM (SELECT invitetomedia.site_configure('second', jsonb_build_object('lockout_attempts', n % 3))
                        FROM generate_series(1, 40) n) x;
UPDATE invitetomedia.sites SET enabled = false WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));
VACUUM invitetomedia.sites;
UPDATE invitetomedia.sites SET enabled = true WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));
VACUUM FULL invitetomedia.sites;
UPDATE invitetomedia.sites SET enabled = false WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));
UPDATE invitetomedia.sites SET enabled = true, lockout_attempts = 0 WHERE site_id = 'second';
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));

-- the site moved to another tenant behind the caches' back (triggers off,
-- so the backend still resolves 'second' as its tenant's): the site's row
-- is not the link's tenant's, and the statements find none
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE invitetomedia.sites SET tenant_id = :globex WHERE site_id = 'second';
COMMIT;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume_at(%L, %L, %L)', 'second', :'tok_s', 'shared@outside.example'));
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE invitetomedia.sites SET tenant_id = :deft WHERE site_id = 'second';
COMMIT;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check_at(%L, %L)', 'second', :'tok_s'));

-- 4: FORCE ROW LEVEL SECURITY binds a table's owner, not the superuser
-- who owns the functions here: the statement reads every row, and so
-- does the path, which runs
ALTER TABLE invitetomedia.sites FORCE ROW LEVEL SECURITY;
SET client_min_messages = debug2;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check(%L)', :'tok_d'));
RESET client_min_messages;
ALTER TABLE invitetomedia.sites NO FORCE ROW LEVEL SECURITY;
-- the path declines on what it was not written for (DEBUG1 says why), and
-- the answers stay: the token index with its columns the other way round
ALTER TABLE invitetomedia.invites DROP CONSTRAINT invites_token_hash_key;
CREATE UNIQUE INDEX invites_hash_tenant ON invitetomedia.invites (token_hash, tenant_id);
SET client_min_messages = debug1;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_consume(%L, %L)', :'tok_d', 'shared@outside.example'));
RESET client_min_messages;
DROP INDEX invitetomedia.invites_hash_tenant;
ALTER TABLE invitetomedia.invites ADD CONSTRAINT invites_token_hash_key UNIQUE (tenant_id, token_hash);
-- the users index without its tenant first
DROP INDEX invitetomedia.users_email_lower_key;
CREATE UNIQUE INDEX users_email_lower_key ON invitetomedia.users (lower(email COLLATE "C"), tenant_id);
SET client_min_messages = debug1;
SELECT * FROM pg_temp.both(format('SELECT status || '' '' || user_id FROM invitetomedia.invite_consume(%L, %L)', :'tok_d', 'shared@outside.example'));
RESET client_min_messages;
DROP INDEX invitetomedia.users_email_lower_key;
CREATE UNIQUE INDEX users_email_lower_key ON invitetomedia.users (tenant_id, lower(email COLLATE "C"));
-- sites.enabled without its NOT NULL
ALTER TABLE invitetomedia.sites ALTER COLUMN enabled DROP NOT NULL;
SET client_min_messages = debug1;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check(%L)', :'tok_d'));
RESET client_min_messages;
ALTER TABLE invitetomedia.sites ALTER COLUMN enabled SET NOT NULL;
-- and back on the whitelist: the path runs again
SET client_min_messages = debug2;
SELECT * FROM pg_temp.both(format('SELECT status FROM invitetomedia.invite_check(%L)', :'tok_d'));
RESET client_min_messages;

-- what the extension made is as before (the index restored by name)
SELECT indexrelid::regclass, pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid IN ('invitetomedia.invites'::regclass, 'invitetomedia.users'::regclass) AND indisunique
 ORDER BY indexrelid::regclass::text;

DROP FUNCTION public.both_ways_then(text, text);
SELECT sum(rows_deleted) > 0 AS globex_dropped FROM invitetomedia.tenant_drop(:globex, true);
DELETE FROM invitetomedia.tenant_roles WHERE role_name = 'regress_itm_globex';
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA invitetomedia FROM regress_itm_globex;
REVOKE ALL ON SCHEMA invitetomedia FROM regress_itm_globex;
REVOKE SET ON PARAMETER invitetomedia.direct_use FROM regress_itm_globex;
REVOKE SELECT ON invitetomedia.redemptions FROM regress_itm_globex;
DROP ROLE regress_itm_globex;
TRUNCATE invitetomedia.invites, invitetomedia.redemptions, invitetomedia.retired_tokens, invitetomedia.outbox;
SELECT count(*) > 0 AS second_dropped FROM invitetomedia.site_drop('second');
