-- bench/plpgsql_reference.sql
--
-- The PL/pgSQL reference of the benchmark: invite_consume, invite_check and
-- invite_create written the way a competent developer would write them in
-- PL/pgSQL, applying the same rules as the C functions of 1.1
-- (settings.enabled, the documented status order with not_yet and the
-- lockout, the email compare, last_used_at, the redemption record of every
-- attempt on a known link, a wrong email counted towards the lockout, a
-- token replaced by invite_resend answering revoked, the user created on a
-- first use, the accepted event on ok; may_invite() and domain_allowed()
-- for create).  Installed into schema "bench" of the benchmark database
-- only; never part of the extension.
--
-- The consume is the shortest correct one: one SELECT of the link (and the
-- settings row) by token hash under FOR UPDATE, the status worked out from
-- that row, then the UPDATE of the use, the user look-up and the record.
-- The token's form is checked with two comparisons (prefix and length; a
-- token that passes them but was never issued is simply not found), no
-- regular expression.  invite_create keeps its regular expression for the
-- email address (the C function checks the address's form too) and renders
-- templates with replace().

CREATE SCHEMA IF NOT EXISTS bench;

CREATE FUNCTION bench.plpgsql_invite_consume(p_token text, p_email text, p_device_id text DEFAULT NULL)
RETURNS TABLE(status text, invite_id bigint, media_id text, role text, user_id text,
              first_name text, last_name text, uses_left integer, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inv       record;
    v_hash    bytea;
    v_email   text;
    v_user    text;
    v_id      bigint;
    v_enabled boolean;
BEGIN
    IF p_token IS NULL OR p_email IS NULL THEN
        RAISE EXCEPTION 'token and email must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    status := 'not_found';
    IF length(p_token) <> 52 OR left(p_token, 4) <> 'itm_' THEN
        RETURN NEXT;
        RETURN;
    END IF;
    v_hash := public.digest(p_token, 'sha256');
    v_email := lower(btrim(p_email) COLLATE "C");

    SELECT i.invite_id, i.media_id, i.role, i.email, i.first_name, i.last_name, i.expires_at,
           i.max_uses, i.use_count, i.revoked_at, i.not_before, i.failed_attempts,
           s.enabled, s.lockout_attempts
      INTO inv
      FROM invitetomedia.invites i, invitetomedia.settings s
     WHERE i.token_hash = v_hash
       FOR UPDATE OF i;
    IF NOT FOUND THEN
        -- a token replaced by invite_resend answers revoked (disabled first)
        SELECT r.invite_id, s.enabled INTO v_id, v_enabled
          FROM invitetomedia.retired_tokens r, invitetomedia.settings s
         WHERE r.token_hash = v_hash;
        IF FOUND THEN
            status := CASE WHEN v_enabled THEN 'revoked' ELSE 'disabled' END;
            INSERT INTO invitetomedia.redemptions (invite_id, status, device_id)
            VALUES (v_id, status, p_device_id);
        END IF;
        RETURN NEXT;
        RETURN;
    END IF;

    IF NOT inv.enabled THEN
        status := 'disabled';
    ELSIF inv.revoked_at IS NOT NULL THEN
        status := 'revoked';
    ELSIF inv.expires_at <= now() THEN
        status := 'expired';
    ELSIF inv.not_before > now() THEN
        status := 'not_yet';
    ELSIF inv.lockout_attempts > 0 AND inv.failed_attempts >= inv.lockout_attempts THEN
        status := 'locked';
    ELSIF lower(inv.email COLLATE "C") <> v_email THEN
        status := 'email_mismatch';
    ELSE
        status := 'ok';
        -- a device that redeemed the link rejoins (the look-up only with a
        -- device: a condition with a sub-select is no simple expression)
        IF p_device_id IS NOT NULL THEN
            IF EXISTS (SELECT 1 FROM invitetomedia.redemptions r
                        WHERE r.invite_id = inv.invite_id AND r.device_id = p_device_id
                          AND r.status IN ('ok', 'rejoin')) THEN
                status := 'rejoin';
            END IF;
        END IF;
        IF status = 'ok' AND inv.max_uses <> -1 AND inv.use_count >= inv.max_uses THEN
            status := 'exhausted';
        END IF;
    END IF;

    IF status = 'ok' THEN
        -- the row is locked: the new count is the one read plus one
        UPDATE invitetomedia.invites i
           SET use_count = i.use_count + 1,
               used_up_at = CASE WHEN i.max_uses <> -1 AND i.use_count + 1 >= i.max_uses
                                 THEN now() END,
               last_used_at = now()
         WHERE i.invite_id = inv.invite_id;
        inv.use_count := inv.use_count + 1;
    ELSIF status = 'email_mismatch' THEN
        UPDATE invitetomedia.invites i SET failed_attempts = i.failed_attempts + 1
         WHERE i.invite_id = inv.invite_id;
    END IF;

    IF status IN ('ok', 'rejoin') THEN
        SELECT u.user_id INTO v_user FROM invitetomedia.users u WHERE lower(u.email COLLATE "C") = v_email;
        IF NOT FOUND AND status = 'ok' THEN
            INSERT INTO invitetomedia.users (user_id, email, first_name, last_name, role)
            VALUES (v_email, inv.email, inv.first_name, inv.last_name, 'anonymous')
            ON CONFLICT DO NOTHING
            RETURNING users.user_id INTO v_user;
            IF v_user IS NULL THEN
                SELECT u.user_id INTO STRICT v_user FROM invitetomedia.users u
                 WHERE lower(u.email COLLATE "C") = v_email;
            END IF;
        END IF;
        invite_id := inv.invite_id;
        media_id := inv.media_id;
        role := inv.role;
        user_id := v_user;
        first_name := inv.first_name;
        last_name := inv.last_name;
        uses_left := CASE WHEN inv.max_uses = -1 THEN NULL ELSE inv.max_uses - inv.use_count END;
        expires_at := inv.expires_at;
    END IF;

    INSERT INTO invitetomedia.redemptions (invite_id, status, device_id, user_id)
    VALUES (inv.invite_id, status, p_device_id, v_user);
    IF status = 'ok' THEN
        PERFORM pg_notify('invitetomedia_accepted', '{"kind":"invite","id":' || inv.invite_id || '}');
    END IF;
    RETURN NEXT;
END
$$;

CREATE FUNCTION bench.plpgsql_invite_check(p_token text)
RETURNS TABLE(status text, media_id text, media_title text, role text,
              expires_at timestamptz, uses_left integer, opens_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inv       record;
    v_hash    bytea;
    v_enabled boolean;
BEGIN
    status := 'not_found';
    IF p_token IS NULL OR length(p_token) <> 52 OR left(p_token, 4) <> 'itm_' THEN
        RETURN NEXT;
        RETURN;
    END IF;
    v_hash := public.digest(p_token, 'sha256');
    SELECT i.media_id, m.title, i.role, i.expires_at, i.max_uses, i.use_count, i.revoked_at,
           i.not_before, i.failed_attempts, s.enabled, s.lockout_attempts
      INTO inv
      FROM invitetomedia.invites i
     CROSS JOIN invitetomedia.settings s
      LEFT JOIN invitetomedia.media m ON m.media_id = i.media_id
     WHERE i.token_hash = v_hash;
    IF NOT FOUND THEN
        SELECT s.enabled INTO v_enabled
          FROM invitetomedia.retired_tokens r, invitetomedia.settings s
         WHERE r.token_hash = v_hash;
        IF FOUND THEN
            status := CASE WHEN v_enabled THEN 'revoked' ELSE 'disabled' END;
        END IF;
        RETURN NEXT;
        RETURN;
    END IF;
    IF NOT inv.enabled THEN
        status := 'disabled';
    ELSIF inv.revoked_at IS NOT NULL THEN
        status := 'revoked';
    ELSIF inv.expires_at <= now() THEN
        status := 'expired';
    ELSIF inv.not_before > now() THEN
        status := 'not_yet';
    ELSIF inv.lockout_attempts > 0 AND inv.failed_attempts >= inv.lockout_attempts THEN
        status := 'locked';
    ELSIF inv.max_uses <> -1 AND inv.use_count >= inv.max_uses THEN
        status := 'exhausted';
    ELSE
        status := 'ok';
    END IF;
    IF status IN ('ok', 'not_yet') THEN
        media_id := inv.media_id;
        media_title := inv.title;
        role := inv.role;
        expires_at := inv.expires_at;
        uses_left := CASE WHEN inv.max_uses = -1 THEN NULL ELSE inv.max_uses - inv.use_count END;
        opens_at := inv.not_before;
    END IF;
    RETURN NEXT;
END
$$;

CREATE FUNCTION bench.plpgsql_invite_create(
    p_media_id text, p_inviter_id text, p_email text, p_first_name text, p_last_name text,
    p_role text DEFAULT 'viewer', p_send_email boolean DEFAULT false)
RETURNS TABLE(invite_id bigint, token text, url text, expires_at timestamptz, max_uses integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s         invitetomedia.settings;
    m         invitetomedia.media;
    inviter   invitetomedia.users;
    tpl       invitetomedia.email_templates;
    v_email   text := btrim(p_email);
    v_first   text := btrim(p_first_name);
    v_last    text := btrim(p_last_name);
    v_token   text;
    v_expires text;
    v_subject text;
    v_body    text;
    v_message bigint;
BEGIN
    IF p_media_id IS NULL OR p_inviter_id IS NULL OR p_email IS NULL OR p_first_name IS NULL
       OR p_last_name IS NULL OR p_role IS NULL OR p_send_email IS NULL THEN
        RAISE EXCEPTION 'arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_email !~ '^[A-Za-z0-9.!#$%&''*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$'
       OR length(v_email) > 254 THEN
        RAISE EXCEPTION 'invalid email address "%"', left(p_email, 100) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_first = '' OR v_last = '' OR length(v_first) > 100 OR length(v_last) > 100
       OR v_first ~ '[\x01-\x1f\x7f]' OR v_last ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'invalid name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_role NOT IN ('viewer', 'moderator', 'speaker') THEN
        RAISE EXCEPTION 'invalid role "%"', left(p_role, 64) USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO s FROM invitetomedia.settings;
    IF NOT s.enabled THEN
        RAISE EXCEPTION 'invitetomedia is disabled' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO m FROM invitetomedia.media WHERE media.media_id = p_media_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'media "%" does not exist', p_media_id USING ERRCODE = 'undefined_object';
    END IF;
    SELECT * INTO inviter FROM invitetomedia.users u WHERE u.user_id = p_inviter_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" does not exist', p_inviter_id USING ERRCODE = 'undefined_object';
    END IF;
    IF p_role <> 'viewer' AND m.media_type NOT IN ('webcast', 'simulive', 'diy_live', 'room') THEN
        RAISE EXCEPTION 'role "%" is not allowed for media of type "%"', p_role, m.media_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT invitetomedia.may_invite(p_inviter_id, p_media_id) THEN
        RAISE EXCEPTION 'user "%" may not invite to media "%"', p_inviter_id, p_media_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT invitetomedia.domain_allowed(v_email) THEN
        RAISE EXCEPTION 'the domain of "%" is restricted for new users', v_email
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_send_email THEN
        SELECT * INTO tpl FROM invitetomedia.email_templates t WHERE t.name = s.invite_email_template;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'invites by email are disabled' USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;

    v_token := 'itm_' || translate(encode(public.gen_random_bytes(36), 'base64'), '+/', '-_');
    INSERT INTO invitetomedia.invites AS i
           (token_hash, media_id, role, email, first_name, last_name, invited_by, expires_at, max_uses)
    VALUES (public.digest(v_token, 'sha256'), p_media_id, p_role, v_email, v_first, v_last,
            p_inviter_id, now() + make_interval(mins => s.link_duration), s.link_reusability)
    RETURNING i.invite_id, i.expires_at INTO invite_id, expires_at;
    token := v_token;
    url := s.link_base_url || v_token;
    max_uses := s.link_reusability;

    IF p_send_email THEN
        v_expires := to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"');
        v_subject := replace(replace(replace(replace(replace(replace(replace(replace(tpl.subject,
            '{URL}', url), '{FIRST_NAME}', v_first), '{LAST_NAME}', v_last), '{EMAIL}', v_email),
            '{MEDIA_TITLE}', coalesce(m.title, '')), '{ROLE}', p_role), '{EXPIRES_AT}', v_expires),
            '{INVITER_NAME}', concat_ws(' ', inviter.first_name, inviter.last_name));
        v_body := replace(replace(replace(replace(replace(replace(replace(replace(tpl.body,
            '{URL}', url), '{FIRST_NAME}', v_first), '{LAST_NAME}', v_last), '{EMAIL}', v_email),
            '{MEDIA_TITLE}', coalesce(m.title, '')), '{ROLE}', p_role), '{EXPIRES_AT}', v_expires),
            '{INVITER_NAME}', concat_ws(' ', inviter.first_name, inviter.last_name));
        INSERT INTO invitetomedia.outbox (invite_id, to_email, to_name, subject, body)
        VALUES (invite_id, v_email, v_first || ' ' || v_last, v_subject, v_body)
        RETURNING message_id INTO v_message;
        PERFORM pg_notify('invitetomedia_email', v_message::text);
    END IF;
    RETURN NEXT;
END
$$;
