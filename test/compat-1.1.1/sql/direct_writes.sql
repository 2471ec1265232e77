-- Direct writes cannot bypass the settings.  Links are written through the
-- API only: a role a DBA granted INSERT, UPDATE, DELETE or TRUNCATE on
-- invitetomedia.invites is refused (42501) whatever the settings and the
-- policies say, so it can neither insert a link invite_create would refuse
-- nor un-revoke one.  Reading stays governed by the invites_read policy.
-- TRUNCATE by the owner takes the records and the unsent messages along.
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true;
INSERT INTO invitetomedia.email_templates VALUES ('t', 'Invitation', 'Open {URL}');
UPDATE invitetomedia.settings SET invite_email_template = 't';

SET client_min_messages = warning;
DROP ROLE IF EXISTS coeditor, regress_itm_writer;
RESET client_min_messages;
-- a database role named like a directory user (the policies' convention)
CREATE ROLE coeditor;
CREATE ROLE regress_itm_writer;
GRANT USAGE ON SCHEMA invitetomedia TO coeditor, regress_itm_writer;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON invitetomedia.invites TO coeditor, regress_itm_writer;
GRANT USAGE ON SEQUENCE invitetomedia.invites_invite_id_seq TO coeditor, regress_itm_writer;
GRANT EXECUTE ON FUNCTION invitetomedia.may_invite(text, text) TO coeditor, regress_itm_writer;

SELECT invite_id AS live_id FROM invitetomedia.invite_create('live', 'owner', 'guest@outside.example', 'Gina', 'Guest') \gset
SELECT invitetomedia.invite_revoke(:live_id, 'admin') AS revoked_by_admin;
UPDATE invitetomedia.settings SET enabled = false;

-- while the module is disabled, a link with unlimited uses, no expiry, a
-- speaker role on a video and a line break in a name: refused
SET ROLE coeditor;
SELECT pg_temp.try($$INSERT INTO invitetomedia.invites
    (token_hash, media_id, role, email, first_name, last_name, invited_by, expires_at, max_uses)
    VALUES (sha256('x'), 'vid', 'speaker', 'x@outside.example', E'Evil\r\nBcc: y', 'L',
            'coeditor', 'infinity', -1)$$);
-- the co-editor sees the links on its media, and cannot un-revoke one
SELECT invite_id = :live_id AS sees_it, revoked_at IS NOT NULL AS revoked FROM invitetomedia.invites;
SELECT pg_temp.try($$UPDATE invitetomedia.invites SET revoked_at = NULL, revoked_by = NULL$$);
SELECT pg_temp.try($$DELETE FROM invitetomedia.invites$$);
SELECT pg_temp.try($$TRUNCATE invitetomedia.invites$$);
RESET ROLE;
-- a role of no directory user is refused the same way
SET ROLE regress_itm_writer;
SELECT pg_temp.try($$UPDATE invitetomedia.invites SET max_uses = -1$$);
SELECT count(*) AS visible FROM invitetomedia.invites;
RESET ROLE;
SELECT revoked_at IS NOT NULL AS still_revoked, max_uses FROM invitetomedia.invites WHERE invite_id = :live_id;
SELECT pg_temp.rows();

-- the owner (the API, a superuser DBA) still writes
UPDATE invitetomedia.invites SET first_name = 'Gina' WHERE invite_id = :live_id;

-- TRUNCATE leaves no due message behind
UPDATE invitetomedia.settings SET enabled = true;
SELECT token AS tok FROM invitetomedia.invite_create('live', 'owner', 'mail@outside.example', 'M', 'L', 'viewer', true) \gset
SELECT status FROM invitetomedia.invite_consume(:'tok', 'mail@outside.example');
SELECT pg_temp.rows();
SELECT state, messages FROM invitetomedia.email_queue;
TRUNCATE invitetomedia.invites;
SELECT pg_temp.rows();
SELECT count(*) AS claimable FROM invitetomedia.email_claim();
-- together with the other tables, as a reset does
SELECT count(*) FROM invitetomedia.invite_create('live', 'owner', 'mail@outside.example', 'M', 'L', 'viewer', true);
TRUNCATE invitetomedia.invites, invitetomedia.redemptions, invitetomedia.outbox;
SELECT pg_temp.rows();

DROP OWNED BY coeditor, regress_itm_writer;
DROP ROLE coeditor, regress_itm_writer;
