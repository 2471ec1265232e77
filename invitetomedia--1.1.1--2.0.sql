/* invitetomedia--1.1.1--2.0.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invitetomedia UPDATE TO '2.0'" to load this file. \quit

/*
 * Version 2.0: tenants and sites (issue 22; docs/design-2.0.md, sections
 * 1 to 5 and 9).
 *
 *  - A tenant (an organisation) owns users, media, links, records and
 *    mail; a site (an application instance of a tenant) owns a
 *    configuration: every setting of 1.1.1's settings row, its email
 *    templates, its allowed inviters and its host names.
 *  - 1.x's data becomes the default tenant (tenant_id 1, 'default',
 *    is_default) and its default site ('default', configured as the
 *    settings row was).  Ids are kept.
 *  - Every table has tenant_id leading its primary key and every unique
 *    key; the tables that grow with use also name their site.  The ids of
 *    those tables have no sequence any more: the library draws them at
 *    random (section 3).
 *  - A transaction acts for the tenant of its role (tenant_roles, else the
 *    default tenant): invitetomedia.tenant().  Row-level security holds
 *    every table to it; the SQL functions and the views act on it.
 *  - settings is a view of the bound tenant's default site, so that a 1.x
 *    DBA's UPDATE invitetomedia.settings SET ... keeps working.
 *
 * A fresh 2.0 runs the 1.0 script and every update script, this one last,
 * so an updated database and a fresh one are built by the same statements.
 * The conventions of the earlier scripts hold: every reference
 * schema-qualified, operators included; functions that touch data
 * SECURITY DEFINER with a fixed search_path and EXECUTE revoked from
 * PUBLIC; no table readable by PUBLIC.
 */

------------------------------------------------------------------------------
-- tenants
------------------------------------------------------------------------------

CREATE SEQUENCE invitetomedia.tenants_tenant_id_seq AS integer;
CREATE TABLE invitetomedia.tenants (
    tenant_id integer PRIMARY KEY
        DEFAULT pg_catalog.nextval('invitetomedia.tenants_tenant_id_seq'::pg_catalog.regclass)
        CONSTRAINT tenants_tenant_id_positive
        CHECK (tenant_id OPERATOR(pg_catalog.>=) 1),
    name text NOT NULL
        CONSTRAINT tenants_name_key UNIQUE
        CONSTRAINT tenants_name_valid
        CHECK (pg_catalog.btrim(name) OPERATOR(pg_catalog.<>) ''
               AND name OPERATOR(pg_catalog.!~) '[\x01-\x1f\x7f]'
               AND pg_catalog.length(name) OPERATOR(pg_catalog.<=) 200),
    is_default boolean NOT NULL DEFAULT false,
    default_site_id text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- at most one default tenant.  Deferred, so that a restore (one COPY)
    -- may load the new default before the row that stops being it.
    CONSTRAINT tenants_one_default
        EXCLUDE USING btree (is_default WITH OPERATOR(pg_catalog.=)) WHERE (is_default)
        DEFERRABLE INITIALLY DEFERRED
);
ALTER SEQUENCE invitetomedia.tenants_tenant_id_seq OWNED BY invitetomedia.tenants.tenant_id;
COMMENT ON TABLE invitetomedia.tenants IS
'tenants (organisations): each owns its users, media, sites, links, records and mail; a role acts for the tenant tenant_roles maps it to, else for the one is_default tenant';
COMMENT ON COLUMN invitetomedia.tenants.is_default IS
'the tenant of every role that tenant_roles does not name (at most one; the update from 1.x makes tenant 1 the default)';
COMMENT ON COLUMN invitetomedia.tenants.default_site_id IS
'the site the 1.x functions (those without _at) act on for this tenant; NULL: they refuse (55000)';

-- 1.x's data: the default tenant.  Its site comes below, from the settings row.
INSERT INTO invitetomedia.tenants (tenant_id, name, is_default)
VALUES (1, 'default', true);
SELECT pg_catalog.setval('invitetomedia.tenants_tenant_id_seq', 1);

------------------------------------------------------------------------------
-- email templates belong to a site
------------------------------------------------------------------------------

-- (the settings row's reference to a template goes; sites hold it below)
ALTER TABLE invitetomedia.settings DROP CONSTRAINT settings_invite_email_template_exists;

ALTER TABLE invitetomedia.email_templates
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.email_templates
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    DROP CONSTRAINT email_templates_pkey,
    ADD CONSTRAINT email_templates_pkey PRIMARY KEY (tenant_id, site_id, name);
COMMENT ON TABLE invitetomedia.email_templates IS
'invite email templates of each site; placeholders {URL} (required in the body, refused in the subject), {FIRST_NAME}, {LAST_NAME}, {EMAIL}, {MEDIA_TITLE}, {ROLE}, {EXPIRES_AT}, {INVITER_NAME}';

-- A template belongs to its site: moving one would take it from under
-- sites.invite_email_template (whose ON UPDATE CASCADE would then move the
-- site itself).  The rest as in 1.0.1.
CREATE OR REPLACE FUNCTION invitetomedia.email_templates_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
                             OR NEW.site_id IS DISTINCT FROM OLD.site_id) THEN
        RAISE EXCEPTION 'email template % of site % cannot move to another site or tenant',
                        quote_literal(left(OLD.name, 100)), quote_literal(OLD.site_id)
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Insert a copy of the template for the other site instead.';
    END IF;
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
'trigger: explains why an email template is refused ({URL} missing from the body or in the subject, a control character in the subject, a move to another site)';

------------------------------------------------------------------------------
-- sites: 1.1.1's settings, one row per site
------------------------------------------------------------------------------

/*
 * Every column of 1.1.1's settings but singleton, with its name, default,
 * CHECK and comment; the CHECKs are named after the table.  sites.tenant_id
 * has no foreign key to tenants, because tenants.default_site_id has one to
 * sites: with both, pg_dump could not order the two tables' data (circular
 * foreign keys), and a restore would fail.  tenants_guard refuses to delete
 * a tenant that still has sites, and site_create checks the tenant.
 */
CREATE TABLE invitetomedia.sites (
    site_id text PRIMARY KEY
        CONSTRAINT sites_site_id_valid
        CHECK (site_id OPERATOR(pg_catalog.~) '^[a-z0-9][a-z0-9_-]{0,62}$'),
    tenant_id integer NOT NULL,
    enabled boolean NOT NULL DEFAULT false,
    link_duration integer NOT NULL DEFAULT 1440
        CONSTRAINT sites_link_duration_minutes_1_to_525600
        CHECK (link_duration OPERATOR(pg_catalog.>=) 1
               AND link_duration OPERATOR(pg_catalog.<=) 525600),
    link_reusability integer NOT NULL DEFAULT 1
        CONSTRAINT sites_link_reusability_1_or_more_or_minus_1
        CHECK (link_reusability OPERATOR(pg_catalog.>=) 1
               OR link_reusability OPERATOR(pg_catalog.=) -1),
    allowed_users_roles text NOT NULL DEFAULT 'private_only'
        CONSTRAINT sites_allowed_users_roles_valid
        CHECK (allowed_users_roles OPERATOR(pg_catalog.=) ANY
               (ARRAY['private_only', 'admin', 'unmoderated_admin', 'specific'])),
    invite_email_template text,
    restrict_new_user_domains text[] NOT NULL DEFAULT '{}',
    link_base_url text NOT NULL DEFAULT 'http://localhost/invitetomedia/'
        CONSTRAINT sites_link_base_url_http
        CHECK (link_base_url OPERATOR(pg_catalog.~*) '^https?://[^\s/?#]+[^\s]*$'
               AND link_base_url OPERATOR(pg_catalog.!~) '[\x01-\x20\x7f]'
               AND pg_catalog.length(link_base_url) OPERATOR(pg_catalog.<=) 2000),
    email_max_attempts integer NOT NULL DEFAULT 8
        CONSTRAINT sites_email_max_attempts_1_to_100
        CHECK (email_max_attempts OPERATOR(pg_catalog.>=) 1
               AND email_max_attempts OPERATOR(pg_catalog.<=) 100),
    email_retry_delay interval NOT NULL DEFAULT '1 minute'
        CONSTRAINT sites_email_retry_delay_1s_to_1d
        CHECK (email_retry_delay OPERATOR(pg_catalog.>=) '1 second'::interval
               AND email_retry_delay OPERATOR(pg_catalog.<=) '1 day'::interval),
    lockout_attempts integer NOT NULL DEFAULT 5
        CONSTRAINT sites_lockout_attempts_not_negative
        CHECK (lockout_attempts OPERATOR(pg_catalog.>=) 0),
    invites_per_hour integer NOT NULL DEFAULT 0
        CONSTRAINT sites_invites_per_hour_not_negative
        CHECK (invites_per_hour OPERATOR(pg_catalog.>=) 0),
    -- a header's value: one address, no display name, nothing that could
    -- end the header or start another one
    from_address text
        CONSTRAINT sites_from_address_valid
        CHECK (from_address OPERATOR(pg_catalog.~)
               '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$'
               AND pg_catalog.length(from_address) OPERATOR(pg_catalog.<=) 254),
    message_id_domain text
        CONSTRAINT sites_message_id_domain_valid
        CHECK (message_id_domain OPERATOR(pg_catalog.~)
               '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$'
               AND pg_catalog.length(message_id_domain) OPERATOR(pg_catalog.<=) 253),
    CONSTRAINT sites_tenant_id_site_id_key UNIQUE (tenant_id, site_id),
    CONSTRAINT sites_link_base_url_ends_before_token
        CHECK (pg_catalog."right"(link_base_url, 1) OPERATOR(pg_catalog.=) ANY
               (ARRAY['/', '=', '?', '#', '&'])),
    CONSTRAINT sites_invite_email_template_exists
        FOREIGN KEY (tenant_id, site_id, invite_email_template)
        REFERENCES invitetomedia.email_templates (tenant_id, site_id, name)
        ON UPDATE CASCADE ON DELETE RESTRICT
);
COMMENT ON TABLE invitetomedia.sites IS
'sites (application instances of a tenant) and their configuration, one row each: 1.1''s settings, per site; a link belongs to the site it was made on';
COMMENT ON COLUMN invitetomedia.sites.site_id IS
'the site''s name in calls and URLs: lower-case letters, digits, _ and -, at most 63, unique across tenants';
COMMENT ON COLUMN invitetomedia.sites.tenant_id IS
'the tenant the site belongs to';
COMMENT ON COLUMN invitetomedia.sites.enabled IS
'when false, the site''s links answer disabled and no link is made on it';
COMMENT ON COLUMN invitetomedia.sites.link_duration IS
'minutes a new link stays valid (1 .. 525600)';
COMMENT ON COLUMN invitetomedia.sites.link_reusability IS
'uses of a new link: 1 single use, -1 unlimited, N > 1 that many';
COMMENT ON COLUMN invitetomedia.sites.allowed_users_roles IS
'who may invite: private_only, admin, unmoderated_admin (minimal role) or specific (see allowed_users)';
COMMENT ON COLUMN invitetomedia.sites.invite_email_template IS
'email_templates.name (of this site) used for invites by email; NULL disables sending by email';
COMMENT ON COLUMN invitetomedia.sites.restrict_new_user_domains IS
'domains (and their subdomains) whose new users may not be invited; stored lower-case without @';
COMMENT ON COLUMN invitetomedia.sites.link_base_url IS
'http(s) URL the token is appended to';
COMMENT ON COLUMN invitetomedia.sites.email_max_attempts IS
'delivery attempts before an outbox message is dead (1 .. 100)';
COMMENT ON COLUMN invitetomedia.sites.email_retry_delay IS
'first retry delay of a failed email; doubled after each failure, capped at 1 day';
COMMENT ON COLUMN invitetomedia.sites.lockout_attempts IS
'wrong emails (email_mismatch) after which an invite link answers locked until invite_resend; 0 = never lock';
COMMENT ON COLUMN invitetomedia.sites.invites_per_hour IS
'invite and guest links one user may create per hour; 0 = no limit';
COMMENT ON COLUMN invitetomedia.sites.from_address IS
'the From address of the site''s mail (a bare address); NULL: the sender''s own';
COMMENT ON COLUMN invitetomedia.sites.message_id_domain IS
'the domain of the Message-IDs of the site''s mail; NULL: the sender''s own';

-- Friendly errors and normalisation, as settings_validate gave them for
-- the settings row (the CHECKs stay the rule).
CREATE FUNCTION invitetomedia.sites_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d text;
    problem text;
    normalized text[] := '{}';
BEGIN
    IF NEW.site_id IS NULL OR NEW.site_id !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid site_id: %', coalesce(quote_literal(left(NEW.site_id, 100)), 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A site_id is 1 to 63 lower-case letters, digits, _ and -, starting with a letter or digit.',
                  HINT = 'For example ''mediaspace'' or ''lms-2''.';
    END IF;
    IF NEW.tenant_id IS NULL THEN
        RAISE EXCEPTION 'invalid tenant_id: NULL'
            USING ERRCODE = 'not_null_violation',
                  DETAIL = 'Every site belongs to a tenant.';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.site_id IS DISTINCT FROM OLD.site_id
                             OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) THEN
        RAISE EXCEPTION 'site % cannot be renamed or moved to another tenant', quote_literal(OLD.site_id)
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its links, records, templates and host names name it.',
                  HINT = 'Create a new site with invitetomedia.site_create() instead.';
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
    IF NEW.from_address IS NOT NULL
       AND (NEW.from_address !~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$'
            OR length(NEW.from_address) > 254) THEN
        RAISE EXCEPTION 'invalid from_address: %', quote_literal(left(NEW.from_address, 100))
            USING ERRCODE = 'check_violation',
                  DETAIL = 'from_address is one bare address (local@domain, ASCII, the domain in punycode), without a display name, spaces or control characters, at most 254 characters.',
                  HINT = 'For example ''noreply@media.example.com''; NULL leaves the sender''s own.';
    END IF;
    IF NEW.message_id_domain IS NOT NULL
       AND (NEW.message_id_domain !~ '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$'
            OR length(NEW.message_id_domain) > 253) THEN
        RAISE EXCEPTION 'invalid message_id_domain: %', quote_literal(left(NEW.message_id_domain, 100))
            USING ERRCODE = 'check_violation',
                  DETAIL = 'message_id_domain is a host name (ASCII letters, digits, - and dots, in punycode), at most 253 characters.',
                  HINT = 'For example ''media.example.com''; NULL leaves the sender''s own.';
    END IF;
    -- a name that no template of the site has: the foreign key would say
    -- so too, by its constraint name only.  (A role that may not read the
    -- templates gets the foreign key's message.)
    IF NEW.invite_email_template IS NOT NULL THEN
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM invitetomedia.email_templates t
                            WHERE t.tenant_id = NEW.tenant_id AND t.site_id = NEW.site_id
                              AND t.name = NEW.invite_email_template) THEN
                RAISE EXCEPTION 'invalid invite_email_template: %', quote_literal(left(NEW.invite_email_template, 100))
                    USING ERRCODE = 'foreign_key_violation',
                          DETAIL = format('Site %L has no email template of that name.', NEW.site_id),
                          HINT = 'Create the template first (INSERT INTO invitetomedia.email_templates (tenant_id, site_id, name, subject, body) ...), or set invite_email_template to NULL to send no invite emails.';
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

    -- The install makes site 'default' of tenant 1 (from 1.x's settings
    -- row).  A restore (pg_restore after CREATE EXTENSION) inserts that row
    -- again: while the row still holds the install's defaults, the INSERT
    -- replaces it, as 1.x's settings row was replaced.  An INSERT never
    -- silently resets settings a DBA changed.
    -- (The look-up of sites is in an IF of its own: a role that may UPDATE
    -- the settings view but not read sites must not meet it, and a
    -- statement's privileges are checked whether or not its AND gets to it.)
    IF TG_OP = 'INSERT' AND NEW.site_id = 'default' AND NEW.tenant_id = 1 THEN
        IF EXISTS (
                SELECT 1 FROM invitetomedia.sites s
                 WHERE s.site_id = 'default' AND s.tenant_id = 1
                   AND s.enabled = false AND s.link_duration = 1440
                   AND s.link_reusability = 1 AND s.allowed_users_roles = 'private_only'
                   AND s.invite_email_template IS NULL AND s.restrict_new_user_domains = '{}'
                   AND s.link_base_url = 'http://localhost/invitetomedia/'
                   AND s.email_max_attempts = 8 AND s.email_retry_delay = '1 minute'
                   AND s.lockout_attempts = 5 AND s.invites_per_hour = 0
                   AND s.from_address IS NULL AND s.message_id_domain IS NULL) THEN
            UPDATE invitetomedia.sites s SET
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
                invites_per_hour = NEW.invites_per_hour,
                from_address = NEW.from_address,
                message_id_domain = NEW.message_id_domain
             WHERE s.site_id = 'default';
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION invitetomedia.sites_validate() IS
'trigger: validates and normalises a site''s configuration with the errors of 1.x''s settings; lets a restore replace the install''s default site';

CREATE TRIGGER sites_validate
    BEFORE INSERT OR UPDATE ON invitetomedia.sites
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.sites_validate();

-- 1.x's configuration: the default site of the default tenant
INSERT INTO invitetomedia.sites
       (site_id, tenant_id, enabled, link_duration, link_reusability, allowed_users_roles,
        invite_email_template, restrict_new_user_domains, link_base_url,
        email_max_attempts, email_retry_delay, lockout_attempts, invites_per_hour)
SELECT 'default', 1, s.enabled, s.link_duration, s.link_reusability, s.allowed_users_roles,
       s.invite_email_template, s.restrict_new_user_domains, s.link_base_url,
       s.email_max_attempts, s.email_retry_delay, s.lockout_attempts, s.invites_per_hour
  FROM invitetomedia.settings s;

UPDATE invitetomedia.tenants SET default_site_id = 'default'
 WHERE tenant_id OPERATOR(pg_catalog.=) 1;
ALTER TABLE invitetomedia.tenants
    ADD CONSTRAINT tenants_default_site_exists
    FOREIGN KEY (tenant_id, default_site_id) REFERENCES invitetomedia.sites (tenant_id, site_id);

-- what deletes may not do: a tenant's default site, a tenant with sites,
-- TRUNCATE (tenant_drop and site_drop say what goes, and count it)
CREATE FUNCTION invitetomedia.tenants_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        RAISE EXCEPTION 'invitetomedia.% cannot be truncated', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Drop tenants with invitetomedia.tenant_drop() and sites with invitetomedia.site_drop(): they remove every row that belongs to them.';
    END IF;
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'sites' THEN
        IF EXISTS (SELECT 1 FROM invitetomedia.tenants t
                    WHERE t.tenant_id OPERATOR(pg_catalog.=) OLD.tenant_id
                      AND t.default_site_id OPERATOR(pg_catalog.=) OLD.site_id) THEN
            RAISE EXCEPTION 'site % is the default site of tenant %',
                            pg_catalog.quote_literal(OLD.site_id), OLD.tenant_id
                USING ERRCODE = 'object_in_use',
                      DETAIL = 'The functions without _at act on the default site of the caller''s tenant.',
                      HINT = 'Make another site the default first (UPDATE invitetomedia.tenants SET default_site_id = ...), or drop the whole tenant with invitetomedia.tenant_drop().';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM invitetomedia.sites s
                   WHERE s.tenant_id OPERATOR(pg_catalog.=) OLD.tenant_id) THEN
        RAISE EXCEPTION 'tenant % still has sites', OLD.tenant_id
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop a tenant with invitetomedia.tenant_drop(), which removes its sites and every row of it.';
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION invitetomedia.tenants_guard() IS
'trigger: refuses to delete a tenant''s default site or a tenant with sites, and TRUNCATE of tenants and sites';
CREATE TRIGGER sites_guard
    BEFORE DELETE ON invitetomedia.sites
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.tenants_guard();
CREATE TRIGGER sites_no_truncate
    BEFORE TRUNCATE ON invitetomedia.sites
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.tenants_guard();
CREATE TRIGGER tenants_guard
    BEFORE DELETE ON invitetomedia.tenants
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.tenants_guard();
CREATE TRIGGER tenants_no_truncate
    BEFORE TRUNCATE ON invitetomedia.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.tenants_guard();

-- The install makes tenant 1.  A restore inserts it again: while it is as
-- the install made it, the INSERT replaces it (see sites_validate).
CREATE FUNCTION invitetomedia.tenants_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.name IS NULL OR btrim(NEW.name) = '' OR NEW.name ~ '[\x01-\x1f\x7f]' OR length(NEW.name) > 200 THEN
        RAISE EXCEPTION 'invalid tenant name: %', coalesce(quote_literal(left(NEW.name, 100)), 'NULL')
            USING ERRCODE = 'check_violation',
                  DETAIL = 'A tenant''s name is not blank, holds no control character and has at most 200 characters.';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        RAISE EXCEPTION 'tenant % cannot change its tenant_id', OLD.tenant_id
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Every row of the tenant names it.';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.tenant_id = 1
       AND EXISTS (SELECT 1 FROM invitetomedia.tenants t
                    WHERE t.tenant_id = 1 AND t.name = 'default' AND t.is_default
                      AND t.default_site_id = 'default') THEN
        UPDATE invitetomedia.tenants t SET
            name = NEW.name,
            is_default = NEW.is_default,
            default_site_id = NEW.default_site_id,
            created_at = NEW.created_at
         WHERE t.tenant_id = 1;
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION invitetomedia.tenants_validate() IS
'trigger: validates a tenant''s name, keeps its tenant_id; lets a restore replace the install''s tenant 1';
CREATE TRIGGER tenants_validate
    BEFORE INSERT OR UPDATE ON invitetomedia.tenants
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.tenants_validate();

------------------------------------------------------------------------------
-- allowed inviters belong to a site; host names; roles and their tenants
------------------------------------------------------------------------------

ALTER TABLE invitetomedia.allowed_users
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.allowed_users
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    DROP CONSTRAINT allowed_users_pkey,
    ADD CONSTRAINT allowed_users_pkey PRIMARY KEY (tenant_id, site_id, principal_type, principal_id),
    ADD CONSTRAINT allowed_users_site_exists
        FOREIGN KEY (tenant_id, site_id) REFERENCES invitetomedia.sites (tenant_id, site_id)
        ON DELETE CASCADE;
COMMENT ON TABLE invitetomedia.allowed_users IS
'users and groups who may invite on a site whose allowed_users_roles = ''specific''';

CREATE TABLE invitetomedia.site_hosts (
    host text PRIMARY KEY
        CONSTRAINT site_hosts_host_lower_case
        CHECK (host OPERATOR(pg_catalog.=) pg_catalog.lower(host)),
    site_id text NOT NULL
        CONSTRAINT site_hosts_site_exists
        REFERENCES invitetomedia.sites ON DELETE CASCADE
);
CREATE INDEX site_hosts_site_id_idx ON invitetomedia.site_hosts (site_id);
COMMENT ON TABLE invitetomedia.site_hosts IS
'the lobby''s host names and the site each one serves (lower-case)';

CREATE TABLE invitetomedia.tenant_roles (
    role_name name PRIMARY KEY,
    tenant_id integer NOT NULL
        CONSTRAINT tenant_roles_tenant_exists
        REFERENCES invitetomedia.tenants
);
CREATE INDEX tenant_roles_tenant_id_idx ON invitetomedia.tenant_roles (tenant_id);
COMMENT ON TABLE invitetomedia.tenant_roles IS
'the tenant each PostgreSQL role acts for (by the name of the login or SET ROLE role); a role not named here acts for the default tenant';

------------------------------------------------------------------------------
-- the tenant bound to the caller
------------------------------------------------------------------------------

CREATE FUNCTION invitetomedia.tenant() RETURNS integer
AS 'MODULE_PATHNAME', 'tenant_bound'
LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.tenant() IS
'the tenant the calling role acts for: its row of tenant_roles, else the is_default tenant, else NULL';

-- the library caches each backend's answer: a change of these tables drops it
CREATE FUNCTION invitetomedia.tenant_cache_invalidate() RETURNS trigger
AS 'MODULE_PATHNAME', 'tenant_cache_invalidate'
LANGUAGE C;
COMMENT ON FUNCTION invitetomedia.tenant_cache_invalidate() IS
'trigger: drops every backend''s cached answers (tenant(), the sites calls named) when tenant_roles, tenants or sites change';
CREATE TRIGGER tenant_roles_cache_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON invitetomedia.tenant_roles
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.tenant_cache_invalidate();
CREATE TRIGGER tenants_cache_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON invitetomedia.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.tenant_cache_invalidate();
-- the sites each backend resolved (itm_tenant.c) are dropped when sites change
CREATE TRIGGER sites_cache_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON invitetomedia.sites
    FOR EACH STATEMENT EXECUTE FUNCTION invitetomedia.tenant_cache_invalidate();

------------------------------------------------------------------------------
-- the directory: per tenant, shared by the tenant's sites
------------------------------------------------------------------------------

ALTER TABLE invitetomedia.users ADD COLUMN tenant_id integer NOT NULL DEFAULT 1;
ALTER TABLE invitetomedia.users
    ALTER COLUMN tenant_id DROP DEFAULT,
    DROP CONSTRAINT users_pkey,
    ADD CONSTRAINT users_pkey PRIMARY KEY (tenant_id, user_id);
DROP INDEX invitetomedia.users_email_lower_key;
CREATE UNIQUE INDEX users_email_lower_key
    ON invitetomedia.users (tenant_id, pg_catalog.lower(email COLLATE "C"));
COMMENT ON TABLE invitetomedia.users IS
'directory of the host application''s users, per tenant; email is unique ASCII case-insensitively within a tenant';

ALTER TABLE invitetomedia.group_members ADD COLUMN tenant_id integer NOT NULL DEFAULT 1;
ALTER TABLE invitetomedia.group_members
    ALTER COLUMN tenant_id DROP DEFAULT,
    DROP CONSTRAINT group_members_pkey,
    ADD CONSTRAINT group_members_pkey PRIMARY KEY (tenant_id, group_id, user_id);
DROP INDEX invitetomedia.group_members_user_id_idx;
CREATE INDEX group_members_user_id_idx ON invitetomedia.group_members (tenant_id, user_id);

ALTER TABLE invitetomedia.media ADD COLUMN tenant_id integer NOT NULL DEFAULT 1;
ALTER TABLE invitetomedia.media
    ALTER COLUMN tenant_id DROP DEFAULT,
    DROP CONSTRAINT media_pkey,
    ADD CONSTRAINT media_pkey PRIMARY KEY (tenant_id, media_id);

ALTER TABLE invitetomedia.media_collaborators ADD COLUMN tenant_id integer NOT NULL DEFAULT 1;
ALTER TABLE invitetomedia.media_collaborators
    ALTER COLUMN tenant_id DROP DEFAULT,
    DROP CONSTRAINT media_collaborators_pkey,
    ADD CONSTRAINT media_collaborators_pkey PRIMARY KEY (tenant_id, media_id, user_id, permission);

------------------------------------------------------------------------------
-- links, records and mail: per tenant and site, random ids
------------------------------------------------------------------------------

/*
 * Each table gains tenant_id and site_id (1.x's rows: tenant 1, site
 * 'default'), which lead its keys and indexes.  The ids lose their
 * sequences: the library draws new ones at random (design, section 3);
 * 1.x's ids stay.  No foreign key ties these rows to their site: its check
 * would share-lock the site's row at every insert, as 1.0 found for
 * redemptions and invites; site_drop and tenant_drop delete them.
 */
ALTER TABLE invitetomedia.invites
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.invites
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    ALTER COLUMN invite_id DROP DEFAULT,
    DROP CONSTRAINT invites_pkey,
    ADD CONSTRAINT invites_pkey PRIMARY KEY (tenant_id, invite_id),
    DROP CONSTRAINT invites_token_hash_key,
    ADD CONSTRAINT invites_token_hash_key UNIQUE (tenant_id, token_hash);
-- (out of the extension first: that also takes it off the list of
-- configuration tables pg_dump dumps; DROP alone would leave its oid there)
ALTER EXTENSION invitetomedia DROP SEQUENCE invitetomedia.invites_invite_id_seq;
DROP SEQUENCE invitetomedia.invites_invite_id_seq;
DROP INDEX invitetomedia.invites_media_id_idx;
CREATE INDEX invites_media_id_idx ON invitetomedia.invites (tenant_id, media_id);
DROP INDEX invitetomedia.invites_invited_by_created_at_idx;
CREATE INDEX invites_invited_by_created_at_idx
    ON invitetomedia.invites (tenant_id, invited_by, created_at);
COMMENT ON COLUMN invitetomedia.invites.site_id IS
'the site the link was made on: its settings govern the link''s uses and mail';

ALTER TABLE invitetomedia.redemptions
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.redemptions
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    ALTER COLUMN redemption_id DROP DEFAULT,
    DROP CONSTRAINT redemptions_pkey,
    ADD CONSTRAINT redemptions_pkey PRIMARY KEY (tenant_id, redemption_id);
ALTER EXTENSION invitetomedia DROP SEQUENCE invitetomedia.redemptions_redemption_id_seq;
DROP SEQUENCE invitetomedia.redemptions_redemption_id_seq;
DROP INDEX invitetomedia.redemptions_invite_device_idx;
CREATE INDEX redemptions_invite_device_idx
    ON invitetomedia.redemptions (tenant_id, invite_id, device_id);

ALTER TABLE invitetomedia.outbox
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.outbox
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    ALTER COLUMN message_id DROP DEFAULT,
    DROP CONSTRAINT outbox_pkey,
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (tenant_id, message_id);
ALTER EXTENSION invitetomedia DROP SEQUENCE invitetomedia.outbox_message_id_seq;
DROP SEQUENCE invitetomedia.outbox_message_id_seq;
DROP INDEX invitetomedia.outbox_due_idx;
CREATE INDEX outbox_due_idx ON invitetomedia.outbox (tenant_id, next_attempt_at)
    WHERE sent_at IS NULL AND dead_at IS NULL;
DROP INDEX invitetomedia.outbox_invite_id_idx;
CREATE INDEX outbox_invite_id_idx ON invitetomedia.outbox (tenant_id, invite_id);

ALTER TABLE invitetomedia.retired_tokens
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.retired_tokens
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    DROP CONSTRAINT retired_tokens_pkey,
    ADD CONSTRAINT retired_tokens_pkey PRIMARY KEY (tenant_id, token_hash);
DROP INDEX invitetomedia.retired_tokens_invite_id_idx;
CREATE INDEX retired_tokens_invite_id_idx ON invitetomedia.retired_tokens (tenant_id, invite_id);

ALTER TABLE invitetomedia.resends
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.resends
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    ALTER COLUMN resend_id DROP DEFAULT,
    DROP CONSTRAINT resends_pkey,
    ADD CONSTRAINT resends_pkey PRIMARY KEY (tenant_id, resend_id);
ALTER EXTENSION invitetomedia DROP SEQUENCE invitetomedia.resends_resend_id_seq;
DROP SEQUENCE invitetomedia.resends_resend_id_seq;
DROP INDEX invitetomedia.resends_actor_idx;
CREATE INDEX resends_actor_idx ON invitetomedia.resends (tenant_id, actor_id, resent_at);
DROP INDEX invitetomedia.resends_invite_id_idx;
CREATE INDEX resends_invite_id_idx ON invitetomedia.resends (tenant_id, invite_id);

ALTER TABLE invitetomedia.guest_links
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.guest_links
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    ALTER COLUMN guest_link_id DROP DEFAULT,
    DROP CONSTRAINT guest_links_pkey,
    ADD CONSTRAINT guest_links_pkey PRIMARY KEY (tenant_id, guest_link_id),
    DROP CONSTRAINT guest_links_token_hash_key,
    ADD CONSTRAINT guest_links_token_hash_key UNIQUE (tenant_id, token_hash);
ALTER EXTENSION invitetomedia DROP SEQUENCE invitetomedia.guest_links_guest_link_id_seq;
DROP SEQUENCE invitetomedia.guest_links_guest_link_id_seq;
DROP INDEX invitetomedia.guest_links_media_id_idx;
CREATE INDEX guest_links_media_id_idx ON invitetomedia.guest_links (tenant_id, media_id);
DROP INDEX invitetomedia.guest_links_created_by_created_at_idx;
CREATE INDEX guest_links_created_by_created_at_idx
    ON invitetomedia.guest_links (tenant_id, created_by, created_at);
COMMENT ON COLUMN invitetomedia.guest_links.site_id IS
'the site the link was made on: its settings govern the link''s joins';

ALTER TABLE invitetomedia.guest_link_joins
    ADD COLUMN tenant_id integer NOT NULL DEFAULT 1,
    ADD COLUMN site_id text NOT NULL DEFAULT 'default';
ALTER TABLE invitetomedia.guest_link_joins
    ALTER COLUMN tenant_id DROP DEFAULT,
    ALTER COLUMN site_id DROP DEFAULT,
    ALTER COLUMN join_id DROP DEFAULT,
    DROP CONSTRAINT guest_link_joins_pkey,
    ADD CONSTRAINT guest_link_joins_pkey PRIMARY KEY (tenant_id, join_id);
ALTER EXTENSION invitetomedia DROP SEQUENCE invitetomedia.guest_link_joins_join_id_seq;
DROP SEQUENCE invitetomedia.guest_link_joins_join_id_seq;
DROP INDEX invitetomedia.guest_link_joins_link_device_idx;
CREATE INDEX guest_link_joins_link_device_idx
    ON invitetomedia.guest_link_joins (tenant_id, guest_link_id, device_id);

------------------------------------------------------------------------------
-- the rules, per tenant and site
------------------------------------------------------------------------------

-- The site a call acts on, with its configuration: the named one, which
-- must be the caller's tenant's (another tenant's answers as one that does
-- not exist), or with NULL the caller's tenant's default site.  The errors
-- are the library's (itm_tenant.c, ItmResolveSite).
CREATE FUNCTION invitetomedia.resolve_site(site_id text) RETURNS invitetomedia.sites
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
    st invitetomedia.sites;
BEGIN
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    IF resolve_site.site_id IS NULL THEN
        SELECT s.* INTO st
          FROM invitetomedia.tenants t
          JOIN invitetomedia.sites s ON s.tenant_id OPERATOR(pg_catalog.=) t.tenant_id
                                    AND s.site_id OPERATOR(pg_catalog.=) t.default_site_id
         WHERE t.tenant_id OPERATOR(pg_catalog.=) tid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tenant % has no default site', tid
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Name the site with the _at functions, or set the tenant''s default_site_id.';
        END IF;
    ELSE
        SELECT s.* INTO st
          FROM invitetomedia.sites s
         WHERE s.site_id OPERATOR(pg_catalog.=) resolve_site.site_id
           AND s.tenant_id OPERATOR(pg_catalog.=) tid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'site "%" does not exist', pg_catalog."left"(resolve_site.site_id, 100)
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    RETURN st;
END
$$;
COMMENT ON FUNCTION invitetomedia.resolve_site(text) IS
'the site a call acts on, with its configuration: the named site of the caller''s tenant, or with NULL its default site; 42501, 55000 or 42704 otherwise';

-- The rule of 1.0, on one site: its allowed_users_roles and allowed_users,
-- the tenant's users, media and collaborators.  A site of another tenant
-- answers as one that does not exist (42704).
CREATE FUNCTION invitetomedia.may_invite_at(site_id text, actor_id text, media_id text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.sites;
BEGIN
    IF may_invite_at.site_id IS NULL THEN
        RAISE EXCEPTION 'may_invite_at: site_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'may_invite(actor_id, media_id) asks on the default site.';
    END IF;
    st := invitetomedia.resolve_site(may_invite_at.site_id);
    RETURN EXISTS (
        SELECT 1
          FROM invitetomedia.users u
          JOIN invitetomedia.media m ON m.tenant_id OPERATOR(pg_catalog.=) u.tenant_id
                                    AND m.media_id OPERATOR(pg_catalog.=) may_invite_at.media_id
         WHERE u.tenant_id OPERATOR(pg_catalog.=) st.tenant_id
           AND u.user_id OPERATOR(pg_catalog.=) may_invite_at.actor_id
           -- the owner, or a collaborator who manages the entry (not co_viewer)
           AND (m.owner_id OPERATOR(pg_catalog.=) u.user_id
                OR EXISTS (SELECT 1 FROM invitetomedia.media_collaborators c
                            WHERE c.tenant_id OPERATOR(pg_catalog.=) st.tenant_id
                              AND c.media_id OPERATOR(pg_catalog.=) m.media_id
                              AND c.user_id OPERATOR(pg_catalog.=) u.user_id
                              AND c.permission OPERATOR(pg_catalog.=) ANY
                                  (ARRAY['co_owner', 'co_editor', 'co_publisher'])))
           -- and passes the site's allowed_users_roles
           AND CASE st.allowed_users_roles
                WHEN 'private_only' THEN invitetomedia.role_rank(u.role::pg_catalog.text)
                     OPERATOR(pg_catalog.>=) invitetomedia.role_rank('private_only')
                WHEN 'admin' THEN invitetomedia.role_rank(u.role::pg_catalog.text)
                     OPERATOR(pg_catalog.>=) invitetomedia.role_rank('admin')
                WHEN 'unmoderated_admin' THEN u.role::pg_catalog.text OPERATOR(pg_catalog.=) 'unmoderated_admin'
                WHEN 'specific' THEN
                     EXISTS (SELECT 1 FROM invitetomedia.allowed_users a
                              WHERE a.tenant_id OPERATOR(pg_catalog.=) st.tenant_id
                                AND a.site_id OPERATOR(pg_catalog.=) st.site_id
                                AND a.principal_type OPERATOR(pg_catalog.=) 'user'
                                AND a.principal_id OPERATOR(pg_catalog.=) u.user_id)
                  OR EXISTS (SELECT 1 FROM invitetomedia.allowed_users a
                               JOIN invitetomedia.group_members g
                                 ON g.tenant_id OPERATOR(pg_catalog.=) a.tenant_id
                                AND g.group_id OPERATOR(pg_catalog.=) a.principal_id
                              WHERE a.tenant_id OPERATOR(pg_catalog.=) st.tenant_id
                                AND a.site_id OPERATOR(pg_catalog.=) st.site_id
                                AND a.principal_type OPERATOR(pg_catalog.=) 'group'
                                AND g.user_id OPERATOR(pg_catalog.=) u.user_id)
                ELSE false
               END);
END
$$;
COMMENT ON FUNCTION invitetomedia.may_invite_at(text, text, text) IS
'true if actor_id may create invite links to media_id on the site: owner or co_owner/co_editor/co_publisher, and passes the site''s allowed_users_roles';

-- 1.x's form: the caller's tenant's default site.  The row-level security
-- of invites and guest links calls it for every row, so it answers false,
-- never an error, when the caller has no tenant or its tenant no default
-- site.
CREATE OR REPLACE FUNCTION invitetomedia.may_invite(actor_id text, media_id text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid text;
BEGIN
    SELECT t.default_site_id INTO sid
      FROM invitetomedia.tenants t
     WHERE t.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
    IF sid IS NULL THEN
        RETURN false;
    END IF;
    RETURN invitetomedia.may_invite_at(sid, may_invite.actor_id, may_invite.media_id);
END
$$;
COMMENT ON FUNCTION invitetomedia.may_invite(text, text) IS
'true if actor_id may create invite links to media_id on the default site of the caller''s tenant (may_invite_at); false if there is none';

CREATE FUNCTION invitetomedia.domain_allowed_at(site_id text, email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.sites;
BEGIN
    IF domain_allowed_at.site_id IS NULL THEN
        RAISE EXCEPTION 'domain_allowed_at: site_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'domain_allowed(email) asks on the default site.';
    END IF;
    st := invitetomedia.resolve_site(domain_allowed_at.site_id);
    RETURN
        -- an existing user of the tenant may always be invited
        EXISTS (SELECT 1 FROM invitetomedia.users u
                 WHERE u.tenant_id OPERATOR(pg_catalog.=) st.tenant_id
                   AND pg_catalog.lower(u.email COLLATE "C") OPERATOR(pg_catalog.=)
                       pg_catalog.lower(pg_catalog.btrim(domain_allowed_at.email) COLLATE "C"))
        -- a new user only from a domain that is not, nor is below, one the site restricts
        OR NOT EXISTS (
            SELECT 1
              FROM pg_catalog.unnest(st.restrict_new_user_domains) AS r(domain),
                   pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(
                       domain_allowed_at.email, '@([^@]*)$')) COLLATE "C") AS e(domain)
             WHERE e.domain OPERATOR(pg_catalog.=) r.domain
                OR pg_catalog."right"(e.domain, pg_catalog.length(r.domain) OPERATOR(pg_catalog.+) 1)
                   OPERATOR(pg_catalog.=) ('.' OPERATOR(pg_catalog.||) r.domain));
END
$$;
COMMENT ON FUNCTION invitetomedia.domain_allowed_at(text, text) IS
'false if no user of the tenant has this email and its domain is, or is a subdomain of, one in the site''s restrict_new_user_domains';

CREATE OR REPLACE FUNCTION invitetomedia.domain_allowed(email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid text;
BEGIN
    SELECT t.default_site_id INTO sid
      FROM invitetomedia.tenants t
     WHERE t.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
    IF sid IS NULL THEN
        RETURN false;
    END IF;
    RETURN invitetomedia.domain_allowed_at(sid, domain_allowed.email);
END
$$;
COMMENT ON FUNCTION invitetomedia.domain_allowed(text) IS
'domain_allowed_at on the default site of the caller''s tenant; false if there is none';

CREATE FUNCTION invitetomedia.guest_allowed_at(site_id text, email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.sites;
BEGIN
    IF guest_allowed_at.site_id IS NULL THEN
        RAISE EXCEPTION 'guest_allowed_at: site_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'guest_allowed(email) asks on the default site.';
    END IF;
    st := invitetomedia.resolve_site(guest_allowed_at.site_id);
    RETURN NOT EXISTS (
        SELECT 1
          FROM pg_catalog.unnest(st.restrict_new_user_domains) AS r(domain),
               pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(
                   guest_allowed_at.email, '@([^@]*)$')) COLLATE "C") AS e(domain)
         WHERE e.domain OPERATOR(pg_catalog.=) r.domain
            OR pg_catalog."right"(e.domain, pg_catalog.length(r.domain) OPERATOR(pg_catalog.+) 1)
               OPERATOR(pg_catalog.=) ('.' OPERATOR(pg_catalog.||) r.domain));
END
$$;
COMMENT ON FUNCTION invitetomedia.guest_allowed_at(text, text) IS
'the guest rule on a site: false when the email''s domain is, or is below, a domain the site restricts, whether or not a user has the address';

CREATE OR REPLACE FUNCTION invitetomedia.guest_allowed(email text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid text;
BEGIN
    SELECT t.default_site_id INTO sid
      FROM invitetomedia.tenants t
     WHERE t.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
    IF sid IS NULL THEN
        RETURN false;
    END IF;
    RETURN invitetomedia.guest_allowed_at(sid, guest_allowed.email);
END
$$;
COMMENT ON FUNCTION invitetomedia.guest_allowed(text) IS
'guest_allowed_at on the default site of the caller''s tenant; false if there is none';

------------------------------------------------------------------------------
-- deleted links take their records along, within their tenant
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION invitetomedia.invites_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM invitetomedia.redemptions r
     USING gone g WHERE r.tenant_id OPERATOR(pg_catalog.=) g.tenant_id
                    AND r.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.outbox o
     USING gone g WHERE o.tenant_id OPERATOR(pg_catalog.=) g.tenant_id
                    AND o.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.retired_tokens t
     USING gone g WHERE t.tenant_id OPERATOR(pg_catalog.=) g.tenant_id
                    AND t.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    DELETE FROM invitetomedia.resends s
     USING gone g WHERE s.tenant_id OPERATOR(pg_catalog.=) g.tenant_id
                    AND s.invite_id OPERATOR(pg_catalog.=) g.invite_id;
    RETURN NULL;
END
$$;

-- (invites_truncate_cleanup stays: after a TRUNCATE no invite of any
-- tenant is left, so every record goes)

CREATE OR REPLACE FUNCTION invitetomedia.guest_links_cleanup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        DELETE FROM invitetomedia.guest_link_joins;
    ELSE
        DELETE FROM invitetomedia.guest_link_joins j
         USING gone g WHERE j.tenant_id OPERATOR(pg_catalog.=) g.tenant_id
                        AND j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id;
    END IF;
    RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- revoke-all, per tenant
------------------------------------------------------------------------------

-- Every link of a media entry of the caller's tenant, on every site of it
-- (the media is the tenant's); who may: administrators, and those who may
-- invite to it on the default site.
CREATE OR REPLACE FUNCTION invitetomedia.invite_revoke_all(media_id text, actor_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
    actor_role text;
    n_invites bigint;
    n_guest bigint;
BEGIN
    IF media_id IS NULL OR actor_id IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN media_id IS NULL THEN 'media_id' ELSE 'actor_id' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM invitetomedia.media m
                    WHERE m.tenant_id OPERATOR(pg_catalog.=) tid
                      AND m.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id) THEN
        RAISE EXCEPTION 'media "%" does not exist', left(invite_revoke_all.media_id, 100)
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT u.role::pg_catalog.text INTO actor_role
      FROM invitetomedia.users u
     WHERE u.tenant_id OPERATOR(pg_catalog.=) tid
       AND u.user_id OPERATOR(pg_catalog.=) invite_revoke_all.actor_id;
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
      WHERE i.tenant_id OPERATOR(pg_catalog.=) tid
        AND i.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
        AND i.revoked_at IS NULL
      ORDER BY i.invite_id
        FOR UPDATE;
    WITH r AS (
        UPDATE invitetomedia.invites i
           SET revoked_at = pg_catalog.now(), revoked_by = invite_revoke_all.actor_id
         WHERE i.tenant_id OPERATOR(pg_catalog.=) tid
           AND i.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
           AND i.revoked_at IS NULL
        RETURNING i.invite_id
    ), unsent AS (
        DELETE FROM invitetomedia.outbox o USING r
         WHERE o.tenant_id OPERATOR(pg_catalog.=) tid
           AND o.invite_id OPERATOR(pg_catalog.=) r.invite_id AND o.sent_at IS NULL
    )
    SELECT pg_catalog.count(*) INTO n_invites FROM r;

    -- FOR UPDATE: joins of unlimited guest links hold FOR KEY SHARE, which
    -- a plain UPDATE would not wait for
    PERFORM 1 FROM invitetomedia.guest_links g
      WHERE g.tenant_id OPERATOR(pg_catalog.=) tid
        AND g.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
        AND g.revoked_at IS NULL
      ORDER BY g.guest_link_id
        FOR UPDATE;
    UPDATE invitetomedia.guest_links g
       SET revoked_at = pg_catalog.now(), revoked_by = invite_revoke_all.actor_id
     WHERE g.tenant_id OPERATOR(pg_catalog.=) tid
       AND g.media_id OPERATOR(pg_catalog.=) invite_revoke_all.media_id
       AND g.revoked_at IS NULL;
    GET DIAGNOSTICS n_guest = ROW_COUNT;
    RETURN n_invites OPERATOR(pg_catalog.+) n_guest;
END
$$;
COMMENT ON FUNCTION invitetomedia.invite_revoke_all(text, text) IS
'revokes every unrevoked invite and guest link of a media entry of the caller''s tenant, on all its sites (and drops their unsent emails); returns how many it revoked now';

------------------------------------------------------------------------------
-- the outbox API, per tenant
------------------------------------------------------------------------------

-- 1.x's email_claim: the messages of the default site of the caller's
-- tenant, with 1.1.1's columns (a result with more columns would be a new
-- function, and the DBA's grants on this one would be lost).
CREATE OR REPLACE FUNCTION invitetomedia.email_claim(batch integer DEFAULT 10, lease interval DEFAULT '5 minutes')
RETURNS TABLE(message_id bigint, to_email text, to_name text, subject text, body text,
              claim_no integer, message_key uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.sites;
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
    st := invitetomedia.resolve_site(NULL);

    -- A claimed message whose lease ran out was never confirmed: the sender
    -- died with it in hand.  If that was its last attempt it is dead.
    UPDATE invitetomedia.outbox o
       SET dead_at = now(), claimed_until = NULL,
           last_error = coalesce(o.last_error, 'lease expired without confirmation')
     WHERE o.tenant_id = st.tenant_id AND o.site_id = st.site_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
       AND o.next_attempt_at <= now()
       AND o.attempts >= st.email_max_attempts;

    RETURN QUERY
    WITH due AS (
        SELECT o.message_id
          FROM invitetomedia.outbox o
         WHERE o.tenant_id = st.tenant_id AND o.site_id = st.site_id
           AND o.sent_at IS NULL AND o.dead_at IS NULL
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
     WHERE o.tenant_id = st.tenant_id AND o.message_id = due.message_id
    RETURNING o.message_id, o.to_email, o.to_name, o.subject, o.body, o.claim_no, o.message_key;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_claim(integer, interval) IS
'claims up to batch due outbox messages of the default site of the caller''s tenant for lease (FOR UPDATE SKIP LOCKED: no two senders get the same message); claim_no identifies the claim for email_sent, email_failed and email_release; message_key identifies the message for its Message-ID; email_claim_sites serves every site';

-- 2.0: every site of the caller's tenant, with what the sender needs to
-- write each site's mail (From, the Message-ID's domain) and whose it is.
CREATE FUNCTION invitetomedia.email_claim_sites(batch integer DEFAULT 10, lease interval DEFAULT '5 minutes')
RETURNS TABLE(message_id bigint, to_email text, to_name text, subject text, body text,
              claim_no integer, message_key uuid, tenant_id integer, site_id text,
              from_address text, message_id_domain text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
BEGIN
    IF batch IS NULL OR lease IS NULL THEN
        RAISE EXCEPTION 'email_claim_sites: batch and lease must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF batch < 1 OR batch > 1000 THEN
        RAISE EXCEPTION 'email_claim_sites: batch must be between 1 and 1000, not %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease < '1 second' OR lease > '1 day' THEN
        RAISE EXCEPTION 'email_claim_sites: lease must be between 1 second and 1 day, not %', lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;

    -- each message dies after its own site's email_max_attempts
    UPDATE invitetomedia.outbox o
       SET dead_at = now(), claimed_until = NULL,
           last_error = coalesce(o.last_error, 'lease expired without confirmation')
      FROM invitetomedia.sites s
     WHERE o.tenant_id = tid
       AND s.tenant_id = o.tenant_id AND s.site_id = o.site_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
       AND o.next_attempt_at <= now()
       AND o.attempts >= s.email_max_attempts;

    RETURN QUERY
    WITH due AS (
        SELECT o.message_id
          FROM invitetomedia.outbox o
         WHERE o.tenant_id = tid
           AND o.sent_at IS NULL AND o.dead_at IS NULL
           AND o.next_attempt_at <= now()
         ORDER BY o.next_attempt_at, o.message_id
         LIMIT batch
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE invitetomedia.outbox o
       SET attempts = o.attempts + 1,
           claim_no = o.claim_no + 1,
           claimed_until = now() + lease,
           next_attempt_at = now() + lease
      FROM due, invitetomedia.sites s
     WHERE o.tenant_id = tid AND o.message_id = due.message_id
       AND s.tenant_id = o.tenant_id AND s.site_id = o.site_id
    RETURNING o.message_id, o.to_email, o.to_name, o.subject, o.body, o.claim_no, o.message_key,
              o.tenant_id, o.site_id, s.from_address, s.message_id_domain;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_claim_sites(integer, interval) IS
'email_claim for every site of the caller''s tenant: each message with its tenant_id, site_id and its site''s from_address and message_id_domain (NULL: the sender''s own)';

CREATE OR REPLACE FUNCTION invitetomedia.email_sent(message_id bigint, claim_no integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
    current_claim integer;
BEGIN
    IF message_id IS NULL OR claim_no IS NULL THEN
        RAISE EXCEPTION 'email_sent: message_id and claim_no must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    -- the body holds a live link: it is not kept once delivered
    UPDATE invitetomedia.outbox o
       SET sent_at = now(), body = NULL, claimed_until = NULL, last_error = NULL
     WHERE o.tenant_id = tid
       AND o.message_id = email_sent.message_id AND o.sent_at IS NULL
       AND o.claim_no = email_sent.claim_no;
    IF FOUND THEN
        RETURN true;
    END IF;
    SELECT o.claim_no INTO current_claim
      FROM invitetomedia.outbox o
     WHERE o.tenant_id = tid
       AND o.message_id = email_sent.message_id AND o.sent_at IS NULL;
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
'marks an outbox message of the caller''s tenant sent under claim claim_no and scrubs its body; false if already sent, no longer queued, or the claim was superseded (then nothing changes)';

CREATE OR REPLACE FUNCTION invitetomedia.email_failed(message_id bigint, error text, claim_no integer,
                                                      permanent boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
    st invitetomedia.sites;
    sid text;
    current_claim integer;
    result text;
BEGIN
    IF message_id IS NULL OR claim_no IS NULL OR permanent IS NULL THEN
        RAISE EXCEPTION 'email_failed: message_id, claim_no and permanent must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    SELECT o.claim_no, o.site_id INTO current_claim, sid
      FROM invitetomedia.outbox o
     WHERE o.tenant_id = tid
       AND o.message_id = email_failed.message_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT s.* INTO st FROM invitetomedia.sites s WHERE s.tenant_id = tid AND s.site_id = sid;
    IF current_claim IS DISTINCT FROM email_failed.claim_no THEN
        RAISE WARNING 'claim % of outbox message % is superseded by claim %; nothing changed',
                      email_failed.claim_no, email_failed.message_id, current_claim
            USING DETAIL = 'The lease ran out and another sender claimed the message.';
        RETURN 'superseded';
    END IF;
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
     WHERE o.tenant_id = tid AND o.message_id = email_failed.message_id
    RETURNING CASE WHEN o.dead_at IS NULL THEN 'pending' ELSE 'dead' END INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_failed(bigint, text, integer, boolean) IS
'records a failed delivery of a message of the caller''s tenant under claim claim_no: pending, or dead after its site''s email_max_attempts, dead at once if permanent; superseded (nothing changed) if another claim is current; NULL if not queued';

CREATE OR REPLACE FUNCTION invitetomedia.email_release(message_id bigint, claim_no integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
BEGIN
    IF message_id IS NULL OR claim_no IS NULL THEN
        RAISE EXCEPTION 'email_release: message_id and claim_no must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    -- not attempted: the claim's attempt is given back and the message is
    -- due now, so that restarts cannot use up its attempts untried
    UPDATE invitetomedia.outbox o
       SET attempts = greatest(o.attempts - 1, 0),
           claimed_until = NULL,
           next_attempt_at = now()
     WHERE o.tenant_id = tid
       AND o.message_id = email_release.message_id
       AND o.claim_no = email_release.claim_no
       AND o.claimed_until IS NOT NULL
       AND o.sent_at IS NULL AND o.dead_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_release(bigint, integer) IS
'hands back a message of the caller''s tenant claimed under claim_no but not attempted (a sender stopping): due now, the attempt not counted; false if the claim is no longer current';

-- the 1.0 forms, kept by 1.0.1 for 1.0's senders
CREATE OR REPLACE FUNCTION invitetomedia.email_sent(message_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
BEGIN
    IF message_id IS NULL THEN
        RAISE EXCEPTION 'email_sent: message_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    -- the body holds a live link: it is not kept once delivered
    UPDATE invitetomedia.outbox o
       SET sent_at = now(), body = NULL, claimed_until = NULL, last_error = NULL
     WHERE o.tenant_id = tid AND o.message_id = email_sent.message_id AND o.sent_at IS NULL;
    RETURN FOUND;
END
$$;

CREATE OR REPLACE FUNCTION invitetomedia.email_failed(message_id bigint, error text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := invitetomedia.tenant();
    result text;
BEGIN
    IF message_id IS NULL THEN
        RAISE EXCEPTION 'email_failed: message_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'the calling role acts for no tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator maps the role to its tenant in invitetomedia.tenant_roles, or marks a default tenant.';
    END IF;
    UPDATE invitetomedia.outbox o
       SET last_error = left(coalesce(error, 'unknown error'), 1000),
           claimed_until = NULL,
           dead_at = CASE WHEN o.attempts >= s.email_max_attempts THEN now() END,
           -- exponential backoff: delay, 2 x delay, 4 x delay ... capped at 1 day
           next_attempt_at = now() + least(s.email_retry_delay
                                           * power(2, least(greatest(o.attempts - 1, 0), 20)),
                                           '1 day'::interval)
      FROM invitetomedia.sites s
     WHERE o.tenant_id = tid AND o.message_id = email_failed.message_id
       AND s.tenant_id = o.tenant_id AND s.site_id = o.site_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
    RETURNING CASE WHEN o.dead_at IS NULL THEN 'pending' ELSE 'dead' END INTO result;
    RETURN result;
END
$$;

------------------------------------------------------------------------------
-- views: the caller's tenant's rows, with their site
------------------------------------------------------------------------------

-- The views run as their owner, who is not held by row-level security:
-- each one keeps to the caller's tenant itself.
CREATE OR REPLACE VIEW invitetomedia.invite_status AS
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
            ELSE 'pending' END AS state,
       i.site_id
  FROM invitetomedia.invites i
  LEFT JOIN invitetomedia.sites s ON s.tenant_id OPERATOR(pg_catalog.=) i.tenant_id
                                 AND s.site_id OPERATOR(pg_catalog.=) i.site_id
 WHERE i.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
COMMENT ON VIEW invitetomedia.invite_status IS
'invite links of the caller''s tenant and their state: revoked, expired, locked, not_yet, exhausted, used (uses left) or pending (no use yet)';

CREATE OR REPLACE VIEW invitetomedia.guest_link_status AS
SELECT g.guest_link_id, g.media_id, g.name, g.created_by, g.created_at, g.expires_at,
       g.click_limit, c.clicks,
       CASE WHEN g.revoked_at IS NOT NULL THEN 'revoked'
            WHEN g.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN 'expired'
            WHEN g.click_limit IS NOT NULL
                 AND g.clicks OPERATOR(pg_catalog.>=) g.click_limit THEN 'exhausted'
            ELSE 'active' END AS state,
       g.site_id
  FROM invitetomedia.guest_links g
  CROSS JOIN LATERAL (
      SELECT CASE WHEN g.click_limit IS NOT NULL THEN g.clicks
                  ELSE (SELECT pg_catalog.count(*)::integer FROM invitetomedia.guest_link_joins j
                         WHERE j.tenant_id OPERATOR(pg_catalog.=) g.tenant_id
                           AND j.guest_link_id OPERATOR(pg_catalog.=) g.guest_link_id
                           AND j.status OPERATOR(pg_catalog.=) 'ok') END AS clicks) c
 WHERE g.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
COMMENT ON VIEW invitetomedia.guest_link_status IS
'guest links of the caller''s tenant, their joins so far and their state: revoked, expired, exhausted or active';

CREATE OR REPLACE VIEW invitetomedia.guest_joins AS
SELECT j.guest_link_id, j.joined_at, j.status, j.email, j.first_name, j.last_name, j.device_id,
       j.join_id, j.site_id
  FROM invitetomedia.guest_link_joins j
 WHERE j.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
COMMENT ON VIEW invitetomedia.guest_joins IS
'every join and refused attempt on a guest link of the caller''s tenant, with the email and names the guest gave (claimed, not proven) and the join''s id, the guest''s identity';

CREATE OR REPLACE VIEW invitetomedia.email_messages AS
SELECT o.message_id, o.invite_id, o.to_email, o.created_at, o.attempts,
       CASE WHEN o.sent_at IS NOT NULL THEN 'sent'
            WHEN o.dead_at IS NOT NULL THEN 'dead'
            WHEN o.claimed_until OPERATOR(pg_catalog.>) pg_catalog.now() THEN 'claimed'
            ELSE 'pending' END AS state,
       o.next_attempt_at, o.sent_at, o.dead_at, o.last_error, o.site_id
  FROM invitetomedia.outbox o
 WHERE o.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant();
COMMENT ON VIEW invitetomedia.email_messages IS
'the outbox of the caller''s tenant for the DBA, one row per message, without bodies';
-- (email_queue reads email_messages: it counts the caller's tenant's mail)
COMMENT ON VIEW invitetomedia.email_queue IS
'the outbox''s state for the DBA (the caller''s tenant): messages pending, claimed, sent and dead, with the oldest age of each';

------------------------------------------------------------------------------
-- settings: a view of the default site
------------------------------------------------------------------------------

-- Renamed first, so that the grants a DBA gave on the table can be carried
-- over to the view (below), then dropped.
ALTER TABLE invitetomedia.settings RENAME TO settings_1_1_1;

/*
 * One row: the default site of the caller's tenant, with 1.1.1's columns in
 * their order (singleton always true, read-only) and the site's two new
 * ones.  Automatically updatable: UPDATE invitetomedia.settings SET ...
 * changes the site, through the site's trigger (the errors of 1.x).  It
 * runs as its owner, so a DBA needs no privilege on sites.
 */
CREATE VIEW invitetomedia.settings AS
SELECT true AS singleton, s.enabled, s.link_duration, s.link_reusability, s.allowed_users_roles,
       s.invite_email_template, s.restrict_new_user_domains, s.link_base_url,
       s.email_max_attempts, s.email_retry_delay, s.lockout_attempts, s.invites_per_hour,
       s.from_address, s.message_id_domain
  FROM invitetomedia.sites s
 WHERE s.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant()
   AND s.site_id OPERATOR(pg_catalog.=)
       (SELECT t.default_site_id FROM invitetomedia.tenants t
         WHERE t.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant());
COMMENT ON VIEW invitetomedia.settings IS
'the configuration of the default site of the caller''s tenant (1.x''s settings row), updated in place; every site''s is in invitetomedia.sites';

CREATE OR REPLACE FUNCTION invitetomedia.settings_keep_row() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        RAISE EXCEPTION 'invitetomedia.settings is the configuration of the default site: it takes no new row'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Change it with UPDATE invitetomedia.settings SET ...; create a site with invitetomedia.site_create().';
    END IF;
    RAISE EXCEPTION 'invitetomedia.settings must keep its row'
        USING ERRCODE = 'restrict_violation',
              HINT = 'Set enabled = false to switch the site off.';
END
$$;
COMMENT ON FUNCTION invitetomedia.settings_keep_row() IS
'trigger: refuses INSERT and DELETE on the view invitetomedia.settings';
CREATE TRIGGER settings_keep_row
    INSTEAD OF INSERT OR DELETE ON invitetomedia.settings
    FOR EACH ROW EXECUTE FUNCTION invitetomedia.settings_keep_row();

------------------------------------------------------------------------------
-- administration: tenants and sites
------------------------------------------------------------------------------

CREATE FUNCTION invitetomedia.tenant_create(name text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer;
BEGIN
    IF tenant_create.name IS NULL THEN
        RAISE EXCEPTION 'tenant_create: name must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Name the tenant, e.g. tenant_create(''University of Example'').';
    END IF;
    IF pg_catalog.btrim(tenant_create.name) OPERATOR(pg_catalog.=) ''
       OR tenant_create.name OPERATOR(pg_catalog.~) '[\x01-\x1f\x7f]'
       OR pg_catalog.length(tenant_create.name) OPERATOR(pg_catalog.>) 200 THEN
        RAISE EXCEPTION 'invalid tenant name: %', pg_catalog.quote_literal(pg_catalog."left"(tenant_create.name, 100))
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A tenant''s name is not blank, holds no control character and has at most 200 characters.',
                  HINT = 'Name the tenant, e.g. tenant_create(''University of Example'').';
    END IF;
    IF EXISTS (SELECT 1 FROM invitetomedia.tenants t
                WHERE t.name OPERATOR(pg_catalog.=) tenant_create.name) THEN
        RAISE EXCEPTION 'tenant % already exists', pg_catalog.quote_literal(pg_catalog."left"(tenant_create.name, 100))
            USING ERRCODE = 'unique_violation',
                  HINT = 'Tenant names are unique; choose another, or use the existing tenant (SELECT tenant_id FROM invitetomedia.tenants WHERE name = ...).';
    END IF;
    INSERT INTO invitetomedia.tenants (name) VALUES (tenant_create.name)
    RETURNING tenants.tenant_id INTO tid;
    RETURN tid;
END
$$;
COMMENT ON FUNCTION invitetomedia.tenant_create(text) IS
'creates a tenant (not the default one, with no site yet) and returns its tenant_id; then site_create, and map its roles in tenant_roles';

-- Every row of a tenant, in one transaction, counted per table.  Refused
-- while roles act for it (they could still write to it), and for the
-- default tenant (every role not in tenant_roles acts for it), unless
-- cascade, which also removes the roles' mappings.
CREATE FUNCTION invitetomedia.tenant_drop(tenant_id integer, cascade boolean DEFAULT false)
RETURNS TABLE(table_name text, rows_deleted bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer := tenant_drop.tenant_id;
    t invitetomedia.tenants;
    roles text;
    tbl text;
    n bigint;
BEGIN
    IF tid IS NULL OR tenant_drop.cascade IS NULL THEN
        RAISE EXCEPTION 'tenant_drop: % must not be NULL', CASE WHEN tid IS NULL THEN 'tenant_id' ELSE 'cascade' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO t FROM invitetomedia.tenants x
     WHERE x.tenant_id OPERATOR(pg_catalog.=) tid
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % does not exist', tid
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT tenant_id, name FROM invitetomedia.tenants lists the tenants.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.role_name::pg_catalog.text), ', '
                                 ORDER BY r.role_name)
      INTO roles
      FROM invitetomedia.tenant_roles r
     WHERE r.tenant_id OPERATOR(pg_catalog.=) tid;
    IF roles IS NOT NULL AND NOT tenant_drop.cascade THEN
        RAISE EXCEPTION 'tenant % (%) still has roles acting for it: %', tid, pg_catalog.quote_literal(t.name), roles
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'A role in invitetomedia.tenant_roles could still write to the tenant while it is dropped.',
                  HINT = pg_catalog.format('Delete the roles'' rows from invitetomedia.tenant_roles first, or call invitetomedia.tenant_drop(%s, cascade => true) to remove them too.', tid);
    END IF;
    IF t.is_default AND NOT tenant_drop.cascade THEN
        RAISE EXCEPTION 'tenant % (%) is the default tenant', tid, pg_catalog.quote_literal(t.name)
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Every role that invitetomedia.tenant_roles does not name acts for the default tenant.',
                  HINT = pg_catalog.format('Mark another tenant is_default first, or call invitetomedia.tenant_drop(%s, cascade => true).', tid);
    END IF;

    -- no default site left to protect; no template held by a site
    UPDATE invitetomedia.tenants x SET default_site_id = NULL
     WHERE x.tenant_id OPERATOR(pg_catalog.=) tid;
    UPDATE invitetomedia.sites s SET invite_email_template = NULL
     WHERE s.tenant_id OPERATOR(pg_catalog.=) tid
       AND s.invite_email_template IS NOT NULL;

    -- records before links (the links' cleanup triggers then find none),
    -- the directory, the sites' configuration, the sites, the roles, the tenant
    FOREACH tbl IN ARRAY ARRAY['redemptions', 'retired_tokens', 'resends', 'outbox',
                               'guest_link_joins', 'invites', 'guest_links',
                               'media_collaborators', 'group_members', 'media', 'users',
                               'allowed_users', 'email_templates'] LOOP
        EXECUTE pg_catalog.format('DELETE FROM invitetomedia.%I x WHERE x.tenant_id OPERATOR(pg_catalog.=) $1', tbl)
          USING tid;
        GET DIAGNOSTICS n = ROW_COUNT;
        table_name := tbl;
        rows_deleted := n;
        RETURN NEXT;
    END LOOP;
    DELETE FROM invitetomedia.site_hosts h
     USING invitetomedia.sites s
     WHERE s.tenant_id OPERATOR(pg_catalog.=) tid
       AND h.site_id OPERATOR(pg_catalog.=) s.site_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'site_hosts';
    rows_deleted := n;
    RETURN NEXT;
    DELETE FROM invitetomedia.sites s WHERE s.tenant_id OPERATOR(pg_catalog.=) tid;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'sites';
    rows_deleted := n;
    RETURN NEXT;
    DELETE FROM invitetomedia.tenant_roles r WHERE r.tenant_id OPERATOR(pg_catalog.=) tid;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'tenant_roles';
    rows_deleted := n;
    RETURN NEXT;
    DELETE FROM invitetomedia.tenants x WHERE x.tenant_id OPERATOR(pg_catalog.=) tid;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'tenants';
    rows_deleted := n;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION invitetomedia.tenant_drop(integer, boolean) IS
'deletes a tenant and every row of it (links, records, queued mail, directory, sites and their configuration) in one transaction; returns the rows deleted per table; refused while roles act for it or for the default tenant, unless cascade';

CREATE FUNCTION invitetomedia.site_create(tenant_id integer, site_id text,
                                          link_base_url text DEFAULT NULL,
                                          make_default boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    other integer;
BEGIN
    IF site_create.tenant_id IS NULL OR site_create.site_id IS NULL OR site_create.make_default IS NULL THEN
        RAISE EXCEPTION 'site_create: % must not be NULL',
                        CASE WHEN site_create.tenant_id IS NULL THEN 'tenant_id'
                             WHEN site_create.site_id IS NULL THEN 'site_id' ELSE 'make_default' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF site_create.site_id OPERATOR(pg_catalog.!~) '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid site_id: %', pg_catalog.quote_literal(pg_catalog."left"(site_create.site_id, 100))
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A site_id is 1 to 63 lower-case letters, digits, _ and -, starting with a letter or digit.',
                  HINT = 'For example ''mediaspace'' or ''lms-2''.';
    END IF;
    PERFORM 1 FROM invitetomedia.tenants t
      WHERE t.tenant_id OPERATOR(pg_catalog.=) site_create.tenant_id
        FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % does not exist', site_create.tenant_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with invitetomedia.tenant_create(name), which returns its tenant_id.';
    END IF;
    SELECT s.tenant_id INTO other FROM invitetomedia.sites s
     WHERE s.site_id OPERATOR(pg_catalog.=) site_create.site_id;
    IF FOUND THEN
        RAISE EXCEPTION 'site % already exists', pg_catalog.quote_literal(site_create.site_id)
            USING ERRCODE = 'unique_violation',
                  DETAIL = CASE WHEN other OPERATOR(pg_catalog.=) site_create.tenant_id
                                THEN pg_catalog.format('It belongs to tenant %s.', other)
                                ELSE 'It belongs to another tenant: site ids are unique across tenants.' END,
                  HINT = 'Choose another site_id.';
    END IF;
    -- the install's configuration (enabled = false), but its URL
    INSERT INTO invitetomedia.sites (site_id, tenant_id, link_base_url)
    VALUES (site_create.site_id, site_create.tenant_id,
            coalesce(site_create.link_base_url, 'http://localhost/invitetomedia/'));
    -- a tenant's first site is its default
    UPDATE invitetomedia.tenants t SET default_site_id = site_create.site_id
     WHERE t.tenant_id OPERATOR(pg_catalog.=) site_create.tenant_id
       AND (t.default_site_id IS NULL OR site_create.make_default);
END
$$;
COMMENT ON FUNCTION invitetomedia.site_create(integer, text, text, boolean) IS
'creates a site of a tenant, disabled, with the install''s configuration and link_base_url if given; it becomes the tenant''s default site if the tenant had none, or with make_default; configure it with site_configure';

-- The site's configuration, changed by name: site_configure('lms', '{"enabled": true,
-- "link_duration": 60}').  Keys are sites' columns (not site_id nor
-- tenant_id); a JSON null sets NULL; keys not given stay.  UPDATE
-- invitetomedia.sites SET ... does the same.
CREATE FUNCTION invitetomedia.site_configure(site_id text, config jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.sites;
    k text;
    keys text[];
    settable text[] := ARRAY['enabled', 'link_duration', 'link_reusability', 'allowed_users_roles',
                             'invite_email_template', 'restrict_new_user_domains', 'link_base_url',
                             'email_max_attempts', 'email_retry_delay', 'lockout_attempts',
                             'invites_per_hour', 'from_address', 'message_id_domain'];
    problem text;
BEGIN
    IF site_configure.site_id IS NULL OR site_configure.config IS NULL THEN
        RAISE EXCEPTION 'site_configure: % must not be NULL',
                        CASE WHEN site_configure.site_id IS NULL THEN 'site_id' ELSE 'config' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_catalog.jsonb_typeof(site_configure.config) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION 'site_configure: config must be a JSON object, not %',
                        pg_catalog.jsonb_typeof(site_configure.config)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"enabled": true, "link_duration": 60}''.';
    END IF;
    SELECT * INTO st FROM invitetomedia.sites s
     WHERE s.site_id OPERATOR(pg_catalog.=) site_configure.site_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'site "%" does not exist', pg_catalog."left"(site_configure.site_id, 100)
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT site_id, tenant_id FROM invitetomedia.sites lists the sites.';
    END IF;
    keys := ARRAY(SELECT pg_catalog.jsonb_object_keys(site_configure.config));
    FOREACH k IN ARRAY keys LOOP
        IF k OPERATOR(pg_catalog.=) ANY (ARRAY['site_id', 'tenant_id']) THEN
            RAISE EXCEPTION 'site_configure cannot change %', k
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A site keeps its site_id and its tenant.',
                      HINT = 'Create a new site with invitetomedia.site_create() instead.';
        END IF;
        IF NOT k OPERATOR(pg_catalog.=) ANY (settable) THEN
            RAISE EXCEPTION 'site_configure: % is not a setting', pg_catalog.quote_literal(pg_catalog."left"(k, 100))
                USING ERRCODE = 'undefined_column',
                      HINT = 'The settings are ' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(settable, ', ') OPERATOR(pg_catalog.||) '.';
        END IF;
        -- each value read as its column's type, alone, so the error names it
        BEGIN
            PERFORM pg_catalog.jsonb_populate_record(st,
                        pg_catalog.jsonb_build_object(k, site_configure.config OPERATOR(pg_catalog.->) k));
        EXCEPTION WHEN data_exception THEN
            GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT;
            RAISE EXCEPTION 'invalid %: %', k, pg_catalog."left"((site_configure.config OPERATOR(pg_catalog.->) k)::pg_catalog.text, 100)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = problem,
                      HINT = 'Give the value as its column of invitetomedia.sites takes it: a JSON boolean, number, string (an interval as ''"1 minute"'') or array of strings.';
        END;
    END LOOP;
    st := pg_catalog.jsonb_populate_record(st, site_configure.config);
    -- the site's trigger validates and says what is wrong (23514, 23503)
    UPDATE invitetomedia.sites s SET
        enabled = st.enabled,
        link_duration = st.link_duration,
        link_reusability = st.link_reusability,
        allowed_users_roles = st.allowed_users_roles,
        invite_email_template = st.invite_email_template,
        restrict_new_user_domains = st.restrict_new_user_domains,
        link_base_url = st.link_base_url,
        email_max_attempts = st.email_max_attempts,
        email_retry_delay = st.email_retry_delay,
        lockout_attempts = st.lockout_attempts,
        invites_per_hour = st.invites_per_hour,
        from_address = st.from_address,
        message_id_domain = st.message_id_domain
     WHERE s.site_id OPERATOR(pg_catalog.=) site_configure.site_id;
END
$$;
COMMENT ON FUNCTION invitetomedia.site_configure(text, jsonb) IS
'changes settings of a site, named as the columns of invitetomedia.sites in a JSON object (''{"enabled": true}''); the others stay; errors as for settings';

CREATE FUNCTION invitetomedia.site_disable(site_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was boolean;
BEGIN
    IF site_disable.site_id IS NULL THEN
        RAISE EXCEPTION 'site_disable: site_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT s.enabled INTO was FROM invitetomedia.sites s
     WHERE s.site_id OPERATOR(pg_catalog.=) site_disable.site_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'site "%" does not exist', pg_catalog."left"(site_disable.site_id, 100)
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT site_id, tenant_id FROM invitetomedia.sites lists the sites.';
    END IF;
    IF was THEN
        UPDATE invitetomedia.sites s SET enabled = false
         WHERE s.site_id OPERATOR(pg_catalog.=) site_disable.site_id;
    END IF;
    RETURN was;
END
$$;
COMMENT ON FUNCTION invitetomedia.site_disable(text) IS
'switches a site off (its links answer disabled, none is made on it); true if it was enabled; site_configure(site_id, ''{"enabled": true}'') switches it on';

CREATE FUNCTION invitetomedia.site_drop(site_id text)
RETURNS TABLE(table_name text, rows_deleted bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid text := site_drop.site_id;
    st invitetomedia.sites;
    tbl text;
    n bigint;
BEGIN
    IF sid IS NULL THEN
        RAISE EXCEPTION 'site_drop: site_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO st FROM invitetomedia.sites s
     WHERE s.site_id OPERATOR(pg_catalog.=) sid
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'site "%" does not exist', pg_catalog."left"(sid, 100)
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT site_id, tenant_id FROM invitetomedia.sites lists the sites.';
    END IF;
    IF EXISTS (SELECT 1 FROM invitetomedia.tenants t
                WHERE t.tenant_id OPERATOR(pg_catalog.=) st.tenant_id
                  AND t.default_site_id OPERATOR(pg_catalog.=) sid) THEN
        RAISE EXCEPTION 'site % is the default site of tenant %', pg_catalog.quote_literal(sid), st.tenant_id
            USING ERRCODE = 'object_in_use',
                  DETAIL = 'The functions without _at act on the default site of the caller''s tenant.',
                  HINT = 'Make another site the default first (UPDATE invitetomedia.tenants SET default_site_id = ...), or drop the whole tenant with invitetomedia.tenant_drop().';
    END IF;
    UPDATE invitetomedia.sites s SET invite_email_template = NULL
     WHERE s.site_id OPERATOR(pg_catalog.=) sid AND s.invite_email_template IS NOT NULL;

    -- the site's links and records, its configuration, the site; the
    -- tenant's directory stays (its sites share it)
    FOREACH tbl IN ARRAY ARRAY['redemptions', 'retired_tokens', 'resends', 'outbox',
                               'guest_link_joins', 'invites', 'guest_links',
                               'allowed_users', 'email_templates'] LOOP
        EXECUTE pg_catalog.format('DELETE FROM invitetomedia.%I x WHERE x.tenant_id OPERATOR(pg_catalog.=) $1 AND x.site_id OPERATOR(pg_catalog.=) $2', tbl)
          USING st.tenant_id, sid;
        GET DIAGNOSTICS n = ROW_COUNT;
        table_name := tbl;
        rows_deleted := n;
        RETURN NEXT;
    END LOOP;
    DELETE FROM invitetomedia.site_hosts h WHERE h.site_id OPERATOR(pg_catalog.=) sid;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'site_hosts';
    rows_deleted := n;
    RETURN NEXT;
    DELETE FROM invitetomedia.sites s WHERE s.site_id OPERATOR(pg_catalog.=) sid;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'sites';
    rows_deleted := n;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION invitetomedia.site_drop(text) IS
'deletes a site that is not its tenant''s default, with its links, records, queued mail, templates, allowed users and host names, in one transaction; returns the rows deleted per table';

------------------------------------------------------------------------------
-- 1.x writers of the directory and the templates keep working: a row
-- written without a tenant is the writing role's tenant's (and a template
-- or an allowed inviter without a site is of its default site)
------------------------------------------------------------------------------

CREATE FUNCTION invitetomedia.default_site() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (SELECT t.default_site_id FROM invitetomedia.tenants t
         WHERE t.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant());
COMMENT ON FUNCTION invitetomedia.default_site() IS
'the default site of the caller''s tenant (NULL if none): the default of site_id where a 1.x writer names none';

ALTER TABLE invitetomedia.users ALTER COLUMN tenant_id SET DEFAULT invitetomedia.tenant();
ALTER TABLE invitetomedia.group_members ALTER COLUMN tenant_id SET DEFAULT invitetomedia.tenant();
ALTER TABLE invitetomedia.media ALTER COLUMN tenant_id SET DEFAULT invitetomedia.tenant();
ALTER TABLE invitetomedia.media_collaborators ALTER COLUMN tenant_id SET DEFAULT invitetomedia.tenant();
ALTER TABLE invitetomedia.email_templates
    ALTER COLUMN tenant_id SET DEFAULT invitetomedia.tenant(),
    ALTER COLUMN site_id SET DEFAULT invitetomedia.default_site();
ALTER TABLE invitetomedia.allowed_users
    ALTER COLUMN tenant_id SET DEFAULT invitetomedia.tenant(),
    ALTER COLUMN site_id SET DEFAULT invitetomedia.default_site();

------------------------------------------------------------------------------
-- the event relay's counters (itm_relay.c): ids are drawn, so the relay
-- follows a counter of its own.  The writers draw it only in a database
-- the relay serves (invitetomedia.relay_databases), for the records that
-- are events; elsewhere event_seq stays NULL and no sequence is touched.
------------------------------------------------------------------------------

CREATE SEQUENCE invitetomedia.redemptions_event_seq;
CREATE SEQUENCE invitetomedia.guest_link_joins_event_seq;
CREATE SEQUENCE invitetomedia.outbox_event_seq;
ALTER TABLE invitetomedia.redemptions ADD COLUMN event_seq bigint;
ALTER TABLE invitetomedia.guest_link_joins ADD COLUMN event_seq bigint;
ALTER TABLE invitetomedia.outbox ADD COLUMN event_seq bigint;
ALTER SEQUENCE invitetomedia.redemptions_event_seq OWNED BY invitetomedia.redemptions.event_seq;
ALTER SEQUENCE invitetomedia.guest_link_joins_event_seq OWNED BY invitetomedia.guest_link_joins.event_seq;
ALTER SEQUENCE invitetomedia.outbox_event_seq OWNED BY invitetomedia.outbox.event_seq;
COMMENT ON COLUMN invitetomedia.redemptions.event_seq IS
'the event relay''s counter of an ok use, drawn from redemptions_event_seq where the relay serves the database; NULL elsewhere';
COMMENT ON COLUMN invitetomedia.guest_link_joins.event_seq IS
'the event relay''s counter of an ok join, drawn from guest_link_joins_event_seq where the relay serves the database; NULL elsewhere';
COMMENT ON COLUMN invitetomedia.outbox.event_seq IS
'the event relay''s counter of a queued message, drawn from outbox_event_seq where the relay serves the database; NULL elsewhere';
-- the relay reads ranges of the counter across tenants: not a key (no
-- tenant_id), and only the relayed rows are in it
CREATE INDEX redemptions_event_seq_idx ON invitetomedia.redemptions (event_seq)
    WHERE event_seq IS NOT NULL;
CREATE INDEX guest_link_joins_event_seq_idx ON invitetomedia.guest_link_joins (event_seq)
    WHERE event_seq IS NOT NULL;
CREATE INDEX outbox_event_seq_idx ON invitetomedia.outbox (event_seq)
    WHERE event_seq IS NOT NULL;
-- what the installing role's default privileges gave on them goes (these
-- sequences get no pg_init_privs entry for the block at the end to find)
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname, a.privilege_type,
               CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                    ELSE pg_catalog.quote_ident(a.grantee::pg_catalog.regrole::pg_catalog.text)
               END AS grantee
          FROM pg_catalog.pg_class c
          CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
         WHERE c.relnamespace OPERATOR(pg_catalog.=) 'invitetomedia'::pg_catalog.regnamespace
           AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY['redemptions_event_seq',
                   'guest_link_joins_event_seq', 'outbox_event_seq']::pg_catalog.name[])
           AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
         ORDER BY 1, 3, 2
    LOOP
        EXECUTE pg_catalog.format('REVOKE %s ON SEQUENCE invitetomedia.%I FROM %s CASCADE',
                                  r.privilege_type, r.relname, r.grantee);
        RAISE WARNING 'revoked % on sequence invitetomedia.% from % (a default privilege of the installing role)',
                     r.privilege_type, r.relname, r.grantee;
    END LOOP;
END
$$;
-- a restored database goes on from the counters' values (the relay starts
-- afresh there, at their current values: none is announced twice)
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.redemptions_event_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.guest_link_joins_event_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.outbox_event_seq', '');

------------------------------------------------------------------------------
-- the API on sites (C): the 1.x names keep their signatures (and the GRANTs
-- a DBA gave on them) and act on the default site of the caller's tenant;
-- the _at functions name the site first
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION invitetomedia.invite_create(
    media_id text, inviter_id text, email text, first_name text, last_name text,
    role text DEFAULT 'viewer', send_email boolean DEFAULT false,
    not_before timestamptz DEFAULT NULL)
RETURNS TABLE(invite_id bigint, token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_create_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.invite_consume(token text, email text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, invite_id bigint, media_id text, role text, user_id text,
              first_name text, last_name text, uses_left integer, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_consume_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.invite_check(token text)
RETURNS TABLE(status text, media_id text, media_title text, role text,
              expires_at timestamptz, uses_left integer, opens_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_check_2_0'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.invite_revoke(invite_id bigint, actor_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'invite_revoke_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.invite_resend(invite_id bigint, actor_id text, send_email boolean DEFAULT true)
RETURNS TABLE(token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_resend_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.invite_purge(keep interval DEFAULT '30 days')
RETURNS bigint
AS 'MODULE_PATHNAME', 'invite_purge_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.guest_link_create(
    media_id text, actor_id text, name text,
    click_limit integer DEFAULT NULL, valid_days integer DEFAULT NULL)
RETURNS TABLE(guest_link_id bigint, token text, url text, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'guest_link_create_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.guest_link_join(
    token text, email text, first_name text, last_name text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, guest_link_id bigint, media_id text, role text, user_id text,
              clicks_left integer, expires_at timestamptz, join_id bigint)
AS 'MODULE_PATHNAME', 'guest_link_join_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION invitetomedia.guest_link_revoke(guest_link_id bigint, actor_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'guest_link_revoke_2_0'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invitetomedia.invite_create_at(
    site_id text, media_id text, inviter_id text, email text, first_name text, last_name text,
    role text DEFAULT 'viewer', send_email boolean DEFAULT false,
    not_before timestamptz DEFAULT NULL)
RETURNS TABLE(invite_id bigint, token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_create_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_create_at(text, text, text, text, text, text, text, boolean, timestamptz) IS
'invite_create on a site of the caller''s tenant: the site''s settings, templates and base URL govern the link';

CREATE FUNCTION invitetomedia.invite_consume_at(site_id text, token text, email text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, invite_id bigint, media_id text, role text, user_id text,
              first_name text, last_name text, uses_left integer, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_consume_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_consume_at(text, text, text, text) IS
'invite_consume at a site: a link of another site or tenant answers not_found';

CREATE FUNCTION invitetomedia.invite_check_at(site_id text, token text)
RETURNS TABLE(status text, media_id text, media_title text, role text,
              expires_at timestamptz, uses_left integer, opens_at timestamptz)
AS 'MODULE_PATHNAME', 'invite_check_at'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_check_at(text, text) IS
'invite_check at a site: a link of another site or tenant answers not_found';

CREATE FUNCTION invitetomedia.invite_revoke_at(site_id text, invite_id bigint, actor_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'invite_revoke_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_revoke_at(text, bigint, text) IS
'invite_revoke at a site: a link of another site or tenant does not exist';

CREATE FUNCTION invitetomedia.invite_resend_at(site_id text, invite_id bigint, actor_id text, send_email boolean DEFAULT true)
RETURNS TABLE(token text, url text, expires_at timestamptz, max_uses integer)
AS 'MODULE_PATHNAME', 'invite_resend_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.invite_resend_at(text, bigint, text, boolean) IS
'invite_resend at a site: a link of another site or tenant does not exist';

CREATE FUNCTION invitetomedia.guest_link_create_at(
    site_id text, media_id text, actor_id text, name text,
    click_limit integer DEFAULT NULL, valid_days integer DEFAULT NULL)
RETURNS TABLE(guest_link_id bigint, token text, url text, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'guest_link_create_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_create_at(text, text, text, text, integer, integer) IS
'guest_link_create on a site of the caller''s tenant';

CREATE FUNCTION invitetomedia.guest_link_join_at(
    site_id text, token text, email text, first_name text, last_name text, device_id text DEFAULT NULL)
RETURNS TABLE(status text, guest_link_id bigint, media_id text, role text, user_id text,
              clicks_left integer, expires_at timestamptz, join_id bigint)
AS 'MODULE_PATHNAME', 'guest_link_join_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_join_at(text, text, text, text, text, text) IS
'guest_link_join at a site: a link of another site or tenant answers not_found';

CREATE FUNCTION invitetomedia.guest_link_revoke_at(site_id text, guest_link_id bigint, actor_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'guest_link_revoke_at'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION invitetomedia.guest_link_revoke_at(text, bigint, text) IS
'guest_link_revoke at a site: a link of another site or tenant does not exist';

REVOKE EXECUTE ON FUNCTION
    invitetomedia.invite_create_at(text, text, text, text, text, text, text, boolean, timestamptz),
    invitetomedia.invite_consume_at(text, text, text, text),
    invitetomedia.invite_check_at(text, text),
    invitetomedia.invite_revoke_at(text, bigint, text),
    invitetomedia.invite_resend_at(text, bigint, text, boolean),
    invitetomedia.guest_link_create_at(text, text, text, text, integer, integer),
    invitetomedia.guest_link_join_at(text, text, text, text, text, text),
    invitetomedia.guest_link_revoke_at(text, bigint, text)
FROM PUBLIC;

------------------------------------------------------------------------------
-- the platform's sender: every tenant's outbox (cross-tenant by design)
------------------------------------------------------------------------------

/*
 * One sender serves every tenant (docs/design-2.0.md, section 8).  These
 * four functions are the only ones of the API that do not keep to the
 * caller's tenant: they claim and confirm the mail of every tenant, bodies
 * (which hold live links) included.  That is their purpose, so they are a
 * privilege of the platform, not of a tenant:
 *
 *   - EXECUTE is revoked from PUBLIC (below), and the DBA grants it to the
 *     platform's sender role only, never to a role of tenant_roles nor to
 *     an application's role;
 *   - a tenant that runs a sender of its own uses email_claim_sites and its
 *     tenant's email_sent, email_failed and email_release instead, which
 *     keep to the caller's tenant.
 *
 *   email_claim_all(batch, lease)
 *       claims up to batch due messages of every tenant and site, oldest
 *       due first, for lease (FOR UPDATE SKIP LOCKED: senders in parallel
 *       never get the same message).  Its columns are email_claim_sites':
 *       1.1.1's (message_id, to_email, to_name, subject, body, claim_no,
 *       message_key), then tenant_id, site_id and the site's from_address
 *       and message_id_domain (NULL: the sender's own --from and --domain).
 *   email_sent_all(tenant_id, message_id, claim_no)             -> boolean
 *   email_failed_all(tenant_id, message_id, error, claim_no,
 *                    permanent DEFAULT false)                     -> text
 *   email_release_all(tenant_id, message_id, claim_no)          -> boolean
 *       email_sent, email_failed and email_release with the message named
 *       by its tenant: outbox ids are drawn per tenant and are unique within
 *       a tenant only.  Results, WARNINGs and errors are those of the
 *       tenant's forms; the tenant of a message that does not exist is no
 *       error (false, NULL: not queued), as for a message id that does not
 *       exist.
 *
 * Each message is governed by its own site: a lease that ran out on its
 * last attempt (the site's email_max_attempts) makes it dead at the next
 * claim, and a failure waits the site's email_retry_delay, doubled per
 * attempt, at most a day.
 *
 * Cost: the due messages of all tenants are found through outbox_due_idx
 * (tenant_id, next_attempt_at), whose tenant_id leads (section 3), so a
 * claim reads every pending message's index entry and sorts them, rather
 * than stopping after batch entries.  The index holds pending messages
 * only (sent and dead ones leave it), so this is the size of the backlog.
 * Oldest due first across tenants means one tenant's large backlog delays
 * the others' newer mail until it is drained; fairness per tenant is not
 * attempted.
 */
CREATE FUNCTION invitetomedia.email_claim_all(batch integer DEFAULT 10, lease interval DEFAULT '5 minutes')
RETURNS TABLE(message_id bigint, to_email text, to_name text, subject text, body text,
              claim_no integer, message_key uuid, tenant_id integer, site_id text,
              from_address text, message_id_domain text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF batch IS NULL OR lease IS NULL THEN
        RAISE EXCEPTION 'email_claim_all: batch and lease must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF batch OPERATOR(pg_catalog.<) 1 OR batch OPERATOR(pg_catalog.>) 1000 THEN
        RAISE EXCEPTION 'email_claim_all: batch must be between 1 and 1000, not %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease OPERATOR(pg_catalog.<) '1 second'::pg_catalog.interval
       OR lease OPERATOR(pg_catalog.>) '1 day'::pg_catalog.interval THEN
        RAISE EXCEPTION 'email_claim_all: lease must be between 1 second and 1 day, not %', lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A claimed message whose lease ran out was never confirmed: the sender
    -- died with it in hand.  If that was its site's last attempt it is dead.
    UPDATE invitetomedia.outbox o
       SET dead_at = pg_catalog.now(), claimed_until = NULL,
           last_error = COALESCE(o.last_error, 'lease expired without confirmation')
      FROM invitetomedia.sites s
     WHERE s.tenant_id OPERATOR(pg_catalog.=) o.tenant_id
       AND s.site_id OPERATOR(pg_catalog.=) o.site_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
       AND o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
       AND o.attempts OPERATOR(pg_catalog.>=) s.email_max_attempts;

    RETURN QUERY
    WITH due AS (
        SELECT o.tenant_id, o.message_id
          FROM invitetomedia.outbox o
         WHERE o.sent_at IS NULL AND o.dead_at IS NULL
           AND o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
         ORDER BY o.next_attempt_at, o.tenant_id, o.message_id
         LIMIT batch
           FOR UPDATE OF o SKIP LOCKED)
    UPDATE invitetomedia.outbox o
       SET attempts = o.attempts OPERATOR(pg_catalog.+) 1,
           claim_no = o.claim_no OPERATOR(pg_catalog.+) 1,
           claimed_until = pg_catalog.now() OPERATOR(pg_catalog.+) lease,
           next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) lease
      FROM due, invitetomedia.sites s
     WHERE o.tenant_id OPERATOR(pg_catalog.=) due.tenant_id
       AND o.message_id OPERATOR(pg_catalog.=) due.message_id
       AND s.tenant_id OPERATOR(pg_catalog.=) o.tenant_id
       AND s.site_id OPERATOR(pg_catalog.=) o.site_id
    RETURNING o.message_id, o.to_email, o.to_name, o.subject, o.body, o.claim_no, o.message_key,
              o.tenant_id, o.site_id, s.from_address, s.message_id_domain;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_claim_all(integer, interval) IS
'CROSS-TENANT, for the platform''s sender role only: claims up to batch due outbox messages of every tenant and site for lease, each with its tenant_id, site_id and its site''s from_address and message_id_domain (NULL: the sender''s own); confirm with email_sent_all, email_failed_all, email_release_all';

CREATE FUNCTION invitetomedia.email_sent_all(tenant_id integer, message_id bigint, claim_no integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_claim integer;
BEGIN
    IF tenant_id IS NULL OR message_id IS NULL OR claim_no IS NULL THEN
        RAISE EXCEPTION 'email_sent_all: tenant_id, message_id and claim_no must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the body holds a live link: it is not kept once delivered
    UPDATE invitetomedia.outbox o
       SET sent_at = pg_catalog.now(), body = NULL, claimed_until = NULL, last_error = NULL
     WHERE o.tenant_id OPERATOR(pg_catalog.=) email_sent_all.tenant_id
       AND o.message_id OPERATOR(pg_catalog.=) email_sent_all.message_id
       AND o.sent_at IS NULL
       AND o.claim_no OPERATOR(pg_catalog.=) email_sent_all.claim_no;
    IF FOUND THEN
        RETURN true;
    END IF;
    SELECT o.claim_no INTO current_claim
      FROM invitetomedia.outbox o
     WHERE o.tenant_id OPERATOR(pg_catalog.=) email_sent_all.tenant_id
       AND o.message_id OPERATOR(pg_catalog.=) email_sent_all.message_id
       AND o.sent_at IS NULL;
    IF current_claim IS DISTINCT FROM email_sent_all.claim_no AND current_claim IS NOT NULL THEN
        RAISE WARNING 'claim % of outbox message % of tenant % is superseded by claim %; nothing changed',
                      email_sent_all.claim_no, email_sent_all.message_id, email_sent_all.tenant_id,
                      current_claim
            USING DETAIL = 'The lease ran out and another sender claimed the message: it will be sent again.',
                  HINT = 'Use a lease longer than a delivery can take.';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_sent_all(integer, bigint, integer) IS
'CROSS-TENANT, for the platform''s sender role only: marks outbox message message_id of tenant tenant_id sent under claim claim_no and scrubs its body; false if already sent, no longer queued, or the claim was superseded (then nothing changes)';

CREATE FUNCTION invitetomedia.email_failed_all(tenant_id integer, message_id bigint, error text,
                                               claim_no integer, permanent boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st invitetomedia.sites;
    sid text;
    current_claim integer;
    result text;
BEGIN
    IF tenant_id IS NULL OR message_id IS NULL OR claim_no IS NULL OR permanent IS NULL THEN
        RAISE EXCEPTION 'email_failed_all: tenant_id, message_id, claim_no and permanent must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT o.claim_no, o.site_id INTO current_claim, sid
      FROM invitetomedia.outbox o
     WHERE o.tenant_id OPERATOR(pg_catalog.=) email_failed_all.tenant_id
       AND o.message_id OPERATOR(pg_catalog.=) email_failed_all.message_id
       AND o.sent_at IS NULL AND o.dead_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF current_claim IS DISTINCT FROM email_failed_all.claim_no THEN
        RAISE WARNING 'claim % of outbox message % of tenant % is superseded by claim %; nothing changed',
                      email_failed_all.claim_no, email_failed_all.message_id, email_failed_all.tenant_id,
                      current_claim
            USING DETAIL = 'The lease ran out and another sender claimed the message.';
        RETURN 'superseded';
    END IF;
    -- the message's own site: its attempts and its retry delay
    SELECT s.* INTO st
      FROM invitetomedia.sites s
     WHERE s.tenant_id OPERATOR(pg_catalog.=) email_failed_all.tenant_id
       AND s.site_id OPERATOR(pg_catalog.=) sid;
    IF NOT FOUND THEN
        -- site_drop deletes a site's mail with it: not reached but by hand
        RAISE EXCEPTION 'outbox message % of tenant % belongs to site %, which does not exist',
                        email_failed_all.message_id, email_failed_all.tenant_id, sid
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Delete the message, or create the site again.';
    END IF;
    UPDATE invitetomedia.outbox o
       SET last_error = pg_catalog.left(COALESCE(error, 'unknown error'), 1000),
           claimed_until = NULL,
           -- a failure that retrying cannot mend (a message that cannot be
           -- built, a mailer's permanent refusal) is dead at once
           dead_at = CASE WHEN email_failed_all.permanent
                               OR o.attempts OPERATOR(pg_catalog.>=) st.email_max_attempts
                          THEN pg_catalog.now() END,
           -- exponential backoff: delay, 2 x delay, 4 x delay ... capped at 1 day
           next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) LEAST(
               st.email_retry_delay OPERATOR(pg_catalog.*)
                   pg_catalog.power(2, LEAST(GREATEST(o.attempts OPERATOR(pg_catalog.-) 1, 0), 20)),
               '1 day'::pg_catalog.interval)
     WHERE o.tenant_id OPERATOR(pg_catalog.=) email_failed_all.tenant_id
       AND o.message_id OPERATOR(pg_catalog.=) email_failed_all.message_id
    RETURNING CASE WHEN o.dead_at IS NULL THEN 'pending' ELSE 'dead' END INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_failed_all(integer, bigint, text, integer, boolean) IS
'CROSS-TENANT, for the platform''s sender role only: records a failed delivery of outbox message message_id of tenant tenant_id under claim claim_no: pending (due after its site''s email_retry_delay, doubled per attempt), or dead after its site''s email_max_attempts, dead at once if permanent; superseded (nothing changed) if another claim is current; NULL if not queued';

CREATE FUNCTION invitetomedia.email_release_all(tenant_id integer, message_id bigint, claim_no integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tenant_id IS NULL OR message_id IS NULL OR claim_no IS NULL THEN
        RAISE EXCEPTION 'email_release_all: tenant_id, message_id and claim_no must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- not attempted: the claim's attempt is given back and the message is
    -- due now, so that restarts cannot use up its attempts untried
    UPDATE invitetomedia.outbox o
       SET attempts = GREATEST(o.attempts OPERATOR(pg_catalog.-) 1, 0),
           claimed_until = NULL,
           next_attempt_at = pg_catalog.now()
     WHERE o.tenant_id OPERATOR(pg_catalog.=) email_release_all.tenant_id
       AND o.message_id OPERATOR(pg_catalog.=) email_release_all.message_id
       AND o.claim_no OPERATOR(pg_catalog.=) email_release_all.claim_no
       AND o.claimed_until IS NOT NULL
       AND o.sent_at IS NULL AND o.dead_at IS NULL;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION invitetomedia.email_release_all(integer, bigint, integer) IS
'CROSS-TENANT, for the platform''s sender role only: hands back outbox message message_id of tenant tenant_id claimed under claim_no but not attempted (a sender stopping): due now, the attempt not counted; false if the claim is no longer current';

-- the platform's privilege: the DBA grants these to its sender role only
REVOKE EXECUTE ON FUNCTION
    invitetomedia.email_claim_all(integer, interval),
    invitetomedia.email_sent_all(integer, bigint, integer),
    invitetomedia.email_failed_all(integer, bigint, text, integer, boolean),
    invitetomedia.email_release_all(integer, bigint, integer)
FROM PUBLIC;

------------------------------------------------------------------------------
-- the lobby: the role it acts as for each tenant, and its site look-ups
------------------------------------------------------------------------------

/*
 * A lobby serving many sites (examples/lobby, LOBBY_SITES) connects as one
 * login role that is a member of one role per tenant: the tenant's lobby
 * role, a role of tenant_roles marked lobby (at most one per tenant, so it
 * is mapped to the tenant by construction).  For each request the lobby
 * finds the site, by the request's host name (site_hosts) or by a site id
 * from its path, with the tenant's lobby role (lobby_site_for_host,
 * lobby_site), then runs each call after SET LOCAL ROLE to that role: the
 * role's name comes from here, never from the request.  Both look-ups are
 * granted to no one: a DBA grants them to the lobby's login role.
 */
ALTER TABLE invitetomedia.tenant_roles
    ADD COLUMN lobby boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX tenant_roles_lobby_key
    ON invitetomedia.tenant_roles (tenant_id) WHERE lobby;
COMMENT ON COLUMN invitetomedia.tenant_roles.lobby IS
'true: the role the lobby acts as (SET LOCAL ROLE) for the role''s tenant; at most one per tenant';

-- A site, its tenant and the tenant's lobby role (NULL if the tenant has
-- none, or its role no longer exists); no row for a site that does not
-- exist.
CREATE FUNCTION invitetomedia.lobby_site(site text)
RETURNS TABLE(site_id text, tenant_id integer, lobby_role name)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT s.site_id, s.tenant_id, r.rolname
  FROM invitetomedia.sites s
  LEFT JOIN invitetomedia.tenant_roles tr
    ON tr.tenant_id OPERATOR(pg_catalog.=) s.tenant_id AND tr.lobby
  LEFT JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) tr.role_name
 WHERE s.site_id OPERATOR(pg_catalog.=) $1
$$;
COMMENT ON FUNCTION invitetomedia.lobby_site(text) IS
'the lobby''s look-up of a site named in its path: the site, its tenant and the tenant''s lobby role (tenant_roles.lobby; NULL: none); no row for an unknown site';

-- The same for a host name of site_hosts.  The lobby sends the name
-- lower-case, without port or trailing dot; this lower-cases it and drops
-- trailing dots again, so that a DBA's query finds what the lobby finds.
CREATE FUNCTION invitetomedia.lobby_site_for_host(host text)
RETURNS TABLE(site_id text, tenant_id integer, lobby_role name)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT s.site_id, s.tenant_id, r.rolname
  FROM invitetomedia.site_hosts h
  JOIN invitetomedia.sites s ON s.site_id OPERATOR(pg_catalog.=) h.site_id
  LEFT JOIN invitetomedia.tenant_roles tr
    ON tr.tenant_id OPERATOR(pg_catalog.=) s.tenant_id AND tr.lobby
  LEFT JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) tr.role_name
 WHERE h.host OPERATOR(pg_catalog.=) pg_catalog.rtrim(pg_catalog.lower($1), '.')
$$;
COMMENT ON FUNCTION invitetomedia.lobby_site_for_host(text) IS
'the lobby''s look-up of a request''s host name (site_hosts): the site, its tenant and the tenant''s lobby role (tenant_roles.lobby; NULL: none); no row for an unknown host';

REVOKE EXECUTE ON FUNCTION
    invitetomedia.lobby_site(text),
    invitetomedia.lobby_site_for_host(text)
FROM PUBLIC;

------------------------------------------------------------------------------
-- row-level security: every table, the caller's tenant only
------------------------------------------------------------------------------

/*
 * On every table, one RESTRICTIVE policy per command holds a role to the
 * rows of its tenant (tenant_id = invitetomedia.tenant(); no tenant, no
 * row).  Restrictive policies only narrow what a permissive one allows:
 * the tables that had no policy in 1.x get a permissive policy that allows
 * what the role's privileges do, as before, and invites and guest links
 * keep their 1.x read policies (combined with the tenant's by AND; they
 * are written through the API only, by their write guard).  The owner, who
 * runs the API, is not held by these policies (design, section 5).
 */
DO $$
DECLARE
    tbl text;
    cmd text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['tenants', 'sites', 'tenant_roles', 'email_templates',
                               'allowed_users', 'users', 'group_members', 'media',
                               'media_collaborators', 'invites', 'redemptions', 'outbox',
                               'retired_tokens', 'resends', 'guest_links', 'guest_link_joins'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE invitetomedia.%I ENABLE ROW LEVEL SECURITY', tbl);
        FOREACH cmd IN ARRAY ARRAY['select', 'insert', 'update', 'delete'] LOOP
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON invitetomedia.%I AS RESTRICTIVE FOR %s %s',
                tbl OPERATOR(pg_catalog.||) '_tenant_' OPERATOR(pg_catalog.||) cmd, tbl,
                -- (in the C collation: a Turkish database's upper('insert') is 'İNSERT')
                pg_catalog.upper(cmd COLLATE pg_catalog."C"),
                CASE cmd
                    WHEN 'insert' THEN 'WITH CHECK (tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())'
                    WHEN 'update' THEN 'USING (tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant()) '
                                       'WITH CHECK (tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())'
                    ELSE 'USING (tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())' END);
        END LOOP;
        IF tbl OPERATOR(pg_catalog.<>) ALL (ARRAY['invites', 'guest_links']) THEN
            EXECUTE pg_catalog.format(
                'CREATE POLICY %I ON invitetomedia.%I FOR ALL USING (true) WITH CHECK (true)',
                tbl OPERATOR(pg_catalog.||) '_granted', tbl);
        END IF;
    END LOOP;
END
$$;

-- site_hosts names no tenant: a host is its site's tenant's
ALTER TABLE invitetomedia.site_hosts ENABLE ROW LEVEL SECURITY;
CREATE POLICY site_hosts_tenant_select ON invitetomedia.site_hosts AS RESTRICTIVE FOR SELECT
    USING (site_id OPERATOR(pg_catalog.=) ANY (ARRAY(
               SELECT s.site_id FROM invitetomedia.sites s
                WHERE s.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())));
CREATE POLICY site_hosts_tenant_insert ON invitetomedia.site_hosts AS RESTRICTIVE FOR INSERT
    WITH CHECK (site_id OPERATOR(pg_catalog.=) ANY (ARRAY(
               SELECT s.site_id FROM invitetomedia.sites s
                WHERE s.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())));
CREATE POLICY site_hosts_tenant_update ON invitetomedia.site_hosts AS RESTRICTIVE FOR UPDATE
    USING (site_id OPERATOR(pg_catalog.=) ANY (ARRAY(
               SELECT s.site_id FROM invitetomedia.sites s
                WHERE s.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())))
    WITH CHECK (site_id OPERATOR(pg_catalog.=) ANY (ARRAY(
               SELECT s.site_id FROM invitetomedia.sites s
                WHERE s.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())));
CREATE POLICY site_hosts_tenant_delete ON invitetomedia.site_hosts AS RESTRICTIVE FOR DELETE
    USING (site_id OPERATOR(pg_catalog.=) ANY (ARRAY(
               SELECT s.site_id FROM invitetomedia.sites s
                WHERE s.tenant_id OPERATOR(pg_catalog.=) invitetomedia.tenant())));
CREATE POLICY site_hosts_granted ON invitetomedia.site_hosts FOR ALL USING (true) WITH CHECK (true);

------------------------------------------------------------------------------
-- privileges: exactly the documented ones
------------------------------------------------------------------------------

REVOKE ALL ON TABLE invitetomedia.tenants, invitetomedia.sites, invitetomedia.site_hosts,
                    invitetomedia.tenant_roles, invitetomedia.settings
    FROM PUBLIC;
REVOKE ALL ON SEQUENCE invitetomedia.tenants_tenant_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION invitetomedia.tenant_cache_invalidate(),
                       invitetomedia.sites_validate(),
                       invitetomedia.tenants_validate(),
                       invitetomedia.tenants_guard(),
                       invitetomedia.resolve_site(text),
                       invitetomedia.may_invite_at(text, text, text),
                       invitetomedia.domain_allowed_at(text, text),
                       invitetomedia.guest_allowed_at(text, text),
                       invitetomedia.email_claim_sites(integer, interval),
                       invitetomedia.tenant_create(text),
                       invitetomedia.tenant_drop(integer, boolean),
                       invitetomedia.site_create(integer, text, text, boolean),
                       invitetomedia.site_configure(text, jsonb),
                       invitetomedia.site_disable(text),
                       invitetomedia.site_drop(text)
    FROM PUBLIC;
-- It tells a role its own tenant only, and the policies call it as the
-- role that reads; default_site() likewise, as the default of site_id.
GRANT EXECUTE ON FUNCTION invitetomedia.tenant(), invitetomedia.default_site() TO PUBLIC;

/*
 * Default privileges (ALTER DEFAULT PRIVILEGES ... GRANT) of the installing
 * role land on every object an extension script creates.  Whatever such a
 * grant gave, on any member of the extension, is revoked here; it is found
 * in pg_init_privs, which holds the privileges as the scripts left them.
 * Grants a DBA made after the install are not there, and are kept.  The
 * documented grants (EXECUTE on the two pure helpers and on tenant() to
 * PUBLIC) stay.  The block is 1.1.1's, with tenant() among the documented
 * grants, run over every member again.
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
                   'invitetomedia.normalize_domain(text)'::pg_catalog.regprocedure,
                   'invitetomedia.tenant()'::pg_catalog.regprocedure,
                   'invitetomedia.default_site()'::pg_catalog.regprocedure]::pg_catalog.oid[])
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
            RAISE WARNING 'revoked % on % % from % (a default privilege of the installing role)',
                         r.privilege_type, pg_catalog.lower(obj.kind COLLATE pg_catalog."C"), obj.identity, r.grantee;
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
    old_rel pg_catalog.oid := 'invitetomedia.settings_1_1_1'::pg_catalog.regclass;
    new_rel pg_catalog.oid := 'invitetomedia.settings'::pg_catalog.regclass;
    r record;
    saved pg_catalog.aclitem[];
    saved_cols record;
BEGIN
    /*
     * A DBA's role keeps working across the update: what a DBA granted on
     * the settings table (grants that are not the extension's own, i.e. not
     * in pg_init_privs), on the table or on its columns, is granted on the
     * view, column by column where the view has the column.  A grant made
     * by an extension script counts as the extension's own, which pg_dump
     * leaves out (a restore would lose it): the view's recorded initial
     * privileges are put back as they were before these grants.
     */
    SELECT i.initprivs INTO saved
      FROM pg_catalog.pg_init_privs i
     WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND i.objoid OPERATOR(pg_catalog.=) new_rel
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
    FOR r IN
        SELECT a.grantee, a.privilege_type, a.is_grantable, NULL::pg_catalog.name AS col
          FROM pg_catalog.pg_class c
          CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
         WHERE c.oid OPERATOR(pg_catalog.=) old_rel
           AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
           AND NOT EXISTS (
                SELECT 1
                  FROM pg_catalog.pg_init_privs i
                  CROSS JOIN LATERAL pg_catalog.aclexplode(i.initprivs) ia
                 WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND i.objoid OPERATOR(pg_catalog.=) c.oid
                   AND i.objsubid OPERATOR(pg_catalog.=) 0
                   AND ia.grantee OPERATOR(pg_catalog.=) a.grantee
                   AND ia.privilege_type OPERATOR(pg_catalog.=) a.privilege_type)
        UNION ALL
        SELECT a.grantee, a.privilege_type, a.is_grantable, att.attname
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_attribute att ON att.attrelid OPERATOR(pg_catalog.=) c.oid
          CROSS JOIN LATERAL pg_catalog.aclexplode(att.attacl) a
         WHERE c.oid OPERATOR(pg_catalog.=) old_rel
           AND att.attnum OPERATOR(pg_catalog.>) 0 AND NOT att.attisdropped
           AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute v
                        WHERE v.attrelid OPERATOR(pg_catalog.=) new_rel
                          AND v.attname OPERATOR(pg_catalog.=) att.attname)
           AND NOT EXISTS (
                SELECT 1
                  FROM pg_catalog.pg_init_privs i
                  CROSS JOIN LATERAL pg_catalog.aclexplode(i.initprivs) ia
                 WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND i.objoid OPERATOR(pg_catalog.=) c.oid
                   AND i.objsubid OPERATOR(pg_catalog.=) att.attnum
                   AND ia.grantee OPERATOR(pg_catalog.=) a.grantee
                   AND ia.privilege_type OPERATOR(pg_catalog.=) a.privilege_type)
         ORDER BY 4 NULLS FIRST, 1, 2
    LOOP
        EXECUTE pg_catalog.format('GRANT %s%s ON TABLE invitetomedia.settings TO %s%s',
            r.privilege_type,
            CASE WHEN r.col IS NULL THEN '' ELSE pg_catalog.format(' (%I)', r.col) END,
            CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(r.grantee::pg_catalog.regrole::pg_catalog.text) END,
            CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        RAISE WARNING 'granted % on view invitetomedia.settings to % as on its 1.1.1 table',
            r.privilege_type OPERATOR(pg_catalog.||)
            CASE WHEN r.col IS NULL THEN '' ELSE pg_catalog.format(' (%I)', r.col) END,
            CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE r.grantee::pg_catalog.regrole::pg_catalog.text END;
    END LOOP;
    -- what the script gave the view and its columns (none), as before the grants
    DELETE FROM pg_catalog.pg_init_privs i
     WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND i.objoid OPERATOR(pg_catalog.=) new_rel
       AND i.objsubid OPERATOR(pg_catalog.>) 0;
    IF saved IS NULL THEN
        DELETE FROM pg_catalog.pg_init_privs i
         WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND i.objoid OPERATOR(pg_catalog.=) new_rel
           AND i.objsubid OPERATOR(pg_catalog.=) 0;
    ELSE
        UPDATE pg_catalog.pg_init_privs i
           SET initprivs = saved
         WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND i.objoid OPERATOR(pg_catalog.=) new_rel
           AND i.objsubid OPERATOR(pg_catalog.=) 0;
    END IF;
END
$$;

ALTER EXTENSION invitetomedia DROP TABLE invitetomedia.settings_1_1_1;
DROP TABLE invitetomedia.settings_1_1_1;
DROP FUNCTION invitetomedia.settings_validate();

------------------------------------------------------------------------------
-- pg_dump: tenants, sites, their hosts and roles are the database's data
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('invitetomedia.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.sites', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.site_hosts', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.tenant_roles', '');
SELECT pg_catalog.pg_extension_config_dump('invitetomedia.tenants_tenant_id_seq', '');
