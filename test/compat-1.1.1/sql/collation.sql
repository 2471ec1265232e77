-- Email and domain comparisons do not depend on the database's collation.
-- In a database with an ICU Turkish locale lower('I') is a dotless 'ı': 1.0
-- let 'new@UNIVERSITY.EDU' past a restriction on university.edu, answered
-- email_mismatch to the exact address invited, and let two users share an
-- address that differs only in case.  Every comparison is now ASCII
-- case-insensitive: the C code lower-cases ASCII, the SQL uses
-- lower(... COLLATE "C"), and so does the users' unique index.
CREATE DATABASE itm_tr TEMPLATE template0 ENCODING 'UTF8'
    LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR';
\c itm_tr
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION invitetomedia VERSION '1.1.1';
RESET client_min_messages;
\i sql/include/fixture.psql
-- the database is Turkish: SQL's lower() gives a dotless i
SELECT lower('INFO') AS turkish_lower, lower('INFO' COLLATE "C") AS ascii_lower;

UPDATE invitetomedia.settings SET enabled = true, link_reusability = 3,
       restrict_new_user_domains = '{university.edu}';

-- a restricted domain in capitals is still restricted, and so is a subdomain
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'new@UNIVERSITY.EDU', 'N', 'U')$$);
SELECT pg_temp.try($$SELECT * FROM invitetomedia.invite_create('vid', 'owner', 'new@CS.University.Edu', 'N', 'U')$$);
SELECT invitetomedia.domain_allowed('new@UNIVERSITY.EDU') AS new_user_allowed;
-- an existing user of that domain, written in another case, may be invited
SELECT invitetomedia.domain_allowed('EXISTING.PERSON@UNIVERSITY.EDU') AS existing_user_allowed;
SELECT count(*) AS made
  FROM invitetomedia.invite_create('vid', 'owner', 'existing.person@university.EDU', 'E', 'P');

-- the exact address invited, and any ASCII case of it, matches
SELECT token AS tok FROM invitetomedia.invite_create('vid', 'owner', 'INFO@Example.com', 'Ina', 'Info') \gset
SELECT status, user_id FROM invitetomedia.invite_consume(:'tok', 'INFO@Example.com');
SELECT status, user_id FROM invitetomedia.invite_consume(:'tok', 'info@example.COM');
-- the user created on the first use, found again on the second
SELECT user_id, email FROM invitetomedia.users WHERE user_id = 'info@example.com';
-- a dotless ı is another letter, not a case of i
SELECT status FROM invitetomedia.invite_consume(:'tok', 'ınfo@example.com');

-- the unique index is ASCII case-insensitive too
SELECT pg_temp.try($$INSERT INTO invitetomedia.users VALUES ('other', 'Info@EXAMPLE.com', 'O', 'T', 'viewer')$$);
SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email_lower_key';

\c itm_compat
DROP DATABASE itm_tr;
