-- invitetomedia.settings: one row, defaults, validation, normalisation
\i sql/include/fixture.psql

-- the row exists after CREATE EXTENSION, with the documented defaults
SELECT enabled, link_duration, link_reusability, allowed_users_roles,
       invite_email_template, restrict_new_user_domains, link_base_url,
       email_max_attempts, email_retry_delay
  FROM invitetomedia.settings;
-- (2.0: settings is a view of the default site; the defaults are the
-- columns' of sites, the view's order; from_address and message_id_domain
-- are 2.0's, the sender's per site)
SELECT v.column_name, t.column_default FROM information_schema.columns v
  JOIN information_schema.columns t
    ON t.table_schema = v.table_schema AND t.table_name = 'sites' AND t.column_name = v.column_name
 WHERE v.table_schema = 'invitetomedia' AND v.table_name = 'settings'
 ORDER BY v.ordinal_position;

-- it cannot be deleted, truncated or duplicated
SELECT pg_temp.try($$DELETE FROM invitetomedia.settings$$);
SELECT pg_temp.try($$TRUNCATE invitetomedia.settings$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.settings (singleton) VALUES (false)$$);
-- an INSERT while the row exists (as a 1.x restore does) updated it in
-- place; 2.0 refuses it (a restore fills sites, the view's table), and the
-- row stays as it was
SELECT pg_temp.try($$INSERT INTO invitetomedia.settings (enabled, link_duration) VALUES (true, 60)$$);
SELECT count(*), bool_and(enabled), min(link_duration) FROM invitetomedia.settings;
UPDATE invitetomedia.settings SET enabled = false, link_duration = 1440;

-- link_duration: minutes, 1 .. 525600
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = 0$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = -5$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = 525601$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = 2147483647$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = NULL$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = 1$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = 525600$$);
UPDATE invitetomedia.settings SET link_duration = 1440;

-- link_reusability: 1, -1 or N > 1; 0 and < -1 refused
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_reusability = 0$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_reusability = -2$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_reusability = -2147483648$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_reusability = -1$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_reusability = 1000$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_reusability = 1$$);

-- allowed_users_roles
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET allowed_users_roles = 'everyone'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET allowed_users_roles = 'Admin'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET allowed_users_roles = 'specific'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET allowed_users_roles = 'unmoderated_admin'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET allowed_users_roles = 'admin'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET allowed_users_roles = 'private_only'$$);

-- invite_email_template must name a template; a template in use stays,
-- renamed with it
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invite_email_template = 'missing'$$);
INSERT INTO invitetomedia.email_templates VALUES ('invite', 'Hi', 'Open {URL}');
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET invite_email_template = 'invite'$$);
-- (deleting it is refused: template_in_use.sql)
UPDATE invitetomedia.email_templates SET name = 'invite2';
SELECT invite_email_template FROM invitetomedia.settings;
UPDATE invitetomedia.settings SET invite_email_template = NULL;

-- email templates: the body needs {URL}; the subject is one line
SELECT pg_temp.try($$INSERT INTO invitetomedia.email_templates VALUES ('nourl', 'Hi', 'No link here')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.email_templates VALUES ('crlf', E'Hi\r\nBcc: all@example.com', '{URL}')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.email_templates VALUES ('  ', 'Hi', '{URL}')$$);
SELECT pg_temp.try($$UPDATE invitetomedia.email_templates SET body = 'gone'$$);

-- restrict_new_user_domains: stored lower-case, without @, de-duplicated
UPDATE invitetomedia.settings
   SET restrict_new_user_domains = '{University.EDU, @company.org, " sso.example.com ", university.edu, xn--bcher-kva.example}';
SELECT restrict_new_user_domains FROM invitetomedia.settings;
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{bad_domain.com}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{localhost}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{user@university.edu}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{bücher.example}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{-bad.com}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{a..b.com}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{10.0.0.1}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{""}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = '{NULL}'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET restrict_new_user_domains = NULL$$);
SELECT pg_temp.try(format($$UPDATE invitetomedia.settings SET restrict_new_user_domains = ARRAY[%L]$$, repeat('a', 64) || '.com'));
SELECT restrict_new_user_domains FROM invitetomedia.settings;
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{}';

-- link_base_url must be http(s)
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'ftp://media.example.com/'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'javascript:alert(1)//'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'https://'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = E'https://media.example.com/\n'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/a b/'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'HTTPS://media.example.com/invite?token='$$);
SELECT link_base_url FROM invitetomedia.settings;

-- email delivery settings
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET email_max_attempts = 0$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET email_max_attempts = 101$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET email_retry_delay = '0'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET email_retry_delay = '2 days'$$);
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET enabled = NULL$$);

-- a refused change leaves the row as it was
SELECT enabled, link_duration, link_reusability, allowed_users_roles,
       restrict_new_user_domains, email_max_attempts
  FROM invitetomedia.settings;

-- the other configuration table
SELECT pg_temp.try($$INSERT INTO invitetomedia.allowed_users VALUES ('role', 'x')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.allowed_users VALUES ('user', 'owner')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.allowed_users VALUES ('user', 'owner')$$);
-- the directory's own rules
SELECT pg_temp.try($$INSERT INTO invitetomedia.users VALUES ('x', 'OWNER@media.example', 'X', 'Y', 'viewer')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.users VALUES ('x', 'x@media.example', 'X', 'Y', 'superuser')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.media VALUES ('x', 'podcast', 'X', 'owner')$$);
SELECT pg_temp.try($$INSERT INTO invitetomedia.media_collaborators VALUES ('vid', 'viewer', 'co_author')$$);

-- a DBA role that is not a superuser can manage the settings
CREATE ROLE itm_dba;
GRANT USAGE ON SCHEMA invitetomedia TO itm_dba;
GRANT SELECT, INSERT, UPDATE ON invitetomedia.settings, invitetomedia.email_templates TO itm_dba;
SET ROLE itm_dba;
UPDATE invitetomedia.settings SET restrict_new_user_domains = '{Sso.University.EDU}', link_duration = 30;
SELECT restrict_new_user_domains, link_duration FROM invitetomedia.settings;
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_duration = 0$$);
SELECT pg_temp.try($$DELETE FROM invitetomedia.settings$$);
RESET ROLE;
REVOKE ALL ON invitetomedia.settings, invitetomedia.email_templates FROM itm_dba;
REVOKE ALL ON SCHEMA invitetomedia FROM itm_dba;
DROP ROLE itm_dba;

-- an INSERT never silently resets what it does not name: 1.x replaced the
-- row only while the row held the defaults (a restore into a new
-- database), and refused it once the row was changed; 2.0 refuses it
-- always (0A000), defaults or not
UPDATE invitetomedia.settings
   SET enabled = false, link_duration = 1440, link_reusability = 1,
       allowed_users_roles = 'private_only', invite_email_template = NULL,
       restrict_new_user_domains = '{}', link_base_url = 'http://localhost/invitetomedia/',
       email_max_attempts = 8, email_retry_delay = '1 minute';
SELECT pg_temp.try($$INSERT INTO invitetomedia.settings (enabled, link_duration) VALUES (true, 60)$$);
SELECT enabled, link_duration, link_base_url FROM invitetomedia.settings;
UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/join/';
SELECT pg_temp.try($$INSERT INTO invitetomedia.settings (enabled, link_duration) VALUES (true, 90)$$);
SELECT enabled, link_duration, link_base_url FROM invitetomedia.settings;
-- back to every default: 1.x's INSERT could replace it again; 2.0's cannot
UPDATE invitetomedia.settings SET enabled = false, link_duration = 1440,
       link_base_url = 'http://localhost/invitetomedia/';
SELECT pg_temp.try($$INSERT INTO invitetomedia.settings (link_reusability) VALUES (2)$$);
SELECT enabled, link_duration, link_reusability FROM invitetomedia.settings;
SELECT count(*) AS rows FROM invitetomedia.settings;

-- a link_base_url the token would be glued onto
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/invitetomedia'$$);
UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/join?token=';
UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/#/invite/';
SELECT link_base_url FROM invitetomedia.settings;
-- the CHECK holds where triggers do not fire
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT pg_temp.try($$UPDATE invitetomedia.settings SET link_base_url = 'https://media.example.com/x'$$);
COMMIT;
