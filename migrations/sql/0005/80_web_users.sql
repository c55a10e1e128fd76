-- Users of the web dashboard (docs/web.md). Passwords arrive already hashed (werkzeug's
-- scrypt, computed by the web process): the database never sees a clear password.
-- Executed by scitq_admin only (90_roles.sql grants every function to it and nothing
-- here to scitq_agent or scitq_reader).

-- Create a user, or change the password and role of an existing one: a new password or
-- role ends the user's sessions (web_session: they log in again). Returns the row
-- without the hash.
CREATE OR REPLACE FUNCTION scitq.web_user_set_v1(
    p_name text,
    p_password_hash text,
    p_role text,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (id bigint, name text, role text, created_at timestamptz, created boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_old scitq.web_user%ROWTYPE;
    v_ended text;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_name IS NULL OR p_name = '' OR p_name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid user name %: it must be non-empty, without control characters',
            quote_literal(coalesce(p_name, 'NULL'))
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_role IS NULL OR p_role NOT IN ('admin', 'viewer') THEN
        RAISE EXCEPTION 'invalid role %: use admin or viewer', quote_literal(coalesce(p_role, 'NULL'))
            USING ERRCODE = 'SQ004';
    END IF;
    -- a hash, never a password typed by mistake: werkzeug's "method:params$salt$hash"
    IF p_password_hash IS NULL OR p_password_hash !~ '^[a-z0-9]+(:[^$]*)?\$[^$]+\$[0-9a-f]+$' THEN
        RAISE EXCEPTION 'the password must be given hashed (werkzeug generate_password_hash)'
            USING ERRCODE = 'SQ004';
    END IF;
    SELECT * INTO v_old FROM scitq.web_user u WHERE u.name = p_name FOR UPDATE;
    IF FOUND THEN
        v_ended := CASE
            WHEN v_old.role <> p_role THEN 'role'
            WHEN v_old.password_hash <> p_password_hash THEN 'password'
        END;
        IF v_ended IS NOT NULL THEN
            UPDATE scitq.web_session s
            SET ended_at = p_now, end_reason = v_ended
            WHERE s.user_id = v_old.id
              AND s.ended_at IS NULL;
        END IF;
    END IF;
    RETURN QUERY
    INSERT INTO scitq.web_user AS u (name, password_hash, role, created_at)
    VALUES (p_name, p_password_hash, p_role, p_now)
    ON CONFLICT ON CONSTRAINT web_user_name_key
    DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role
    -- xmax is 0 for a row this statement inserted
    RETURNING u.id, u.name, u.role, u.created_at, (u.xmax = 0);
END;
$$;

-- Record a successful login (the password was checked by the caller against the hash).
CREATE OR REPLACE FUNCTION scitq.web_user_record_login_v1(
    p_name text,
    p_now timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    UPDATE scitq.web_user SET last_login_at = p_now WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % does not exist', quote_literal(coalesce(p_name, 'NULL'))
            USING ERRCODE = 'SQ003';
    END IF;
END;
$$;

-- Delete a user (and, by the foreign key, their sessions). Returns whether one was
-- deleted.
CREATE OR REPLACE FUNCTION scitq.web_user_delete_v1(p_name text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    DELETE FROM scitq.web_user WHERE name = p_name;
    RETURN FOUND;
END;
$$;
