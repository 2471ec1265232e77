-- The direct path (itm_direct.c) against the SQL statement on tables a DBA
-- altered: each reproduction of the second security review of 1.1
-- (issue 18, items 7-9), run with invitetomedia.direct_use on and then
-- off, each way in a subtransaction that is rolled back, so that both
-- start from the same rows.  direct_on and direct_off must be the same
-- (same: t); 1.1 answered otherwise, or crashed the server.  The breadth
-- (every alteration of a catalogue of more, in random call sequences) is
-- test/difffuzz's; these are the named cases.
-- On a 2.0 database (this suite's) the path runs for invite_consume and
-- invite_check on 2.0's shapes (the site's row in sites, the keys that
-- lead with tenant_id: docs/design-2.0.md, section 6); invite_create and
-- guest links take the statements there without a DEBUG1 line.  Every
-- table of 2.0 has row-level security enabled, so a function owner that
-- does not own the tables sends the call to the statements.  The 1.1.1
-- path is tested on 1.1.1 tables by test/compat-1.1.1 (the same file, frozen).
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 3;
SET invitetomedia.direct_use = on;

\i sql/include/both_ways.psql

SELECT c.invite_id AS inv, c.token AS tok
  FROM invitetomedia.invite_create('live', 'owner', 'sh@outside.example', 'Sha', 'Pe') c \gset
SELECT c.guest_link_id AS gl, c.token AS gtok
  FROM invitetomedia.guest_link_create('live', 'owner', 'Shapes') c \gset
SELECT c.guest_link_id AS gl2, c.token AS gtok2
  FROM invitetomedia.guest_link_create('live', 'owner', 'Shapes limited', 5) c \gset
\set check 'SELECT status || coalesce('' '' || media_title, '''') || coalesce('' '' || uses_left, '''') FROM invitetomedia.invite_check(' :'tok' ')'
\set consume 'SELECT status || coalesce('' '' || uses_left, '''') FROM invitetomedia.invite_consume(' :'tok' ', ''sh@outside.example'')'
\set gjoin 'SELECT status || coalesce('' '' || clicks_left, '''') FROM invitetomedia.guest_link_join(' :'gtok' ', ''g@outside.example'', ''G'', ''J'')'
\set gjoin2 'SELECT status || coalesce('' '' || clicks_left, '''') FROM invitetomedia.guest_link_join(' :'gtok2' ', ''g@outside.example'', ''G'', ''J'')'
\set create 'SELECT max_uses::text FROM invitetomedia.invite_create(''live'', ''owner'', ''new@outside.example'', ''N'', ''W'')'
-- the unaltered tables: the same answers
SELECT * FROM pg_temp.both(:'check');
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(:'gjoin');
SELECT * FROM pg_temp.both(:'create');

-- 7. media or settings rebuilt as a partitioned table: invite_check crashed
-- the server (an index scan of a partitioned index; a heap scan of a
-- partitioned settings)
ALTER TABLE invitetomedia.media RENAME TO media_plain;
CREATE TABLE invitetomedia.media (LIKE invitetomedia.media_plain INCLUDING ALL) PARTITION BY HASH (media_id);
CREATE TABLE invitetomedia.media_p0 PARTITION OF invitetomedia.media FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE invitetomedia.media_p1 PARTITION OF invitetomedia.media FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO invitetomedia.media SELECT * FROM invitetomedia.media_plain;
SELECT * FROM pg_temp.both(:'check');
DROP TABLE invitetomedia.media;
ALTER TABLE invitetomedia.media_plain RENAME TO media;
ALTER TABLE invitetomedia.settings RENAME TO settings_plain;
CREATE TABLE invitetomedia.settings (LIKE invitetomedia.settings_plain INCLUDING ALL) PARTITION BY LIST (singleton);
CREATE TABLE invitetomedia.settings_p PARTITION OF invitetomedia.settings DEFAULT;
INSERT INTO invitetomedia.settings SELECT * FROM invitetomedia.settings_plain;
SELECT * FROM pg_temp.both(:'check');
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(:'gjoin');
DROP TABLE invitetomedia.settings;
ALTER TABLE invitetomedia.settings_plain RENAME TO settings;

-- 8. the guest rule replaced by one that returns text: read as a boolean
-- it was always true, and a restricted address joined
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{outside.example}';
SELECT * FROM pg_temp.both(:'gjoin');
ALTER FUNCTION invitetomedia.guest_allowed(text) RENAME TO guest_allowed_saved;
CREATE FUNCTION invitetomedia.guest_allowed(email text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT 'false'::text $$;
SELECT * FROM pg_temp.both(:'gjoin');
DROP FUNCTION invitetomedia.guest_allowed(text);
ALTER FUNCTION invitetomedia.guest_allowed_saved(text) RENAME TO guest_allowed;
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{}';

-- 9a. a CHECK on tableoid failed every direct write (tableoid unset)
ALTER TABLE invitetomedia.invites ADD CONSTRAINT shapes_tableoid CHECK (tableoid <> 0);
ALTER TABLE invitetomedia.redemptions ADD CONSTRAINT shapes_tableoid CHECK (tableoid <> 0);
ALTER TABLE invitetomedia.guest_link_joins ADD CONSTRAINT shapes_tableoid CHECK (tableoid <> 0);
SELECT * FROM pg_temp.both(:'consume');
SELECT * FROM pg_temp.both(:'gjoin');
SELECT * FROM pg_temp.both(:'create');
ALTER TABLE invitetomedia.invites DROP CONSTRAINT shapes_tableoid;
ALTER TABLE invitetomedia.redemptions DROP CONSTRAINT shapes_tableoid;
ALTER TABLE invitetomedia.guest_link_joins DROP CONSTRAINT shapes_tableoid;

-- 9b. a column of a NOT NULL domain got NULL; 9c. ALTER DOMAIN ... SET
-- DEFAULT was not seen until a new session
CREATE DOMAIN public.shapes_nn AS text NOT NULL;
ALTER TABLE invitetomedia.redemptions ADD COLUMN shapes_note public.shapes_nn DEFAULT 'x';
SELECT * FROM pg_temp.both(:'consume');
ALTER DOMAIN public.shapes_nn SET DEFAULT 'from the domain';
ALTER TABLE invitetomedia.redemptions ALTER COLUMN shapes_note DROP DEFAULT;
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)', :'consume',
       'SELECT shapes_note FROM invitetomedia.redemptions ORDER BY at DESC LIMIT 1'));
-- and with no default at all: the statement writes a NULL as well (PostgreSQL
-- checks no domain constraint for an omitted column without a default)
ALTER DOMAIN public.shapes_nn DROP DEFAULT;
SELECT * FROM pg_temp.both(:'consume');
ALTER TABLE invitetomedia.redemptions DROP COLUMN shapes_note;
DROP DOMAIN public.shapes_nn;

-- 9d. timestamptz(0): the precision was not applied to what was written
-- (used_up_at, which the last use of a link sets)
ALTER TABLE invitetomedia.invites ALTER COLUMN used_up_at TYPE timestamptz(0);
UPDATE invitetomedia.invites SET use_count = max_uses - 1 WHERE invite_id = :inv;
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)', :'consume',
       format('SELECT (used_up_at = date_trunc(''second'', used_up_at))::text FROM invitetomedia.invites WHERE invite_id = %s', :inv)));
UPDATE invitetomedia.invites SET use_count = 0 WHERE invite_id = :inv;
ALTER TABLE invitetomedia.invites ALTER COLUMN used_up_at TYPE timestamptz;

-- 9e. inheritance: a child of invites holding the link answered not_found;
-- a child of users led to a second user
CREATE TABLE public.shapes_invites_child () INHERITS (invitetomedia.invites);
WITH moved AS (DELETE FROM ONLY invitetomedia.invites WHERE invite_id = :inv RETURNING *)
INSERT INTO public.shapes_invites_child SELECT * FROM moved;
SELECT * FROM pg_temp.both(:'check');
SELECT * FROM pg_temp.both(:'consume');
WITH moved AS (DELETE FROM public.shapes_invites_child RETURNING *)
INSERT INTO invitetomedia.invites SELECT * FROM moved;
DROP TABLE public.shapes_invites_child;
-- (the parent keeps relhassubclass until ANALYZE finds no child: the path
-- stays off until then)
ANALYZE invitetomedia.invites;
CREATE TABLE public.shapes_users_child () INHERITS (invitetomedia.users);
INSERT INTO public.shapes_users_child VALUES ('sh-child', 'sh@outside.example', 'S', 'H', 'viewer');
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)',
       format($$SELECT status || ' ' || user_id FROM invitetomedia.invite_consume(%L, 'sh@outside.example')$$, :'tok'),
       $$SELECT string_agg(user_id, ',' ORDER BY user_id) FROM invitetomedia.users WHERE email ILIKE 'sh@%'$$));
DROP TABLE public.shapes_users_child;
ANALYZE invitetomedia.users;

-- 9f. a DBA's trigger named invites_write_guard (the guard recognised by
-- its name) never fired
CREATE FUNCTION public.shapes_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.first_name := 'stamped';
    RETURN NEW;
END $$;
ALTER TABLE invitetomedia.invites DISABLE TRIGGER invites_write_guard;
ALTER TRIGGER invites_write_guard ON invitetomedia.invites RENAME TO shapes_guard_saved;
CREATE TRIGGER invites_write_guard BEFORE UPDATE ON invitetomedia.invites
    FOR EACH ROW EXECUTE FUNCTION public.shapes_stamp();
SELECT * FROM pg_temp.both(format($$SELECT (SELECT status || ' ' || first_name FROM invitetomedia.invite_consume(%L, 'sh@outside.example'))$$, :'tok'));
DROP TRIGGER invites_write_guard ON invitetomedia.invites;
ALTER TRIGGER shapes_guard_saved ON invitetomedia.invites RENAME TO invites_write_guard;
ALTER TABLE invitetomedia.invites ENABLE TRIGGER invites_write_guard;

-- 9g. a guest join in the same statement as a revoke answered 40001 (no
-- command counter increment before its snapshot)
SELECT * FROM pg_temp.both(format($$SELECT invitetomedia.guest_link_revoke(%s, 'owner')::text || ' '
          || (SELECT status FROM invitetomedia.guest_link_join(%L, 'g@outside.example', 'G', 'J'))$$, :gl, :'gtok'));
SELECT * FROM pg_temp.both(format($$SELECT invitetomedia.invite_revoke(%s, 'owner')::text || ' '
          || (SELECT status FROM invitetomedia.invite_consume(%L, 'sh@outside.example'))$$, :inv, :'tok'));

-- 9h. a DBA default (and CHECK) that reads a table was computed without a
-- fresh snapshot: it did not see the use the same consume had just taken
CREATE FUNCTION public.shapes_uses_now() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT sum(use_count)::integer FROM invitetomedia.invites
$$;
ALTER TABLE invitetomedia.redemptions ADD COLUMN shapes_uses integer DEFAULT public.shapes_uses_now();
SELECT * FROM pg_temp.both(format('SELECT public.both_ways_then(%L, %L)', :'consume',
       'SELECT (shapes_uses = public.shapes_uses_now())::text FROM invitetomedia.redemptions ORDER BY at DESC LIMIT 1'));
ALTER TABLE invitetomedia.redemptions DROP COLUMN shapes_uses;

-- 9i. a NULL expires_at (NOT NULL dropped): invite_check answered ok
-- where the statement says 23502
ALTER TABLE invitetomedia.invites ALTER COLUMN expires_at DROP NOT NULL;
UPDATE invitetomedia.invites SET expires_at = NULL WHERE invite_id = :inv;
SELECT * FROM pg_temp.both(:'check');
SELECT * FROM pg_temp.both(:'consume');
UPDATE invitetomedia.invites SET expires_at = now() + interval '1 day' WHERE invite_id = :inv;
ALTER TABLE invitetomedia.invites ALTER COLUMN expires_at SET NOT NULL;

-- 9j. lockout_attempts = 2147483647 was taken for "never locks"
UPDATE invitetomedia.settings SET lockout_attempts = 2147483647;
UPDATE invitetomedia.invites SET failed_attempts = 2147483647 WHERE invite_id = :inv;
SELECT * FROM pg_temp.both(:'check');
SELECT * FROM pg_temp.both(:'consume');
UPDATE invitetomedia.invites SET failed_attempts = 0 WHERE invite_id = :inv;
UPDATE invitetomedia.settings SET lockout_attempts = 5;

-- 9l. the schema renamed: the path kept the tables it had found, where the
-- statement finds none by its names (the functions called by the new name)
SELECT * FROM pg_temp.both(:'check');
ALTER SCHEMA invitetomedia RENAME TO itm_renamed;
SELECT * FROM pg_temp.both(replace(:'check', 'invitetomedia.', 'itm_renamed.'));
SELECT * FROM pg_temp.both(replace(:'consume', 'invitetomedia.', 'itm_renamed.'));
ALTER SCHEMA itm_renamed RENAME TO invitetomedia;

-- 9k. an index with indcheckxmin (made by CREATE INDEX over broken HOT
-- chains) may not be used by older snapshots: the path takes the statement
-- (set by hand here, as only a superuser could)
UPDATE pg_index SET indcheckxmin = true
 WHERE indexrelid = 'invitetomedia.invites_token_hash_key'::regclass;
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_check(:'tok');
RESET client_min_messages;
UPDATE pg_index SET indcheckxmin = false
 WHERE indexrelid = 'invitetomedia.invites_token_hash_key'::regclass;

-- and the tables as the extension made them again: the path runs (no line)
SET client_min_messages = debug1;
SELECT status FROM invitetomedia.invite_check(:'tok');
SELECT status FROM invitetomedia.guest_link_join(:'gtok2', 'g@outside.example', 'G', 'J');
RESET client_min_messages;
DROP FUNCTION public.both_ways_then(text, text);
DROP FUNCTION public.shapes_stamp();
DROP FUNCTION public.shapes_uses_now();
