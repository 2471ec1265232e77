/* invitetomedia--1.0--1.0.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invitetomedia UPDATE TO '1.0.1'" to load this file. \quit

/*
 * Release 1.0.1: the fixes of the 1.0 security review.  A fresh install of
 * 1.0.1 runs invitetomedia--1.0.sql and then this script, so an updated
 * database and a fresh one are built by the same statements.
 *
 * The checks that run first refuse the update, with a hint, when the data
 * would break a new constraint; nothing has changed at that point.
 */

------------------------------------------------------------------------------
-- what the data must satisfy before anything changes
------------------------------------------------------------------------------

DO $$
DECLARE
    dup text;
    tmpl text;
BEGIN
    -- the users' email index becomes ASCII case-insensitive whatever the
    -- database's collation: two addresses that differ only in ASCII case
    -- were distinct to a Turkish lower() and would now collide
    SELECT pg_catalog.string_agg(pg_catalog.quote_literal(k), ', ')
      INTO dup
      FROM (SELECT pg_catalog.lower(u.email COLLATE "C") AS k
              FROM invitetomedia.users u
             WHERE u.email IS NOT NULL
             GROUP BY 1
            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
             LIMIT 10) d;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'invitetomedia.users holds email addresses that differ only in letter case: %', dup
            USING ERRCODE = 'unique_violation',
                  DETAIL = '1.0.1 compares addresses ASCII case-insensitively whatever the database''s collation, so each address must belong to one user.',
                  HINT = 'Merge or correct those users, then run ALTER EXTENSION invitetomedia UPDATE again.';
    END IF;

    -- a link_base_url the token would be glued onto ('https://x/join')
    IF EXISTS (SELECT 1 FROM invitetomedia.settings s
                WHERE pg_catalog."right"(s.link_base_url, 1) OPERATOR(pg_catalog.<>) ALL
                      (ARRAY['/', '=', '?', '#', '&'])) THEN
        RAISE EXCEPTION 'settings.link_base_url does not end in /, =, ?, # or &: %',
                        (SELECT pg_catalog.quote_literal(s.link_base_url) FROM invitetomedia.settings s)
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The token is appended to link_base_url as it is: links made with it do not work.',
                  HINT = 'Add the missing / (or ?token=) with UPDATE invitetomedia.settings SET link_base_url = ..., then run ALTER EXTENSION invitetomedia UPDATE again.';
    END IF;

    -- a {URL} in a subject would keep the live link after the body is scrubbed
    SELECT pg_catalog.string_agg(pg_catalog.quote_literal(t.name), ', ')
      INTO tmpl
      FROM invitetomedia.email_templates t
     WHERE pg_catalog.strpos(t.subject, '{URL}') OPERATOR(pg_catalog.>) 0;
    IF tmpl IS NOT NULL THEN
        RAISE EXCEPTION 'email templates with {URL} in the subject: %', tmpl
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A subject is kept after the message is sent; the link belongs in the body only.',
                  HINT = 'Remove {URL} from those subjects, then run ALTER EXTENSION invitetomedia UPDATE again.';
    END IF;
END
$$;

------------------------------------------------------------------------------
-- settings a DBA cannot wreck by accident, and errors that say what to do
------------------------------------------------------------------------------

-- the token is appended to link_base_url: it must end where a token can
-- follow (the trigger says so in words; the CHECK is the rule)
ALTER TABLE invitetomedia.settings
    ADD CONSTRAINT settings_link_base_url_ends_before_token
    CHECK (pg_catalog."right"(link_base_url, 1) OPERATOR(pg_catalog.=) ANY
           (ARRAY['/', '=', '?', '#', '&']));

CREATE OR REPLACE FUNCTION invitetomedia.settings_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d text;
    problem text;
    normalized text[] := '{}';
BEGIN
    IF NEW.singleton IS DISTINCT FROM true THEN
        RAISE EXCEPTION 'invitetomedia.settings holds exactly one row'
            USING ERRCODE = 'check_violation',
                  HINT = 'Update the existing row instead.';
    END IF;
    IF NEW.link_duration IS NULL OR NEW.link_duration < 1 OR NEW.link_duration > 525600 THEN
        RAISE EXCEPTION 'invalid link_duration: %', coalesce(NEW.link_duration::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'link_duration is in minutes and must be between 1 and 525600 (one year).';
    END IF;
    IF NEW.link_reusability IS NULL OR NEW.link_reusability = 0 OR NEW.link_reusability < -1 THEN
        RAISE EXCEPTION 'invalid link_reusability: %', coalesce(NEW.link_reusability::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'link_reusability is 1 for a single-use link, -1 for unlimited uses, or a number of uses greater than 1.';
    END IF;
    IF NEW.allowed_users_roles IS NULL OR NEW.allowed_users_roles
            NOT IN ('private_only', 'admin', 'unmoderated_admin', 'specific') THEN
        RAISE EXCEPTION 'invalid allowed_users_roles: %', coalesce(quote_literal(NEW.allowed_users_roles), 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'allowed_users_roles is one of ''private_only'', ''admin'', ''unmoderated_admin'', ''specific''.';
    END IF;
    IF NEW.restrict_new_user_domains IS NULL THEN
        RAISE EXCEPTION 'invalid restrict_new_user_domains: NULL'
            USING ERRCODE = 'check_violation',
                  HINT = 'Use an empty array to restrict no domain.';
    END IF;
    FOREACH d IN ARRAY NEW.restrict_new_user_domains LOOP
        IF d IS NULL THEN
            RAISE EXCEPTION 'invalid restrict_new_user_domains: NULL element'
                USING ERRCODE = 'check_violation',
                      DETAIL = 'Each element is a domain such as ''university.edu''.';
        END IF;
        BEGIN
            d := invitetomedia.normalize_domain(d);
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS problem = PG_EXCEPTION_DETAIL;
            RAISE EXCEPTION 'invalid restrict_new_user_domains element %', quote_literal(left(d, 100))
                USING ERRCODE = 'check_violation',
                      DETAIL = problem,
                      HINT = 'Each element is a domain such as ''university.edu'' (lower-case, without @); internationalised domains in punycode (xn--).';
        END;
        IF NOT d = ANY (normalized) THEN
            normalized := normalized || d;
        END IF;
    END LOOP;
    NEW.restrict_new_user_domains := normalized;
    IF NEW.link_base_url IS NULL
       OR NEW.link_base_url !~* '^https?://[^\s/?#]+[^\s]*$'
       OR NEW.link_base_url ~ '[\x01-\x20\x7f]'
       OR length(NEW.link_base_url) > 2000 THEN
        RAISE EXCEPTION 'invalid link_base_url: %', coalesce(quote_literal(left(NEW.link_base_url, 100)), 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'link_base_url must be an http:// or https:// URL with a host, without spaces or control characters, at most 2000 characters.',
                  HINT = 'The token is appended to it, e.g. ''https://media.example.com/invitetomedia/''.';
    END IF;

    -- the token is glued on: 'https://x/join' would give 'https://x/joinitm_...'
    IF right(NEW.link_base_url, 1) NOT IN ('/', '=', '?', '#', '&') THEN
        RAISE EXCEPTION 'invalid link_base_url: %', quote_literal(left(NEW.link_base_url, 100))
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The token is appended to link_base_url as it is, so it must end in /, =, ?, # or &.',
                  HINT = format('Write %L for a path, or %L for a query parameter.',
                                left(NEW.link_base_url, 100) || '/', left(NEW.link_base_url, 100) || '?token=');
    END IF;
    IF NEW.email_max_attempts IS NULL OR NEW.email_max_attempts < 1 OR NEW.email_max_attempts > 100 THEN
        RAISE EXCEPTION 'invalid email_max_attempts: %', coalesce(NEW.email_max_attempts::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'email_max_attempts must be between 1 and 100.';
    END IF;
    IF NEW.email_retry_delay IS NULL OR NEW.email_retry_delay < '1 second'
       OR NEW.email_retry_delay > '1 day' THEN
        RAISE EXCEPTION 'invalid email_retry_delay: %', coalesce(NEW.email_retry_delay::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'email_retry_delay must be between 1 second and 1 day.';
    END IF;
    -- a name that no template has: the foreign key would say so too, by its
    -- constraint name only.  (A role that may not read the templates gets
    -- the foreign key's message.)
    IF NEW.invite_email_template IS NOT NULL THEN
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM invitetomedia.email_templates t
                            WHERE t.name = NEW.invite_email_template) THEN
                RAISE EXCEPTION 'invalid invite_email_template: %', quote_literal(left(NEW.invite_email_template, 100))
                    USING ERRCODE = 'foreign_key_violation',
                          DETAIL = 'No row of invitetomedia.email_templates has that name.',
                          HINT = 'Create the template first (INSERT INTO invitetomedia.email_templates (name, subject, body) ...), or set invite_email_template to NULL to send no invite emails.';
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END IF;
    IF NEW.enabled IS NULL THEN
        RAISE EXCEPTION 'invalid enabled: NULL'
            USING ERRCODE = 'check_violation',
                  DETAIL = 'enabled is true or false.';
    END IF;

    -- A second row is never stored.  An INSERT while the row exists (as
    -- pg_restore does after CREATE EXTENSION made the default row) replaces
    -- the existing row, but only while that row still holds the defaults:
    -- an INSERT must never silently reset what a DBA set and did not name.
    IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM invitetomedia.settings) THEN
        IF NOT EXISTS (
            SELECT 1 FROM invitetomedia.settings s
             WHERE s.enabled = false AND s.link_duration = 1440
               AND s.link_reusability = 1 AND s.allowed_users_roles = 'private_only'
               AND s.invite_email_template IS NULL AND s.restrict_new_user_domains = '{}'
               AND s.link_base_url = 'http://localhost/invitetomedia/'
               AND s.email_max_attempts = 8 AND s.email_retry_delay = '1 minute') THEN
            RAISE EXCEPTION 'invitetomedia.settings already holds its row, changed since the install'
                USING ERRCODE = 'unique_violation',
                      DETAIL = 'An INSERT replaces the row only while it holds the defaults (as when a restore fills a new database), so that it cannot reset settings it does not name.',
                      HINT = 'Change settings with UPDATE invitetomedia.settings SET ...';
        END IF;
        UPDATE invitetomedia.settings s SET
            enabled = NEW.enabled,
            link_duration = NEW.link_duration,
            link_reusability = NEW.link_reusability,
            allowed_users_roles = NEW.allowed_users_roles,
            invite_email_template = NEW.invite_email_template,
            restrict_new_user_domains = NEW.restrict_new_user_domains,
            link_base_url = NEW.link_base_url,
            email_max_attempts = NEW.email_max_attempts,
            email_retry_delay = NEW.email_retry_delay;
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
-- Templates get the same treatment: the CHECKs stay the rule, this names
-- the problem and the fix.
CREATE FUNCTION invitetomedia.email_templates_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.body IS NOT NULL AND strpos(NEW.body, '{URL}') = 0 THEN
        RAISE EXCEPTION 'invalid body for email template %: it has no {URL}', quote_literal(left(NEW.name, 100))
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The link is written where {URL} stands; a body without it would send no link.',
                  HINT = 'Put {URL} in the body, e.g. ''Open {URL} to join.''';
    END IF;
    IF NEW.subject IS NOT NULL AND strpos(NEW.subject, '{URL}') > 0 THEN
        RAISE EXCEPTION 'invalid subject for email template %: it has {URL}', quote_literal(left(NEW.name, 100))
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A subject is kept after the message is sent, when the body and its live link are scrubbed.',
                  HINT = 'Put {URL} in the body only.';
    END IF;
    IF NEW.subject IS NOT NULL AND NEW.subject ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'invalid subject for email template %: it holds a control character', quote_literal(left(NEW.name, 100))
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A subject is one line: line breaks and other control characters are refused.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_templates_validate() IS
'trigger: explains why an email template is refused ({URL} missing from the body or in the subject, a control character in the subject)';
CREATE TRIGGER email_templates_validate
    BEFORE INSERT OR UPDATE ON invitetomedia.email_templates
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.email_templates_validate();

------------------------------------------------------------------------------
-- comparisons that do not depend on the database's collation
------------------------------------------------------------------------------

-- lower() follows the collation (a Turkish one lower-cases 'I' to a dotless
-- 'ı'); lower(... COLLATE "C") lower-cases ASCII only, as the C code does.
DROP INDEX invitetomedia.users_email_lower_key;
CREATE UNIQUE INDEX users_email_lower_key
    ON invitetomedia.users (pg_catalog.lower(email COLLATE "C"));
COMMENT ON TABLE invitetomedia.users IS
'directory of the host application''s users; email is unique ASCII case-insensitively';

CREATE OR REPLACE FUNCTION invitetomedia.domain_allowed(email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN
        -- an existing user may always be invited
        EXISTS (SELECT 1 FROM invitetomedia.users u
                 WHERE pg_catalog.lower(u.email COLLATE "C") OPERATOR(pg_catalog.=)
                       pg_catalog.lower(pg_catalog.btrim(domain_allowed.email) COLLATE "C"))
        -- a new user only from a domain that is not, nor is below, a restricted one
        OR NOT EXISTS (
            SELECT 1
              FROM invitetomedia.settings s,
                   pg_catalog.unnest(s.restrict_new_user_domains) AS r(domain),
                   pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(
                       domain_allowed.email, '@([^@]*)$')) COLLATE "C") AS e(domain)
             WHERE e.domain OPERATOR(pg_catalog.=) r.domain
                OR pg_catalog."right"(e.domain, pg_catalog.length(r.domain) OPERATOR(pg_catalog.+) 1)
                   OPERATOR(pg_catalog.=) ('.' OPERATOR(pg_catalog.||) r.domain));
END
$$;

-- The directory is the application's: a DBA may retype users.role (to an
-- enum, say).  The rule reads it as text whatever its type.
CREATE OR REPLACE FUNCTION invitetomedia.may_invite(actor_id text, media_id text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1
          FROM invitetomedia.users u
          JOIN invitetomedia.media m ON m.media_id OPERATOR(pg_catalog.=) may_invite.media_id
          CROSS JOIN invitetomedia.settings s
         WHERE u.user_id OPERATOR(pg_catalog.=) may_invite.actor_id
           -- the owner, or a collaborator who manages the entry (not co_viewer)
           AND (m.owner_id OPERATOR(pg_catalog.=) u.user_id
                OR EXISTS (SELECT 1 FROM invitetomedia.media_collaborators c
                            WHERE c.media_id OPERATOR(pg_catalog.=) m.media_id
                              AND c.user_id OPERATOR(pg_catalog.=) u.user_id
                              AND c.permission OPERATOR(pg_catalog.=) ANY
                                  (ARRAY['co_owner', 'co_editor', 'co_publisher'])))
           -- and passes settings.allowed_users_roles
           AND CASE s.allowed_users_roles
                WHEN 'private_only' THEN invitetomedia.role_rank(u.role::pg_catalog.text)
                     OPERATOR(pg_catalog.>=) invitetomedia.role_rank('private_only')
                WHEN 'admin' THEN invitetomedia.role_rank(u.role::pg_catalog.text)
                     OPERATOR(pg_catalog.>=) invitetomedia.role_rank('admin')
                WHEN 'unmoderated_admin' THEN u.role::pg_catalog.text OPERATOR(pg_catalog.=) 'unmoderated_admin'
                WHEN 'specific' THEN
                     EXISTS (SELECT 1 FROM invitetomedia.allowed_users a
                              WHERE a.principal_type OPERATOR(pg_catalog.=) 'user'
                                AND a.principal_id OPERATOR(pg_catalog.=) u.user_id)
                  OR EXISTS (SELECT 1 FROM invitetomedia.allowed_users a
                               JOIN invitetomedia.group_members g
                                 ON g.group_id OPERATOR(pg_catalog.=) a.principal_id
                              WHERE a.principal_type OPERATOR(pg_catalog.=) 'group'
                                AND g.user_id OPERATOR(pg_catalog.=) u.user_id)
                ELSE false
               END);
END
$$;
-- invite_consume finds the invitee's user through the new index: the 1.0.1
-- entry point of the library uses lower(email COLLATE "C").  (The 1.0 entry
-- point keeps the 1.0 look-up, which a 1.0 database's index serves.)
CREATE OR REPLACE FUNCTION invitetomedia.invite_consume(token text, email text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, invite_id bigint, media_id text, role text, user_id text,
              first_name text, last_name text, uses_left integer, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_consume_1_0_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

------------------------------------------------------------------------------
-- nothing live or dangerous in rendered subjects
------------------------------------------------------------------------------

ALTER TABLE invitetomedia.email_templates
    ADD CONSTRAINT email_templates_subject_no_url
    CHECK (pg_catalog.strpos(subject, '{URL}') OPERATOR(pg_catalog.=) 0);
COMMENT ON TABLE invitetomedia.email_templates IS
'invite email templates; placeholders {URL} (required in the body, refused in the subject), {FIRST_NAME}, {LAST_NAME}, {EMAIL}, {MEDIA_TITLE}, {ROLE}, {EXPIRES_AT}, {INVITER_NAME}';

-- The library replaces every run of control characters in a rendered
-- subject by one space (a media title may hold a line break); messages
-- queued before the update are mended the same way, and the CHECK holds it.
UPDATE invitetomedia.outbox
   SET subject = pg_catalog.regexp_replace(subject, '[\x01-\x1f\x7f-\x9f]+', ' ', 'g')
 WHERE subject OPERATOR(pg_catalog.~) '[\x01-\x1f\x7f-\x9f]';
ALTER TABLE invitetomedia.outbox
    ADD CONSTRAINT outbox_subject_single_line
    CHECK (subject OPERATOR(pg_catalog.!~) '[\x01-\x1f\x7f-\x9f]');

------------------------------------------------------------------------------
-- direct writes cannot bypass the settings
------------------------------------------------------------------------------

-- Links are written by the API functions only (they run as the owner).  A
-- role a DBA grants INSERT, UPDATE, DELETE or TRUNCATE on invites is
-- refused: policies that repeated every rule of invite_create would be a
-- second copy of the rules to keep in step, and one that missed a rule was
-- a way around it (see README, "Security model").  Reading stays governed
-- by the invites_read policy.
DROP POLICY invites_insert ON invitetomedia.invites;
DROP POLICY invites_update ON invitetomedia.invites;
DROP POLICY invites_delete ON invitetomedia.invites;

CREATE FUNCTION invitetomedia.invites_write_guard() RETURNS trigger
AS 'MODULE_PATHNAME', 'invites_write_guard'
LANGUAGE C;
COMMENT ON FUNCTION invitetomedia.invites_write_guard() IS
'trigger: refuses direct INSERT, UPDATE, DELETE and TRUNCATE on invitetomedia.invites to every role but its owner';
CREATE TRIGGER invites_write_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON invitetomedia.invites
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.invites_write_guard();

-- TRUNCATE fires no DELETE trigger: without this, unsent messages of the
-- truncated links would still be sent.  Every invite is gone, so every
-- record and message goes with them.
CREATE FUNCTION invitetomedia.invites_truncate_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions;
    DELETE FROM invitetomedia.outbox;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.invites_truncate_cleanup() IS
'trigger: after TRUNCATE of invitetomedia.invites, deletes every redemption record and outbox message';
CREATE TRIGGER invites_truncate_cleanup
    AFTER TRUNCATE ON invitetomedia.invites
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.invites_truncate_cleanup();

------------------------------------------------------------------------------
-- claims with an identity: a late confirmation cannot disturb a newer claim
------------------------------------------------------------------------------

ALTER TABLE invitetomedia.outbox
    ADD COLUMN claim_no integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN invitetomedia.outbox.claim_no IS
'how many times the message was claimed; email_claim returns it as the claim''s identity';

-- A message's identity outside this database: message_id repeats in a
-- second database, a reinstall or a restored copy, and a receiver that
-- de-duplicates on Message-ID would drop real mail.  Random, kept with the
-- message, so every retry of it carries the same one.
ALTER TABLE invitetomedia.outbox
    ADD COLUMN message_key uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid();
COMMENT ON COLUMN invitetomedia.outbox.message_key IS
'random identity of the message for its Message-ID header: unique across databases, stable across retries';

-- email_claim returns one more column, which needs a new function; the old
-- one is renamed first so that the grants a DBA gave on it can be carried
-- over below, then dropped.
ALTER FUNCTION invitetomedia.email_claim(integer, interval) RENAME TO email_claim_1_0;

CREATE FUNCTION invitetomedia.email_claim(batch integer DEFAULT 10, lease interval DEFAULT '5 minutes')
RETURNS TABLE(message_id bigint, to_email text, to_name text, subject text, body text,
              claim_no integer, message_key uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_attempts integer;
BEGIN
    IF batch IS NULL OR lease IS NULL THEN
        RAISE EXCEPTION 'email_claim: batch and lease must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF batch < 1 OR batch > 1000 THEN
        RAISE EXCEPTION 'email_claim: batch must be between 1 and 1000, not %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease < '1 second' OR lease > '1 day' THEN
        RAISE EXCEPTION 'email_claim: lease must be between 1 second and 1 day, not %', lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.email_max_attempts INTO max_attempts FROM invitetomedia.settings s;

    -- A claimed message whose lease ran out was never confirmed: the sender
    -- died with it in hand.  If that was its last attempt it is dead.
    UPDATE invitetomedia.outbox o
       SET dead_at = now(), claimed_until = NULL,
           last_error = coalesce(o.last_error, 'lease expired without confirmation')
     WHERE o.sent_at IS NULL AND o.dead_at IS NULL
       AND o.next_attempt_at <= now()
       AND o.attempts >= max_attempts;

    RETURN QUERY
    WITH due AS (
        SELECT o.message_id
          FROM invitetomedia.outbox o
         WHERE o.sent_at IS NULL AND o.dead_at IS NULL
           AND o.next_attempt_at <= now()
         ORDER BY o.next_attempt_at, o.message_id
         LIMIT batch
           FOR UPDATE SKIP LOCKED)
    UPDATE invitetomedia.outbox o
       SET attempts = o.attempts + 1,
           claim_no = o.claim_no + 1,
           claimed_until = now() + lease,
           next_attempt_at = now() + lease
      FROM due
     WHERE o.message_id = due.message_id
    RETURNING o.message_id, o.to_email, o.to_name, o.subject, o.body, o.claim_no, o.message_key;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_claim(integer, interval) IS
'claims up to batch due outbox messages for lease (FOR UPDATE SKIP LOCKED: no two senders get the same message); claim_no identifies the claim for email_sent, email_failed and email_release; message_key identifies the message for its Message-ID';

CREATE FUNCTION invitetomedia.email_sent(message_id bigint, claim_no integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_claim integer;
BEGIN
    IF message_id IS NULL OR claim_no IS NULL THEN
        RAISE EXCEPTION 'email_sent: message_id and claim_no must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the body holds a live link: it is not kept once delivered
    UPDATE invitetomedia.outbox o
       SET sent_at = now(), body = NULL, claimed_until = NULL, last_error = NULL
     WHERE o.message_id = email_sent.message_id AND o.sent_at IS NULL
       AND o.claim_no = email_sent.claim_no;
    IF FOUND THEN
        RETURN true;
    END IF;
    SELECT o.claim_no INTO current_claim
      FROM invitetomedia.outbox o
     WHERE o.message_id = email_sent.message_id AND o.sent_at IS NULL;
    IF current_claim IS DISTINCT FROM email_sent.claim_no AND current_claim IS NOT NULL THEN
        RAISE WARNING 'claim % of outbox message % is superseded by claim %; nothing changed',
                      email_sent.claim_no, email_sent.message_id, current_claim
            USING DETAIL = 'The lease ran out and another sender claimed the message: it will be sent again.',
                  HINT = 'Use a lease longer than a delivery can take.';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_sent(bigint, integer) IS
'marks an outbox message sent under claim claim_no and scrubs its body; false if already sent, no longer queued, or the claim was superseded (then nothing changes)';

CREATE FUNCTION invitetomedia.email_failed(message_id bigint, error text, claim_no integer,
                                           permanent boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.settings;
    current_claim integer;
    result text;
BEGIN
    IF message_id IS NULL OR claim_no IS NULL OR permanent IS NULL THEN
        RAISE EXCEPTION 'email_failed: message_id, claim_no and permanent must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT o.claim_no INTO current_claim
      FROM invitetomedia.outbox o
     WHERE o.message_id = email_failed.message_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF current_claim IS DISTINCT FROM email_failed.claim_no THEN
        RAISE WARNING 'claim % of outbox message % is superseded by claim %; nothing changed',
                      email_failed.claim_no, email_failed.message_id, current_claim
            USING DETAIL = 'The lease ran out and another sender claimed the message.';
        RETURN 'superseded';
    END IF;
    SELECT * INTO st FROM invitetomedia.settings;
    UPDATE invitetomedia.outbox o
       SET last_error = left(coalesce(error, 'unknown error'), 1000),
           claimed_until = NULL,
           -- a failure that retrying cannot mend (a message that cannot be
           -- built, a mailer's permanent refusal) is dead at once
           dead_at = CASE WHEN email_failed.permanent OR o.attempts >= st.email_max_attempts
                          THEN now() END,
           -- exponential backoff: delay, 2 x delay, 4 x delay ... capped at 1 day
           next_attempt_at = now() + least(st.email_retry_delay
                                           * power(2, least(greatest(o.attempts - 1, 0), 20)),
                                           '1 day'::interval)
     WHERE o.message_id = email_failed.message_id
    RETURNING CASE WHEN o.dead_at IS NULL THEN 'pending' ELSE 'dead' END INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_failed(bigint, text, integer, boolean) IS
'records a failed delivery under claim claim_no: pending or dead as email_failed(bigint, text), dead at once if permanent; superseded (nothing changed) if another claim is current; NULL if not queued';

CREATE FUNCTION invitetomedia.email_release(message_id bigint, claim_no integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF message_id IS NULL OR claim_no IS NULL THEN
        RAISE EXCEPTION 'email_release: message_id and claim_no must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- not attempted: the claim's attempt is given back and the message is
    -- due now, so that restarts cannot use up its attempts untried
    UPDATE invitetomedia.outbox o
       SET attempts = greatest(o.attempts - 1, 0),
           claimed_until = NULL,
           next_attempt_at = now()
     WHERE o.message_id = email_release.message_id
       AND o.claim_no = email_release.claim_no
       AND o.claimed_until IS NOT NULL
       AND o.sent_at IS NULL AND o.dead_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_release(bigint, integer) IS
'hands back a message claimed under claim_no but not attempted (a sender stopping): due now, the attempt not counted; false if the claim is no longer current';

------------------------------------------------------------------------------
-- privileges: exactly the documented ones
------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION invitetomedia.email_claim(integer, interval),
                       invitetomedia.email_sent(bigint, integer),
                       invitetomedia.email_failed(bigint, text, integer, boolean),
                       invitetomedia.email_release(bigint, integer),
                       invitetomedia.email_templates_validate(),
                       invitetomedia.invites_write_guard(),
                       invitetomedia.invites_truncate_cleanup()
    FROM PUBLIC;


/*
 * Default privileges (ALTER DEFAULT PRIVILEGES ... GRANT) of the installing
 * role land on every object an extension script creates.  Whatever such a
 * grant gave, on any member of the extension, is revoked here; it is found
 * in pg_init_privs, which holds the privileges as the scripts left them.
 * Grants a DBA made after the install are not there, and are kept.  The
 * documented grants (EXECUTE on the two pure helpers to PUBLIC) stay.
 *
 * A GRANT or REVOKE run by an extension script records the object's whole
 * ACL as the extension's own, the DBA's grants included, and pg_dump leaves
 * those out: so each object's recorded privileges are set back to what the
 * scripts gave, less what is revoked here.  Future update scripts run this
 * same block over their new objects.
 */
DO $$
DECLARE
    obj record;
    r record;
BEGIN
    FOR obj IN
        SELECT i.classoid, i.objoid, i.initprivs,
               CASE o.type WHEN 'function' THEN 'FUNCTION'
                           WHEN 'sequence' THEN 'SEQUENCE'
                           ELSE 'TABLE' END AS kind,
               o.identity,
               d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY[
                   'invitetomedia.role_rank(text)'::pg_catalog.regprocedure,
                   'invitetomedia.normalize_domain(text)'::pg_catalog.regprocedure]::pg_catalog.oid[])
                 AS public_may_execute
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_init_privs i
            ON i.classoid OPERATOR(pg_catalog.=) d.classid
           AND i.objoid OPERATOR(pg_catalog.=) d.objid
           AND i.objsubid OPERATOR(pg_catalog.=) 0
          CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=)
               (SELECT e.oid FROM pg_catalog.pg_extension e
                 WHERE e.extname OPERATOR(pg_catalog.=) 'invitetomedia')
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
           AND o.type OPERATOR(pg_catalog.=) ANY
               (ARRAY['table', 'view', 'sequence', 'function'])
         ORDER BY o.identity
    LOOP
        -- an ACL item is the grants of one grantor to one grantee
        FOR r IN
            SELECT a.privilege_type,
                   CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                        ELSE pg_catalog.quote_ident(a.grantee::pg_catalog.regrole::pg_catalog.text)
                   END AS grantee
              FROM pg_catalog.aclexplode(obj.initprivs) a
             WHERE a.grantee OPERATOR(pg_catalog.<>) a.grantor
               AND NOT (obj.public_may_execute AND a.grantee OPERATOR(pg_catalog.=) 0
                        AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE')
             ORDER BY 2, 1
        LOOP
            EXECUTE pg_catalog.format('REVOKE %s ON %s %s FROM %s CASCADE',
                                      r.privilege_type, obj.kind, obj.identity, r.grantee);
            RAISE NOTICE 'revoked % on % % from % (a default privilege of the installing role)',
                         r.privilege_type, pg_catalog.lower(obj.kind), obj.identity, r.grantee;
        END LOOP;
        IF FOUND THEN
            UPDATE pg_catalog.pg_init_privs i
               SET initprivs = ARRAY(
                       SELECT x FROM pg_catalog.unnest(obj.initprivs) AS x
                        WHERE (SELECT a.grantee OPERATOR(pg_catalog.=) a.grantor
                                      OR (obj.public_may_execute AND a.grantee OPERATOR(pg_catalog.=) 0)
                                 FROM pg_catalog.aclexplode(ARRAY[x]) a LIMIT 1))
             WHERE i.classoid OPERATOR(pg_catalog.=) obj.classoid
               AND i.objoid OPERATOR(pg_catalog.=) obj.objoid
               AND i.objsubid OPERATOR(pg_catalog.=) 0;
        END IF;
    END LOOP;
END
$$;

-- (after the revocations above, so that the grants carried over stay)
DO $$
DECLARE
    fn record;
    r record;
    saved pg_catalog.aclitem[];
BEGIN
    /*
     * A sender role keeps working across the update: what a DBA granted on
     * the 1.0 email_claim, email_sent and email_failed (grants that are not
     * the extension's own, i.e. not in pg_init_privs) is granted on their
     * 1.0.1 forms too, and email_release goes with email_claim.  A grant made by an extension script counts as the
     * extension's own, which pg_dump leaves out (a restore would lose it):
     * each new function's recorded initial privileges are put back as they
     * were before these grants.
     */
    FOR fn IN
        SELECT pairs.old_fn::pg_catalog.regprocedure AS old_oid,
               pairs.new_fn::pg_catalog.regprocedure AS new_oid
          FROM (VALUES ('invitetomedia.email_claim_1_0(integer, interval)',
                        'invitetomedia.email_claim(integer, interval)'),
                       ('invitetomedia.email_sent(bigint)',
                        'invitetomedia.email_sent(bigint, integer)'),
                       ('invitetomedia.email_failed(bigint, text)',
                        'invitetomedia.email_failed(bigint, text, integer, boolean)'),
                       ('invitetomedia.email_claim_1_0(integer, interval)',
                        'invitetomedia.email_release(bigint, integer)')) AS pairs(old_fn, new_fn)
    LOOP
        SELECT i.initprivs INTO saved
          FROM pg_catalog.pg_init_privs i
         WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND i.objoid OPERATOR(pg_catalog.=) fn.new_oid
           AND i.objsubid OPERATOR(pg_catalog.=) 0;
        FOR r IN
            SELECT a.grantee, a.privilege_type, a.is_grantable
              FROM pg_catalog.pg_proc p
              CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid OPERATOR(pg_catalog.=) fn.old_oid
               AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
               AND NOT EXISTS (
                    SELECT 1
                      FROM pg_catalog.pg_init_privs i
                      CROSS JOIN LATERAL pg_catalog.aclexplode(i.initprivs) ia
                     WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                       AND i.objoid OPERATOR(pg_catalog.=) p.oid
                       AND i.objsubid OPERATOR(pg_catalog.=) 0
                       AND ia.grantee OPERATOR(pg_catalog.=) a.grantee
                       AND ia.privilege_type OPERATOR(pg_catalog.=) a.privilege_type)
        LOOP
            EXECUTE pg_catalog.format('GRANT %s ON FUNCTION %s TO %s%s',
                r.privilege_type, fn.new_oid,
                CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(r.grantee::pg_catalog.regrole::pg_catalog.text) END,
                CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            RAISE NOTICE 'granted % on function % to % as on its 1.0 form',
                r.privilege_type, fn.new_oid,
                CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE r.grantee::pg_catalog.regrole::pg_catalog.text END;
        END LOOP;
        IF saved IS NULL THEN
            DELETE FROM pg_catalog.pg_init_privs i
             WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND i.objoid OPERATOR(pg_catalog.=) fn.new_oid
               AND i.objsubid OPERATOR(pg_catalog.=) 0;
        ELSE
            UPDATE pg_catalog.pg_init_privs i
               SET initprivs = saved
             WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND i.objoid OPERATOR(pg_catalog.=) fn.new_oid
               AND i.objsubid OPERATOR(pg_catalog.=) 0;
        END IF;
    END LOOP;
END
$$;

DROP FUNCTION invitetomedia.email_claim_1_0(integer, interval);
