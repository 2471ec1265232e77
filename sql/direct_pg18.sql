-- The direct path (itm_direct.c) on what PostgreSQL 18 added to tables:
-- CHECK constraints that are NOT ENFORCED (the executor skips them) and
-- virtual generated columns (computed when read).  The path must send such
-- a table to the SQL statement, or do as it does: each case runs with
-- invitetomedia.direct_use on and then off, each way in a subtransaction
-- that is rolled back, and the two must answer the same (same: t), with a
-- DEBUG1 line saying why the statement ran.  Before 18 the syntax does not
-- exist: the file says so and stops.  Two expected files: direct_pg18.out
-- (18 and later), direct_pg18_1.out (before 18).
-- On a 2.0 database (this suite's) the path runs for invite_consume and
-- invite_check on 2.0's shapes (the site's row in sites, the keys that
-- lead with tenant_id: docs/design-2.0.md, section 6); invite_create and
-- guest links take the statements there without a DEBUG1 line.  Every
-- table of 2.0 has row-level security enabled, so a function owner that
-- does not own the tables sends the call to the statements.  The 1.1.1
-- path is tested on 1.1.1 tables by test/compat-1.1.1 (the same file, frozen).
\i sql/include/fixture.psql
SELECT current_setting('server_version_num')::int >= 180000 AS pg18 \gset
\if :pg18
\else
\echo 'PostgreSQL before 18: no NOT ENFORCED constraints, no virtual generated columns'
\quit
\endif
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 3;
SET invitetomedia.direct_use = on;

\i sql/include/both_ways.psql

SELECT c.invite_id AS inv, c.token AS tok
  FROM invitetomedia.invite_create('live', 'owner', 'p18@outside.example', 'Pe', 'Eighteen') c \gset
SELECT c.token AS gtok
  FROM invitetomedia.guest_link_create('live', 'owner', 'PG 18') c \gset
\set consume 'SELECT status || coalesce('' '' || uses_left, '''') FROM invitetomedia.invite_consume(' :'tok' ', ''p18@outside.example'')'
\set gjoin 'SELECT status || coalesce('' '' || clicks_left, '''') FROM invitetomedia.guest_link_join(' :'gtok' ', ''g@outside.example'', ''G'', ''J'')'
\set create 'SELECT max_uses::text FROM invitetomedia.invite_create(''live'', ''owner'', ''new@outside.example'', ''N'', ''W'')'
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(:'gjoin');

-- 1. CHECK constraints NOT ENFORCED that every write breaks: the statement
-- writes anyway (the executor skips them); the path enforced them (18.6)
ALTER TABLE invitetomedia.invites ADD CONSTRAINT pg18_ne CHECK (use_count < 0) NOT ENFORCED;
ALTER TABLE invitetomedia.redemptions ADD CONSTRAINT pg18_ne CHECK (status = '') NOT ENFORCED;
ALTER TABLE invitetomedia.guest_link_joins ADD CONSTRAINT pg18_ne CHECK (length(email) < 0) NOT ENFORCED;
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(:'gjoin');
SELECT * FROM pg_temp.both(:'create');
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'tok', 'p18@outside.example');
RESET client_min_messages;
-- an enforced CHECK beside them still refuses (23514) both ways
ALTER TABLE invitetomedia.invites ADD CONSTRAINT pg18_enforced CHECK (use_count <= 1) NOT VALID;
SELECT * FROM pg_temp.both(:'consume');
ALTER TABLE invitetomedia.invites DROP CONSTRAINT pg18_enforced;
ALTER TABLE invitetomedia.invites DROP CONSTRAINT pg18_ne;
ALTER TABLE invitetomedia.redemptions DROP CONSTRAINT pg18_ne;
ALTER TABLE invitetomedia.guest_link_joins DROP CONSTRAINT pg18_ne;

-- 2. virtual generated columns, and a CHECK that reads one: the statement
-- computes them when it checks (at most one use, through the column)
UPDATE invitetomedia.invites SET use_count = 0 WHERE invite_id = :inv;
ALTER TABLE invitetomedia.invites ADD COLUMN pg18_uses int GENERATED ALWAYS AS (use_count * 1) VIRTUAL;
ALTER TABLE invitetomedia.invites ADD CONSTRAINT pg18_vcheck CHECK (pg18_uses <= 1) NOT VALID;
ALTER TABLE invitetomedia.redemptions ADD COLUMN pg18_v text GENERATED ALWAYS AS (status || coalesce(device_id, '-')) VIRTUAL;
ALTER TABLE invitetomedia.guest_link_joins ADD COLUMN pg18_v text GENERATED ALWAYS AS (upper(first_name)) VIRTUAL;
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)', :'consume',
       'SELECT pg18_v FROM invitetomedia.redemptions ORDER BY at DESC LIMIT 1'));
SELECT * FROM pg_temp.both(:'gjoin');
SELECT * FROM pg_temp.both(:'create');
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'tok', 'p18@outside.example');
RESET client_min_messages;
-- a second use: the CHECK on the virtual column refuses it both ways
SELECT * FROM pg_temp.both(:'consume');
UPDATE invitetomedia.invites SET use_count = 0 WHERE invite_id = :inv;
-- the virtual column on invites alone: the use's UPDATE goes to the statement
ALTER TABLE invitetomedia.redemptions DROP COLUMN pg18_v;
ALTER TABLE invitetomedia.guest_link_joins DROP COLUMN pg18_v;
SELECT * FROM pg_temp.both(:'consume');
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'tok', 'p18@outside.example');
RESET client_min_messages;
UPDATE invitetomedia.invites SET use_count = 0 WHERE invite_id = :inv;
ALTER TABLE invitetomedia.invites DROP COLUMN pg18_uses;

-- the unaltered tables: the path again, no DEBUG1 line
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_consume(:'tok', 'p18@outside.example');
RESET client_min_messages;
DROP FUNCTION public.both_ways_then(text, text);
