/* invitetomedia--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION invitetomedia CASCADE" to load this file. \quit

/*
 * Conventions in this script (see "Security Considerations for Extensions"
 * in the PostgreSQL manual):
 *  - every reference is schema-qualified, operators included
 *    (OPERATOR(pg_catalog.=)), so objects planted in public or pg_temp are
 *    never picked up;
 *  - every function that touches data is SECURITY DEFINER with
 *    SET search_path = pg_catalog, pg_temp and has EXECUTE revoked from
 *    PUBLIC: the DBA grants what each application role needs;
 *  - no table is readable or writable by PUBLIC.
 */

------------------------------------------------------------------------------
-- private helpers (pure, no table access)
------------------------------------------------------------------------------

-- Rank of a directory role: anonymous < viewer < private_only < admin <
-- unmoderated_admin.  NULL for anything else.
CREATE FUNCTION invitetomedia.role_rank(role text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE role
        WHEN 'anonymous' THEN 0
        WHEN 'viewer' THEN 1
        WHEN 'private_only' THEN 2
        WHEN 'admin' THEN 3
        WHEN 'unmoderated_admin' THEN 4
       END;
COMMENT ON FUNCTION invitetomedia.role_rank(text) IS
'rank of a directory role (anonymous 0 .. unmoderated_admin 4), NULL if unknown';

-- Validates one domain for restrict_new_user_domains and returns it in its
-- stored form: trimmed, lower-case, without a leading '@'.  Written in C so
-- the same parser serves the settings trigger and invite_create.
CREATE FUNCTION invitetomedia.normalize_domain(domain text) RETURNS text
AS 'MODULE_PATHNAME', 'normalize_domain'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION invitetomedia.normalize_domain(text) IS
'validates a domain name (ASCII, IDN in punycode) and returns it trimmed, lower-case, without a leading @';

------------------------------------------------------------------------------
-- configuration (DBA-managed)
------------------------------------------------------------------------------

CREATE TABLE invitetomedia.email_templates (
    name    text PRIMARY KEY
            CONSTRAINT email_templates_name_not_blank
            CHECK (pg_catalog.btrim(name) OPERATOR(pg_catalog.<>) ''),
    subject text NOT NULL
            -- a CR or LF in a subject would be a header injection
            CONSTRAINT email_templates_subject_single_line
            CHECK (subject OPERATOR(pg_catalog.!~) '[\x01-\x1f\x7f]'),
    body    text NOT NULL
            CONSTRAINT email_templates_body_needs_url
            CHECK (pg_catalog.strpos(body, '{URL}') OPERATOR(pg_catalog.>) 0)
);
COMMENT ON TABLE invitetomedia.email_templates IS
'invite email templates; placeholders {URL} (required), {FIRST_NAME}, {LAST_NAME}, {EMAIL}, {MEDIA_TITLE}, {ROLE}, {EXPIRES_AT}, {INVITER_NAME}';

CREATE TABLE invitetomedia.settings (
    singleton boolean PRIMARY KEY DEFAULT true
        CONSTRAINT settings_single_row CHECK (singleton),
    enabled boolean NOT NULL DEFAULT false,
    link_duration integer NOT NULL DEFAULT 1440
        CONSTRAINT settings_link_duration_minutes_1_to_525600
        CHECK (link_duration OPERATOR(pg_catalog.>=) 1
               AND link_duration OPERATOR(pg_catalog.<=) 525600),
    link_reusability integer NOT NULL DEFAULT 1
        CONSTRAINT settings_link_reusability_1_or_more_or_minus_1
        CHECK (link_reusability OPERATOR(pg_catalog.>=) 1
               OR link_reusability OPERATOR(pg_catalog.=) -1),
    allowed_users_roles text NOT NULL DEFAULT 'private_only'
        CONSTRAINT settings_allowed_users_roles_valid
        CHECK (allowed_users_roles OPERATOR(pg_catalog.=) ANY
               (ARRAY['private_only', 'admin', 'unmoderated_admin', 'specific'])),
    invite_email_template text
        CONSTRAINT settings_invite_email_template_exists
        REFERENCES invitetomedia.email_templates (name)
        ON UPDATE CASCADE ON DELETE RESTRICT,
    restrict_new_user_domains text[] NOT NULL DEFAULT '{}',
    link_base_url text NOT NULL DEFAULT 'http://localhost/invitetomedia/'
        CONSTRAINT settings_link_base_url_http
        CHECK (link_base_url OPERATOR(pg_catalog.~*) '^https?://[^\s/?#]+[^\s]*$'
               AND link_base_url OPERATOR(pg_catalog.!~) '[\x01-\x20\x7f]'
               AND pg_catalog.length(link_base_url) OPERATOR(pg_catalog.<=) 2000),
    email_max_attempts integer NOT NULL DEFAULT 8
        CONSTRAINT settings_email_max_attempts_1_to_100
        CHECK (email_max_attempts OPERATOR(pg_catalog.>=) 1
               AND email_max_attempts OPERATOR(pg_catalog.<=) 100),
    email_retry_delay interval NOT NULL DEFAULT '1 minute'
        CONSTRAINT settings_email_retry_delay_1s_to_1d
        CHECK (email_retry_delay OPERATOR(pg_catalog.>=) '1 second'::interval
               AND email_retry_delay OPERATOR(pg_catalog.<=) '1 day'::interval)
);
COMMENT ON TABLE invitetomedia.settings IS
'the module''s configuration: exactly one row, updated in place';
COMMENT ON COLUMN invitetomedia.settings.enabled IS
'when false, invite_create and invite_consume refuse';
COMMENT ON COLUMN invitetomedia.settings.link_duration IS
'minutes a new link stays valid (1 .. 525600)';
COMMENT ON COLUMN invitetomedia.settings.link_reusability IS
'uses of a new link: 1 single use, -1 unlimited, N > 1 that many';
COMMENT ON COLUMN invitetomedia.settings.allowed_users_roles IS
'who may invite: private_only, admin, unmoderated_admin (minimal role) or specific (see allowed_users)';
COMMENT ON COLUMN invitetomedia.settings.invite_email_template IS
'email_templates.name used for invites by email; NULL disables sending by email';
COMMENT ON COLUMN invitetomedia.settings.restrict_new_user_domains IS
'domains (and their subdomains) whose new users may not be invited; stored lower-case without @';
COMMENT ON COLUMN invitetomedia.settings.link_base_url IS
'http(s) URL the token is appended to';
COMMENT ON COLUMN invitetomedia.settings.email_max_attempts IS
'delivery attempts before an outbox message is dead (1 .. 100)';
COMMENT ON COLUMN invitetomedia.settings.email_retry_delay IS
'first retry delay of a failed email; doubled after each failure, capped at 1 day';

-- Friendly errors and normalisation.  The CHECK constraints above remain the
-- rule (they also hold when triggers are disabled); this trigger runs first
-- so that a DBA reads which setting is wrong and what it accepts.
CREATE FUNCTION invitetomedia.settings_validate() RETURNS trigger
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
    IF NEW.enabled IS NULL THEN
        RAISE EXCEPTION 'invalid enabled: NULL'
            USING ERRCODE = 'check_violation',
                  DETAIL = 'enabled is true or false.';
    END IF;

    -- A second row is never stored.  An INSERT while the row exists (as
    -- pg_restore does after CREATE EXTENSION made the default row) updates
    -- the existing row instead.
    IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM invitetomedia.settings) THEN
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
COMMENT ON FUNCTION invitetomedia.settings_validate() IS
'trigger: validates and normalises invitetomedia.settings, keeps it to one row';

CREATE FUNCTION invitetomedia.settings_keep_row() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'invitetomedia.settings must keep its row'
        USING ERRCODE = 'restrict_violation',
              HINT = 'Set enabled = false to switch the module off.';
END
$$;
COMMENT ON FUNCTION invitetomedia.settings_keep_row() IS
'trigger: refuses DELETE and TRUNCATE on invitetomedia.settings';

CREATE TRIGGER settings_validate
    BEFORE INSERT OR UPDATE ON invitetomedia.settings
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.settings_validate();
CREATE TRIGGER settings_keep_row
    BEFORE DELETE ON invitetomedia.settings
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.settings_keep_row();
CREATE TRIGGER settings_no_truncate
    BEFORE TRUNCATE ON invitetomedia.settings
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.settings_keep_row();

INSERT INTO invitetomedia.settings DEFAULT VALUES;

CREATE TABLE invitetomedia.allowed_users (
    principal_type text NOT NULL
        CONSTRAINT allowed_users_principal_type_user_or_group
        CHECK (principal_type OPERATOR(pg_catalog.=) ANY (ARRAY['user', 'group'])),
    principal_id text NOT NULL,
    PRIMARY KEY (principal_type, principal_id)
);
COMMENT ON TABLE invitetomedia.allowed_users IS
'users and groups who may invite when settings.allowed_users_roles = ''specific''';

------------------------------------------------------------------------------
-- directory (kept in sync by the host application)
------------------------------------------------------------------------------

CREATE TABLE invitetomedia.users (
    user_id text PRIMARY KEY,
    email text,
    first_name text,
    last_name text,
    role text NOT NULL DEFAULT 'viewer'
        CONSTRAINT users_role_valid
        CHECK (role OPERATOR(pg_catalog.=) ANY
               (ARRAY['anonymous', 'viewer', 'private_only', 'admin', 'unmoderated_admin']))
);
CREATE UNIQUE INDEX users_email_lower_key ON invitetomedia.users (pg_catalog.lower(email));
COMMENT ON TABLE invitetomedia.users IS
'directory of the host application''s users; email is unique case-insensitively';

CREATE TABLE invitetomedia.group_members (
    group_id text NOT NULL,
    user_id text NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_id_idx ON invitetomedia.group_members (user_id);
COMMENT ON TABLE invitetomedia.group_members IS 'directory: group membership';

CREATE TABLE invitetomedia.media (
    media_id text PRIMARY KEY,
    media_type text NOT NULL
        CONSTRAINT media_media_type_valid
        CHECK (media_type OPERATOR(pg_catalog.=) ANY
               (ARRAY['video', 'audio', 'image', 'document', 'quiz',
                      'webcast', 'simulive', 'diy_live', 'room'])),
    title text,
    owner_id text
);
COMMENT ON TABLE invitetomedia.media IS
'directory: media entries; video, audio, image, document, quiz are on-demand, webcast, simulive, diy_live, room are live';

CREATE TABLE invitetomedia.media_collaborators (
    media_id text NOT NULL,
    user_id text NOT NULL,
    permission text NOT NULL
        CONSTRAINT media_collaborators_permission_valid
        CHECK (permission OPERATOR(pg_catalog.=) ANY
               (ARRAY['co_owner', 'co_editor', 'co_publisher', 'co_viewer'])),
    PRIMARY KEY (media_id, user_id, permission)
);
COMMENT ON TABLE invitetomedia.media_collaborators IS
'directory: collaborators of a media entry; co_owner, co_editor and co_publisher may invite';

------------------------------------------------------------------------------
-- invites, redemptions, outbox
------------------------------------------------------------------------------

CREATE SEQUENCE invitetomedia.invites_invite_id_seq;
CREATE TABLE invitetomedia.invites (
    invite_id bigint PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.invites_invite_id_seq'::pg_catalog.regclass),
    token_hash bytea NOT NULL UNIQUE
        CONSTRAINT invites_token_hash_sha256
        CHECK (pg_catalog.length(token_hash) OPERATOR(pg_catalog.=) 32),
    media_id text NOT NULL,
    role text NOT NULL
        CONSTRAINT invites_role_valid
        CHECK (role OPERATOR(pg_catalog.=) ANY (ARRAY['viewer', 'moderator', 'speaker'])),
    email text NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    invited_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at timestamptz NOT NULL,
    max_uses integer NOT NULL
        CONSTRAINT invites_max_uses_valid
        CHECK (max_uses OPERATOR(pg_catalog.>=) 1 OR max_uses OPERATOR(pg_catalog.=) -1),
    use_count integer NOT NULL DEFAULT 0
        CONSTRAINT invites_use_count_within_max_uses
        CHECK (use_count OPERATOR(pg_catalog.>=) 0
               AND (max_uses OPERATOR(pg_catalog.=) -1
                    OR use_count OPERATOR(pg_catalog.<=) max_uses)),
    used_up_at timestamptz,
    revoked_at timestamptz,
    revoked_by text
) WITH (fillfactor = 80);   -- room for HOT updates of use_count
ALTER SEQUENCE invitetomedia.invites_invite_id_seq OWNED BY invitetomedia.invites.invite_id;
CREATE INDEX invites_media_id_idx ON invitetomedia.invites (media_id);
COMMENT ON TABLE invitetomedia.invites IS
'one row per invite link; the token is never stored, only its SHA-256 (token_hash = digest(token, ''sha256''))';
COMMENT ON COLUMN invitetomedia.invites.max_uses IS
'uses allowed, fixed when the link is made; -1 = unlimited';
COMMENT ON COLUMN invitetomedia.invites.used_up_at IS
'when the last allowed use was taken (NULL while uses remain or for unlimited links)';

CREATE SEQUENCE invitetomedia.redemptions_redemption_id_seq;
CREATE TABLE invitetomedia.redemptions (
    redemption_id bigint PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.redemptions_redemption_id_seq'::pg_catalog.regclass),
    -- no foreign key: its check would share-lock the invite row on every
    -- consume; the invites_cleanup trigger deletes redemptions with their invite
    invite_id bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    status text NOT NULL
        CONSTRAINT redemptions_status_valid
        CHECK (status OPERATOR(pg_catalog.=) ANY
               (ARRAY['ok', 'rejoin', 'disabled', 'revoked', 'expired',
                      'email_mismatch', 'exhausted'])),
    device_id text,
    user_id text
);
ALTER SEQUENCE invitetomedia.redemptions_redemption_id_seq OWNED BY invitetomedia.redemptions.redemption_id;
CREATE INDEX redemptions_invite_device_idx ON invitetomedia.redemptions (invite_id, device_id);
COMMENT ON TABLE invitetomedia.redemptions IS
'every redemption and every refused attempt on a known link';

CREATE SEQUENCE invitetomedia.outbox_message_id_seq;
CREATE TABLE invitetomedia.outbox (
    message_id bigint PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.outbox_message_id_seq'::pg_catalog.regclass),
    invite_id bigint NOT NULL,
    to_email text NOT NULL,
    to_name text NOT NULL,
    subject text NOT NULL,
    body text,                      -- scrubbed (NULL) once sent
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    claimed_until timestamptz,
    sent_at timestamptz,
    dead_at timestamptz,
    last_error text
);
ALTER SEQUENCE invitetomedia.outbox_message_id_seq OWNED BY invitetomedia.outbox.message_id;
CREATE INDEX outbox_due_idx ON invitetomedia.outbox (next_attempt_at)
    WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_invite_id_idx ON invitetomedia.outbox (invite_id);
COMMENT ON TABLE invitetomedia.outbox IS
'invite emails waiting for, or done with, the external sender';

-- Deleting invites (invite_purge, or a DBA by hand) takes their redemption
-- records and outbox messages along.
-- SECURITY DEFINER: a role allowed to delete invites need not be allowed to
-- touch the records.
CREATE FUNCTION invitetomedia.invites_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions r
     USING gone g WHERE r.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.outbox o
     USING gone g WHERE o.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION invitetomedia.invites_cleanup() IS
'trigger: deletes the redemptions and outbox messages of deleted invites';
CREATE TRIGGER invites_cleanup
    AFTER DELETE ON invitetomedia.invites
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.invites_cleanup();

------------------------------------------------------------------------------
-- policies: who may invite, which new users may be invited
------------------------------------------------------------------------------

-- The rules are PL/pgSQL so that their queries are planned once per session:
-- PostgreSQL 15 re-plans the body of a SECURITY DEFINER SQL function at
-- every call (measured: 330 us against 100 us per call for may_invite).
CREATE FUNCTION invitetomedia.may_invite(actor_id text, media_id text) RETURNS boolean
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
                WHEN 'private_only' THEN invitetomedia.role_rank(u.role)
                     OPERATOR(pg_catalog.>=) invitetomedia.role_rank('private_only')
                WHEN 'admin' THEN invitetomedia.role_rank(u.role)
                     OPERATOR(pg_catalog.>=) invitetomedia.role_rank('admin')
                WHEN 'unmoderated_admin' THEN u.role OPERATOR(pg_catalog.=) 'unmoderated_admin'
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
COMMENT ON FUNCTION invitetomedia.may_invite(text, text) IS
'true if actor_id may create invite links to media_id: owner or co_owner/co_editor/co_publisher, and passes settings.allowed_users_roles';

CREATE FUNCTION invitetomedia.domain_allowed(email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN
        -- an existing user may always be invited
        EXISTS (SELECT 1 FROM invitetomedia.users u
                 WHERE pg_catalog.lower(u.email) OPERATOR(pg_catalog.=)
                       pg_catalog.lower(pg_catalog.btrim(domain_allowed.email)))
        -- a new user only from a domain that is not, nor is below, a restricted one
        OR NOT EXISTS (
            SELECT 1
              FROM invitetomedia.settings s,
                   pg_catalog.unnest(s.restrict_new_user_domains) AS r(domain),
                   pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(
                       domain_allowed.email, '@([^@]*)$'))) AS e(domain)
             WHERE e.domain OPERATOR(pg_catalog.=) r.domain
                OR pg_catalog."right"(e.domain, pg_catalog.length(r.domain) OPERATOR(pg_catalog.+) 1)
                   OPERATOR(pg_catalog.=) ('.' OPERATOR(pg_catalog.||) r.domain));
END
$$;
COMMENT ON FUNCTION invitetomedia.domain_allowed(text) IS
'false if no user has this email and its domain is, or is a subdomain of, one in settings.restrict_new_user_domains';

-- Row-level security for roles that read or write invites directly (the API
-- functions run as the extension owner and apply the same checks in C).
-- A database role is taken to be the directory user of the same name.
ALTER TABLE invitetomedia.invites ENABLE ROW LEVEL SECURITY;
CREATE POLICY invites_read ON invitetomedia.invites FOR SELECT
    USING (invited_by OPERATOR(pg_catalog.=) CURRENT_USER::text
           OR invitetomedia.may_invite(CURRENT_USER::text, media_id));
CREATE POLICY invites_insert ON invitetomedia.invites FOR INSERT
    WITH CHECK (invited_by OPERATOR(pg_catalog.=) CURRENT_USER::text
                AND invitetomedia.may_invite(invited_by, media_id)
                AND invitetomedia.domain_allowed(email));
CREATE POLICY invites_update ON invitetomedia.invites FOR UPDATE
    USING (invitetomedia.may_invite(CURRENT_USER::text, media_id))
    WITH CHECK (invitetomedia.may_invite(CURRENT_USER::text, media_id));
CREATE POLICY invites_delete ON invitetomedia.invites FOR DELETE
    USING (invitetomedia.may_invite(CURRENT_USER::text, media_id));

------------------------------------------------------------------------------
-- the API (C)
------------------------------------------------------------------------------

CREATE FUNCTION invitetomedia.invite_create(
    media_id text, inviter_id text, email text, first_name text, last_name text,
    role text DEFAULT 'viewer', send_email boolean DEFAULT false)
RETURNS TABLE(invite_id bigint, token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_create'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_create(text, text, text, text, text, text, boolean) IS
'creates an invite link for one person to one media entry; returns the token once (only its hash is stored)';

CREATE FUNCTION invitetomedia.invite_consume(token text, email text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, invite_id bigint, media_id text, role text, user_id text,
              first_name text, last_name text, uses_left integer, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_consume'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_consume(text, text, text) IS
'redeems an invite link for the invited email; status ok, rejoin, or why not (not_found, disabled, revoked, expired, email_mismatch, exhausted)';

CREATE FUNCTION invitetomedia.invite_check(token text)
RETURNS TABLE(status text, media_id text, media_title text, role text,
              expires_at timestamptz, uses_left integer)
AS 'MODULE_PATHNAME', 'invite_check'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_check(text) IS
'the lobby page''s look-up: would this link work (before the email check)? consumes and records nothing';

CREATE FUNCTION invitetomedia.invite_revoke(invite_id bigint, actor_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'invite_revoke'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_revoke(bigint, text) IS
'revokes an invite link (and drops its unsent emails); true if revoked now, false if it already was';

CREATE FUNCTION invitetomedia.invite_purge(keep interval DEFAULT '30 days')
RETURNS bigint
AS 'MODULE_PATHNAME', 'invite_purge'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_purge(interval) IS
'deletes links that expired, ran out or were revoked longer ago than keep, with their records; returns how many';

------------------------------------------------------------------------------
-- the outbox API (for the external sender)
------------------------------------------------------------------------------

CREATE FUNCTION invitetomedia.email_claim(batch integer DEFAULT 10, lease interval DEFAULT '5 minutes')
RETURNS TABLE(message_id bigint, to_email text, to_name text, subject text, body text)
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
           claimed_until = now() + lease,
           next_attempt_at = now() + lease
      FROM due
     WHERE o.message_id = due.message_id
    RETURNING o.message_id, o.to_email, o.to_name, o.subject, o.body;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_claim(integer, interval) IS
'claims up to batch due outbox messages for lease (FOR UPDATE SKIP LOCKED: no two senders get the same message)';

CREATE FUNCTION invitetomedia.email_sent(message_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF message_id IS NULL THEN
        RAISE EXCEPTION 'email_sent: message_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the body holds a live link: it is not kept once delivered
    UPDATE invitetomedia.outbox o
       SET sent_at = now(), body = NULL, claimed_until = NULL, last_error = NULL
     WHERE o.message_id = email_sent.message_id AND o.sent_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_sent(bigint) IS
'marks an outbox message sent and scrubs its body; false if it was already sent or is no longer queued (revoked, purged)';

CREATE FUNCTION invitetomedia.email_failed(message_id bigint, error text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.settings;
    result text;
BEGIN
    IF message_id IS NULL THEN
        RAISE EXCEPTION 'email_failed: message_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO st FROM invitetomedia.settings;
    UPDATE invitetomedia.outbox o
       SET last_error = left(coalesce(error, 'unknown error'), 1000),
           claimed_until = NULL,
           dead_at = CASE WHEN o.attempts >= st.email_max_attempts THEN now() END,
           -- exponential backoff: delay, 2 x delay, 4 x delay ... capped at 1 day
           next_attempt_at = now() + least(st.email_retry_delay
                                           * power(2, least(greatest(o.attempts - 1, 0), 20)),
                                           '1 day'::interval)
     WHERE o.message_id = email_failed.message_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
    RETURNING CASE WHEN o.dead_at IS NULL THEN 'pending' ELSE 'dead' END INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_failed(bigint, text) IS
'records a failed delivery: pending (retried with exponential backoff) or dead after settings.email_max_attempts; NULL if not queued';

CREATE VIEW invitetomedia.email_messages AS
SELECT o.message_id, o.invite_id, o.to_email, o.created_at, o.attempts,
       CASE WHEN o.sent_at IS NOT NULL THEN 'sent'
            WHEN o.dead_at IS NOT NULL THEN 'dead'
            WHEN o.claimed_until OPERATOR(pg_catalog.>) pg_catalog.now() THEN 'claimed'
            ELSE 'pending' END AS state,
       o.next_attempt_at, o.sent_at, o.dead_at, o.last_error
  FROM invitetomedia.outbox o;
COMMENT ON VIEW invitetomedia.email_messages IS
'the outbox for the DBA, one row per message, without bodies';

CREATE VIEW invitetomedia.email_queue AS
SELECT st.state,
       pg_catalog.count(m.message_id) AS messages,
       pg_catalog.min(m.created_at) AS oldest,
       pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(m.created_at) AS oldest_age
  FROM (VALUES (1, 'pending'), (2, 'claimed'), (3, 'sent'), (4, 'dead')) AS st(ord, state)
  LEFT JOIN invitetomedia.email_messages m ON m.state OPERATOR(pg_catalog.=) st.state
 GROUP BY st.ord, st.state
 ORDER BY st.ord;
COMMENT ON VIEW invitetomedia.email_queue IS
'the outbox''s state for the DBA: messages pending, claimed, sent and dead, with the oldest age of each';

------------------------------------------------------------------------------
-- privileges
------------------------------------------------------------------------------

-- Nothing here is for PUBLIC: the DBA grants each application role what it
-- needs (README, "Security model").
REVOKE ALL ON ALL TABLES IN SCHEMA invitetomedia FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA invitetomedia FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA invitetomedia FROM PUBLIC;
-- Pure helpers that read no table: the settings trigger calls them as the
-- role that updates settings.
GRANT EXECUTE ON FUNCTION invitetomedia.role_rank(text),
                          invitetomedia.normalize_domain(text) TO PUBLIC;

------------------------------------------------------------------------------
-- pg_dump: configuration and invite data belong to the database, not to the
-- extension script, so they are dumped and restored
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('invitetomedia.settings', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.email_templates', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.allowed_users', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.users', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.group_members', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.media', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.media_collaborators', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.invites', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.redemptions', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.invites_invite_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.redemptions_redemption_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.outbox_message_id_seq', '');
