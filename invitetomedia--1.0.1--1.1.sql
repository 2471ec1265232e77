/* invitetomedia--1.0.1--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invitetomedia UPDATE TO '1.1'" to load this file. \quit

/*
 * Version 1.1: guest links, resend with a new token, revoke-all, lockout
 * after wrong emails, a rate limit per inviter, scheduled links, acceptance
 * events and status views.  The conventions of the 1.0 script hold here:
 * every reference schema-qualified, operators included; functions that
 * touch data SECURITY DEFINER with a fixed search_path, and EXECUTE revoked
 * from PUBLIC; no table readable by PUBLIC.  A fresh 1.1 runs the 1.0
 * script and the update scripts, so an updated database and a fresh one
 * hold the same objects by construction.
 */

------------------------------------------------------------------------------
-- settings: lockout and rate limit
------------------------------------------------------------------------------

ALTER TABLE invitetomedia.settings
    ADD COLUMN lockout_attempts integer NOT NULL DEFAULT 5
        CONSTRAINT settings_lockout_attempts_not_negative
        CHECK (lockout_attempts OPERATOR(pg_catalog.>=) 0),
    ADD COLUMN invites_per_hour integer NOT NULL DEFAULT 0
        CONSTRAINT settings_invites_per_hour_not_negative
        CHECK (invites_per_hour OPERATOR(pg_catalog.>=) 0);
COMMENT ON COLUMN invitetomedia.settings.lockout_attempts IS
'wrong emails (email_mismatch) after which an invite link answers locked until invite_resend; 0 = never lock';
COMMENT ON COLUMN invitetomedia.settings.invites_per_hour IS
'invite and guest links one user may create per hour; 0 = no limit';

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
    IF NEW.lockout_attempts IS NULL OR NEW.lockout_attempts < 0 THEN
        RAISE EXCEPTION 'invalid lockout_attempts: %', coalesce(NEW.lockout_attempts::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'lockout_attempts is how many wrong emails lock an invite link: 0 never locks, otherwise a positive number.';
    END IF;
    IF NEW.invites_per_hour IS NULL OR NEW.invites_per_hour < 0 THEN
        RAISE EXCEPTION 'invalid invites_per_hour: %', coalesce(NEW.invites_per_hour::text, 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'invites_per_hour is how many invite and guest links one user may create in an hour: 0 for no limit, otherwise a positive number.';
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
               AND s.email_max_attempts = 8 AND s.email_retry_delay = '1 minute'
               AND s.lockout_attempts = 5 AND s.invites_per_hour = 0) THEN
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
            email_retry_delay = NEW.email_retry_delay,
            lockout_attempts = NEW.lockout_attempts,
            invites_per_hour = NEW.invites_per_hour;
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

------------------------------------------------------------------------------
-- invites: schedule, lockout counter, last use; tokens retired by a resend
------------------------------------------------------------------------------

ALTER TABLE invitetomedia.invites
    ADD COLUMN not_before timestamptz,
    ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0
        CONSTRAINT invites_failed_attempts_not_negative
        CHECK (failed_attempts OPERATOR(pg_catalog.>=) 0),
    ADD COLUMN last_used_at timestamptz;
COMMENT ON COLUMN invitetomedia.invites.not_before IS
'a scheduled link opens at this time (invite_consume answers not_yet before it); NULL = open since created';
COMMENT ON COLUMN invitetomedia.invites.failed_attempts IS
'email_mismatch results since the current token was issued; the link is locked at settings.lockout_attempts';
COMMENT ON COLUMN invitetomedia.invites.last_used_at IS
'when the link was last used (an ok of invite_consume)';

-- what 1.0 recorded: the last use of each link
UPDATE invitetomedia.invites i
   SET last_used_at = r.at
  FROM (SELECT r.invite_id, pg_catalog.max(r.at) AS at
          FROM invitetomedia.redemptions r
         WHERE r.status OPERATOR(pg_catalog.=) 'ok'
         GROUP BY r.invite_id) r
 WHERE r.invite_id OPERATOR(pg_catalog.=) i.invite_id;

-- the rate limit counts an inviter's links of the last hour
CREATE INDEX invites_invited_by_created_at_idx
    ON invitetomedia.invites (invited_by, created_at);

-- A resend gives the invite a new token; the old one answers revoked (not
-- not_found: the invitee reads that the link was replaced, and the attempt
-- is recorded on the invite).
CREATE TABLE invitetomedia.retired_tokens (
    token_hash bytea PRIMARY KEY
        CONSTRAINT retired_tokens_token_hash_sha256
        CHECK (pg_catalog.length(token_hash) OPERATOR(pg_catalog.=) 32),
    invite_id bigint NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX retired_tokens_invite_id_idx ON invitetomedia.retired_tokens (invite_id);
COMMENT ON TABLE invitetomedia.retired_tokens IS
'SHA-256 of tokens replaced by invite_resend: they answer revoked';

-- refusals of 1.1 are recorded like the others
ALTER TABLE invitetomedia.redemptions DROP CONSTRAINT redemptions_status_valid;
ALTER TABLE invitetomedia.redemptions
    ADD CONSTRAINT redemptions_status_valid
    CHECK (status OPERATOR(pg_catalog.=) ANY
           (ARRAY['ok', 'rejoin', 'disabled', 'revoked', 'expired', 'not_yet',
                  'locked', 'email_mismatch', 'exhausted']));

------------------------------------------------------------------------------
-- guest links
------------------------------------------------------------------------------

CREATE SEQUENCE invitetomedia.guest_links_guest_link_id_seq;
CREATE TABLE invitetomedia.guest_links (
    guest_link_id bigint PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.guest_links_guest_link_id_seq'::pg_catalog.regclass),
    token_hash bytea NOT NULL UNIQUE
        CONSTRAINT guest_links_token_hash_sha256
        CHECK (pg_catalog.length(token_hash) OPERATOR(pg_catalog.=) 32),
    media_id text NOT NULL,
    name text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at timestamptz,
    click_limit integer
        CONSTRAINT guest_links_click_limit_positive
        CHECK (click_limit OPERATOR(pg_catalog.>=) 1),
    -- counted for click-limited links only: a join of an unlimited link
    -- writes no row of this table (see guest_link_join)
    clicks integer NOT NULL DEFAULT 0
        CONSTRAINT guest_links_clicks_within_limit
        CHECK (clicks OPERATOR(pg_catalog.>=) 0
               AND (click_limit IS NULL OR clicks OPERATOR(pg_catalog.<=) click_limit)),
    used_up_at timestamptz,
    revoked_at timestamptz,
    revoked_by text
) WITH (fillfactor = 80);
ALTER SEQUENCE invitetomedia.guest_links_guest_link_id_seq
    OWNED BY invitetomedia.guest_links.guest_link_id;
CREATE INDEX guest_links_media_id_idx ON invitetomedia.guest_links (media_id);
CREATE INDEX guest_links_created_by_created_at_idx
    ON invitetomedia.guest_links (created_by, created_at);
COMMENT ON TABLE invitetomedia.guest_links IS
'shared links that let anyone who has them join a media entry as a viewer; only the token''s SHA-256 is stored';
COMMENT ON COLUMN invitetomedia.guest_links.expires_at IS
'NULL: the link expires only when revoked';
COMMENT ON COLUMN invitetomedia.guest_links.click_limit IS
'joins allowed; NULL = unlimited';
COMMENT ON COLUMN invitetomedia.guest_links.clicks IS
'joins taken, for click-limited links (unlimited links count theirs in guest_link_joins; see the guest_link_status view)';

CREATE SEQUENCE invitetomedia.guest_link_joins_join_id_seq;
CREATE TABLE invitetomedia.guest_link_joins (
    join_id bigint PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.guest_link_joins_join_id_seq'::pg_catalog.regclass),
    -- no foreign key, as for redemptions; guest_links_cleanup deletes them
    guest_link_id bigint NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    status text NOT NULL
        CONSTRAINT guest_link_joins_status_valid
        CHECK (status OPERATOR(pg_catalog.=) ANY
               (ARRAY['ok', 'rejoin', 'disabled', 'revoked', 'expired',
                      'domain_restricted', 'exhausted'])),
    email text NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    device_id text,
    user_id text
);
ALTER SEQUENCE invitetomedia.guest_link_joins_join_id_seq
    OWNED BY invitetomedia.guest_link_joins.join_id;
CREATE INDEX guest_link_joins_link_device_idx
    ON invitetomedia.guest_link_joins (guest_link_id, device_id);
COMMENT ON TABLE invitetomedia.guest_link_joins IS
'every join and every refused attempt on a known guest link, with the email and names given';

-- Links are written through the API only, as for invites.
CREATE TRIGGER guest_links_write_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON invitetomedia.guest_links
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.invites_write_guard();

CREATE FUNCTION invitetomedia.guest_links_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        DELETE FROM invitetomedia.guest_link_joins;
    ELSE
        DELETE FROM invitetomedia.guest_link_joins j
         USING gone g WHERE j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.guest_links_cleanup() IS
'trigger: deletes the join records of deleted (or truncated) guest links';
CREATE TRIGGER guest_links_cleanup
    AFTER DELETE ON invitetomedia.guest_links
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.guest_links_cleanup();
CREATE TRIGGER guest_links_truncate_cleanup
    AFTER TRUNCATE ON invitetomedia.guest_links
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.guest_links_cleanup();

-- Row-level security as for invites: a role reading the table directly
-- sees the links it created or may create.
ALTER TABLE invitetomedia.guest_links ENABLE ROW LEVEL SECURITY;
CREATE POLICY guest_links_read ON invitetomedia.guest_links FOR SELECT
    USING (created_by OPERATOR(pg_catalog.=) CURRENT_USER::text
           OR invitetomedia.may_invite(CURRENT_USER::text, media_id));

-- Deleted invites take their retired tokens along, too.
CREATE OR REPLACE FUNCTION invitetomedia.invites_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions r
     USING gone g WHERE r.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.outbox o
     USING gone g WHERE o.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.retired_tokens t
     USING gone g WHERE t.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.invites_cleanup() IS
'trigger: deletes the redemptions, outbox messages and retired tokens of deleted invites';

CREATE OR REPLACE FUNCTION invitetomedia.invites_truncate_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions;
    DELETE FROM invitetomedia.outbox;
    DELETE FROM invitetomedia.retired_tokens;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.invites_truncate_cleanup() IS
'trigger: after TRUNCATE of invitetomedia.invites, deletes every redemption record, outbox message and retired token';

------------------------------------------------------------------------------
-- the API
------------------------------------------------------------------------------

-- Functions whose signature or result changes are renamed first, so that
-- the grants a DBA gave on the old form can be carried over to the new one
-- (below), then dropped.
ALTER FUNCTION invitetomedia.invite_create(text, text, text, text, text, text, boolean)
    RENAME TO invite_create_1_0;
ALTER FUNCTION invitetomedia.invite_check(text) RENAME TO invite_check_1_0;

-- A call with the 1.0 arguments reaches this one through the default.
CREATE FUNCTION invitetomedia.invite_create(
    media_id text, inviter_id text, email text, first_name text, last_name text,
    role text DEFAULT 'viewer', send_email boolean DEFAULT false,
    not_before timestamptz DEFAULT NULL)
RETURNS TABLE(invite_id bigint, token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_create_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz) IS
'creates an invite link for one person to one media entry, optionally opening at not_before; returns the token once (only its hash is stored)';

CREATE OR REPLACE FUNCTION invitetomedia.invite_consume(token text, email text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, invite_id bigint, media_id text, role text, user_id text,
              first_name text, last_name text, uses_left integer, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_consume_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_consume(text, text, text) IS
'redeems an invite link for the invited email; status ok, rejoin, or why not (not_found, disabled, revoked, expired, not_yet, locked, email_mismatch, exhausted)';

CREATE FUNCTION invitetomedia.invite_check(token text)
RETURNS TABLE(status text, media_id text, media_title text, role text,
              expires_at timestamptz, uses_left integer, opens_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_check_1_1'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_check(text) IS
'the lobby page''s look-up: would this link work (before the email check)? consumes and records nothing; not_yet comes with opens_at';

CREATE OR REPLACE FUNCTION invitetomedia.invite_purge(keep interval DEFAULT '30 days')
RETURNS bigint
AS 'MODULE_PATHNAME', 'invite_purge_1_1'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_purge(interval) IS
'deletes invite and guest links that expired, ran out or were revoked longer ago than keep, with their records; returns how many';

CREATE FUNCTION invitetomedia.invite_resend(invite_id bigint, actor_id text,
                                            send_email boolean DEFAULT true)
RETURNS TABLE(token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_resend'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_resend(bigint, text, boolean) IS
'gives an invite a new token (the old one answers revoked), a new expiry and a reset lockout; queues the email again with send_email';

-- Who may revoke every link of a media entry: whoever may invite to it, and
-- administrators.  SQL, so that a DBA reads the rule.
CREATE FUNCTION invitetomedia.invite_revoke_all(media_id text, actor_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    actor_role text;
    n_invites bigint;
    n_guest bigint;
BEGIN
    IF media_id IS NULL OR actor_id IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN media_id IS NULL THEN 'media_id' ELSE 'actor_id' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM invitetomedia.media m
                    WHERE m.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id) THEN
        RAISE EXCEPTION 'media "%" does not exist', left(invite_revoke_all.media_id, 100)
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT u.role::pg_catalog.text INTO actor_role
      FROM invitetomedia.users u
     WHERE u.user_id OPERATOR(pg_catalog.=) invite_revoke_all.actor_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" does not exist', left(invite_revoke_all.actor_id, 100)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT (coalesce(actor_role OPERATOR(pg_catalog.=) ANY (ARRAY['admin', 'unmoderated_admin']), false)
            OR invitetomedia.may_invite(invite_revoke_all.actor_id, invite_revoke_all.media_id)) THEN
        RAISE EXCEPTION 'user "%" may not revoke the links of media "%"',
                        left(invite_revoke_all.actor_id, 100), left(invite_revoke_all.media_id, 100)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Administrators and those who may invite to the media may revoke all its links.';
    END IF;

    -- rows locked in one order: two revoke-alls of one media never deadlock
    PERFORM 1 FROM invitetomedia.invites i
      WHERE i.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
        AND i.revoked_at IS NULL
      ORDER BY i.invite_id
        FOR UPDATE;
    WITH r AS (
        UPDATE invitetomedia.invites i
           SET revoked_at = pg_catalog.now(), revoked_by = invite_revoke_all.actor_id
         WHERE i.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
           AND i.revoked_at IS NULL
        RETURNING i.invite_id
    ), unsent AS (
        DELETE FROM invitetomedia.outbox o USING r
         WHERE o.invite_id OPERATOR(pg_catalog.=) r.invite_id AND o.sent_at IS NULL
    )
    SELECT pg_catalog.count(*) INTO n_invites FROM r;

    -- FOR UPDATE: joins of unlimited guest links hold FOR KEY SHARE, which
    -- a plain UPDATE would not wait for
    PERFORM 1 FROM invitetomedia.guest_links g
      WHERE g.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
        AND g.revoked_at IS NULL
      ORDER BY g.guest_link_id
        FOR UPDATE;
    UPDATE invitetomedia.guest_links g
       SET revoked_at = pg_catalog.now(), revoked_by = invite_revoke_all.actor_id
     WHERE g.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
       AND g.revoked_at IS NULL;
    GET DIAGNOSTICS n_guest = ROW_COUNT;
    RETURN n_invites OPERATOR(pg_catalog.+) n_guest;
END
$$;
COMMENT ON FUNCTION invitetomedia.invite_revoke_all(text, text) IS
'revokes every unrevoked invite and guest link of a media entry (and drops their unsent emails); returns how many it revoked now';

CREATE FUNCTION invitetomedia.guest_link_create(
    media_id text, actor_id text, name text,
    click_limit integer DEFAULT NULL, valid_days integer DEFAULT NULL)
RETURNS TABLE(guest_link_id bigint, token text, url text, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'guest_link_create'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_create(text, text, text, integer, integer) IS
'creates a shared guest link to a media entry (at most three usable per media); returns the token once (only its hash is stored)';

CREATE FUNCTION invitetomedia.guest_link_join(
    token text, email text, first_name text, last_name text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, guest_link_id bigint, media_id text, role text, user_id text,
              clicks_left integer, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'guest_link_join'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_join(text, text, text, text, text) IS
'joins a media entry as a viewer through a guest link; status ok, rejoin, or why not (not_found, disabled, revoked, expired, domain_restricted, exhausted)';

CREATE FUNCTION invitetomedia.guest_link_revoke(guest_link_id bigint, actor_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'guest_link_revoke'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_revoke(bigint, text) IS
'revokes a guest link; true if revoked now, false if it already was';

------------------------------------------------------------------------------
-- views for owners and DBAs: no token hashes, no message bodies
------------------------------------------------------------------------------

CREATE VIEW invitetomedia.invite_status AS
SELECT i.invite_id, i.media_id, i.email, i.role, i.invited_by, i.created_at,
       i.not_before, i.expires_at, i.max_uses, i.use_count, i.last_used_at,
       CASE WHEN i.revoked_at IS NOT NULL THEN 'revoked'
            WHEN i.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN 'expired'
            WHEN s.lockout_attempts OPERATOR(pg_catalog.>) 0
                 AND i.failed_attempts OPERATOR(pg_catalog.>=) s.lockout_attempts THEN 'locked'
            WHEN i.not_before OPERATOR(pg_catalog.>) pg_catalog.now() THEN 'not_yet'
            WHEN i.max_uses OPERATOR(pg_catalog.<>) -1
                 AND i.use_count OPERATOR(pg_catalog.>=) i.max_uses THEN 'exhausted'
            WHEN i.use_count OPERATOR(pg_catalog.>) 0 THEN 'used'
            ELSE 'pending' END AS state
  FROM invitetomedia.invites i
  LEFT JOIN invitetomedia.settings s ON true;
COMMENT ON VIEW invitetomedia.invite_status IS
'invite links and their state: revoked, expired, locked, not_yet, exhausted, used (uses left) or pending (no use yet)';

CREATE VIEW invitetomedia.guest_link_status AS
SELECT g.guest_link_id, g.media_id, g.name, g.created_by, g.created_at, g.expires_at,
       g.click_limit, c.clicks,
       CASE WHEN g.revoked_at IS NOT NULL THEN 'revoked'
            WHEN g.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN 'expired'
            WHEN g.click_limit IS NOT NULL
                 AND g.clicks OPERATOR(pg_catalog.>=) g.click_limit THEN 'exhausted'
            ELSE 'active' END AS state
  FROM invitetomedia.guest_links g
  CROSS JOIN LATERAL (
      SELECT CASE WHEN g.click_limit IS NOT NULL THEN g.clicks
                  ELSE (SELECT pg_catalog.count(*)::integer FROM invitetomedia.guest_link_joins j
                         WHERE j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id
                           AND j.status OPERATOR(pg_catalog.=) 'ok') END AS clicks) c;
COMMENT ON VIEW invitetomedia.guest_link_status IS
'guest links, their joins so far and their state: revoked, expired, exhausted or active';

CREATE VIEW invitetomedia.guest_joins AS
SELECT j.guest_link_id, j.joined_at, j.status, j.email, j.first_name, j.last_name, j.device_id
  FROM invitetomedia.guest_link_joins j;
COMMENT ON VIEW invitetomedia.guest_joins IS
'every join and refused attempt on a guest link, with the email and names the guest gave';

------------------------------------------------------------------------------
-- privileges: exactly the documented ones
------------------------------------------------------------------------------

REVOKE ALL ON TABLE invitetomedia.retired_tokens, invitetomedia.guest_links,
                    invitetomedia.guest_link_joins, invitetomedia.invite_status,
                    invitetomedia.guest_link_status, invitetomedia.guest_joins
    FROM PUBLIC;
REVOKE ALL ON SEQUENCE invitetomedia.guest_links_guest_link_id_seq,
                       invitetomedia.guest_link_joins_join_id_seq
    FROM PUBLIC;
REVOKE ALL ON FUNCTION invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz),
                       invitetomedia.invite_check(text),
                       invitetomedia.invite_resend(bigint, text, boolean),
                       invitetomedia.invite_revoke_all(text, text),
                       invitetomedia.guest_link_create(text, text, text, integer, integer),
                       invitetomedia.guest_link_join(text, text, text, text, text),
                       invitetomedia.guest_link_revoke(bigint, text),
                       invitetomedia.guest_links_cleanup()
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
 * same block over their new objects (as 1.1 does here: the block is the
 * same as 1.0.1's, run over every member again).
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
     * An application role keeps working across the update: what a DBA
     * granted on the old invite_create and invite_check (grants that are
     * not the extension's own, i.e. not in pg_init_privs) is granted on
     * their 1.1 forms too.  A grant made by an extension script counts as
     * the extension's own, which pg_dump leaves out (a restore would lose
     * it): each new function's recorded initial privileges are put back as
     * they were before these grants.
     */
    FOR fn IN
        SELECT pairs.old_fn::pg_catalog.regprocedure AS old_oid,
               pairs.new_fn::pg_catalog.regprocedure AS new_oid
          FROM (VALUES ('invitetomedia.invite_create_1_0(text, text, text, text, text, text, boolean)',
                        'invitetomedia.invite_create(text, text, text, text, text, text, boolean, timestamptz)'),
                       ('invitetomedia.invite_check_1_0(text)',
                        'invitetomedia.invite_check(text)')) AS pairs(old_fn, new_fn)
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
            RAISE NOTICE 'granted % on function % to % as on its 1.0.1 form',
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

DROP FUNCTION invitetomedia.invite_create_1_0(text, text, text, text, text, text, boolean);
DROP FUNCTION invitetomedia.invite_check_1_0(text);

------------------------------------------------------------------------------
-- pg_dump: guest links and their records are the database's data
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('invitetomedia.retired_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.guest_links', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.guest_link_joins', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.guest_links_guest_link_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.guest_link_joins_join_id_seq', '');
