-- Sessions of the web dashboard, kept on the server so that they can be ended, and the
-- login attempts that throttle password guessing (docs/web.md, section 7). The browser's
-- cookie carries a random token; these functions see only its SHA-256 (p_token_hash).
-- Executed by scitq_admin only (90_roles.sql), like the functions of 80_web_users.sql.

-- Open a session for a user whose password the caller has checked; the attempt that
-- was recorded before the check (web_login_attempt_v1) becomes a success. Returns the
-- user's name and role.
CREATE OR REPLACE FUNCTION scitq.web_session_start_v1(
    p_token_hash bytea,
    p_name text,
    p_attempt_id bigint,
    p_address text,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (name text, role text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_user scitq.web_user%ROWTYPE;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_token_hash IS NULL OR octet_length(p_token_hash) <> 32 THEN
        RAISE EXCEPTION 'a session token hash is 32 bytes (SHA-256)' USING ERRCODE = 'SQ004';
    END IF;
    SELECT * INTO v_user FROM scitq.web_user u WHERE u.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % does not exist', quote_literal(coalesce(p_name, 'NULL'))
            USING ERRCODE = 'SQ003';
    END IF;
    UPDATE scitq.web_login_attempt a
    SET outcome = 'succeeded'
    WHERE a.id = p_attempt_id
      AND a.user_name = p_name;
    UPDATE scitq.web_user u SET last_login_at = p_now WHERE u.id = v_user.id;
    -- this user's sessions ended or unused for 30 days are of no use any more
    DELETE FROM scitq.web_session s
    WHERE s.user_id = v_user.id
      AND coalesce(s.ended_at, s.last_seen_at) < p_now - interval '30 days';
    INSERT INTO scitq.web_session (id, user_id, address, created_at, last_seen_at)
    VALUES (p_token_hash, v_user.id, left(p_address, 100), p_now, p_now);
    RETURN QUERY SELECT v_user.name, v_user.role;
END;
$$;

-- The user of a live session, for each request; nothing when the session is unknown,
-- ended, idle for p_idle_seconds or older than p_max_seconds (the last two are ended
-- here, with that reason). last_seen_at is written at most once a minute, so that the
-- dashboard's polling costs a read, not a write, per request.
CREATE OR REPLACE FUNCTION scitq.web_session_touch_v1(
    p_token_hash bytea,
    p_idle_seconds integer,
    p_max_seconds integer,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (name text, role text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_created timestamptz;
    v_seen timestamptz;
    v_name text;
    v_role text;
    v_reason text;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    SELECT s.created_at, s.last_seen_at, u.name, u.role
    INTO v_created, v_seen, v_name, v_role
    FROM scitq.web_session s
    JOIN scitq.web_user u ON u.id = s.user_id
    WHERE s.id = p_token_hash
      AND s.ended_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_created <= p_now - make_interval(secs => p_max_seconds) THEN
        v_reason := 'expired';
    ELSIF v_seen <= p_now - make_interval(secs => p_idle_seconds) THEN
        v_reason := 'idle';
    END IF;
    IF v_reason IS NOT NULL THEN
        UPDATE scitq.web_session s
        SET ended_at = p_now, end_reason = v_reason
        WHERE s.id = p_token_hash
          AND s.ended_at IS NULL;
        RETURN;
    END IF;
    IF v_seen < p_now - interval '1 minute' THEN
        UPDATE scitq.web_session s
        SET last_seen_at = p_now
        WHERE s.id = p_token_hash
          AND s.ended_at IS NULL;
    END IF;
    RETURN QUERY SELECT v_name, v_role;
END;
$$;

-- End one session (logout). Returns whether a live one was ended.
CREATE OR REPLACE FUNCTION scitq.web_session_end_v1(
    p_token_hash bytea,
    p_reason text DEFAULT 'logout',
    p_now timestamptz DEFAULT now()
)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    UPDATE scitq.web_session s
    SET ended_at = p_now, end_reason = p_reason
    WHERE s.id = p_token_hash
      AND s.ended_at IS NULL;
    RETURN FOUND;
END;
$$;

-- End every live session of a user (an admin's "log them out everywhere"; also what a
-- new password or role does, in web_user_set_v1). Returns how many were ended.
CREATE OR REPLACE FUNCTION scitq.web_session_end_user_v1(
    p_name text,
    p_reason text DEFAULT 'admin',
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_user_id bigint;
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    SELECT u.id INTO v_user_id FROM scitq.web_user u WHERE u.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % does not exist', quote_literal(coalesce(p_name, 'NULL'))
            USING ERRCODE = 'SQ003';
    END IF;
    UPDATE scitq.web_session s
    SET ended_at = p_now, end_reason = p_reason
    WHERE s.user_id = v_user_id
      AND s.ended_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Decide whether a password login may be tried now, and record the attempt (before the
-- password is checked, as failed: web_session_start_v1 turns it into a success), so that
-- concurrent guesses count. Two keys are throttled, the user name typed (its attempts
-- since its last success) and the client address (whatever the name): with n failed or
-- refused attempts in the last p_window_seconds, the first p_free are free, the next
-- ones must each wait 2^(n - p_free) seconds (at most the window) after the previous
-- attempt, and from p_lockout on every attempt is refused until the window has passed
-- since the last one. A refused attempt is recorded as throttled, and counts.
CREATE OR REPLACE FUNCTION scitq.web_login_attempt_v1(
    p_name text,
    p_address text,
    p_free integer,
    p_lockout integer,
    p_window_seconds integer,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (attempt_id bigint, allowed boolean, retry_after double precision, reason text,
               user_failures integer, address_failures integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_name text := left(coalesce(p_name, ''), 200);
    v_address text := left(coalesce(p_address, ''), 100);
    v_window interval := make_interval(secs => p_window_seconds);
    v_since_success timestamptz;
    v_count integer;
    v_last timestamptz;
    v_wait double precision;
    v_retry double precision := 0;
    v_reason text;
    v_key text;
    v_id bigint;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- one decision at a time per name, then per address (always in this order: no
    -- deadlock); the two-key form keeps names and addresses apart
    PERFORM pg_advisory_xact_lock(hashtext('scitq.web_login.user'), hashtext(v_name));
    PERFORM pg_advisory_xact_lock(hashtext('scitq.web_login.address'), hashtext(v_address));
    SELECT max(a.at) INTO v_since_success
    FROM scitq.web_login_attempt a
    WHERE a.user_name = v_name
      AND a.outcome = 'succeeded'
      AND a.at > p_now - v_window;
    FOR v_key, v_count, v_last IN
        SELECT 'user', count(*)::integer, max(a.at)
        FROM scitq.web_login_attempt a
        WHERE a.user_name = v_name
          AND a.outcome <> 'succeeded'
          AND a.at > greatest(p_now - v_window, v_since_success)
        UNION ALL
        SELECT 'address', count(*)::integer, max(a.at)
        FROM scitq.web_login_attempt a
        WHERE a.address = v_address
          AND a.outcome <> 'succeeded'
          AND a.at > p_now - v_window
    LOOP
        IF v_key = 'user' THEN
            user_failures := v_count;
        ELSE
            address_failures := v_count;
        END IF;
        IF v_count >= p_lockout THEN
            v_wait := extract(epoch FROM v_last + v_window - p_now);
            v_reason := 'lockout';
        ELSIF v_count >= p_free THEN
            v_wait := extract(epoch FROM v_last - p_now)
                + least(power(2, v_count - p_free), p_window_seconds);
            IF v_wait > 0 AND v_reason IS NULL THEN
                v_reason := 'backoff';
            END IF;
        ELSE
            v_wait := 0;
        END IF;
        v_retry := greatest(v_retry, v_wait);
    END LOOP;
    IF v_retry <= 0 THEN
        v_reason := NULL;
    END IF;
    -- attempts are kept a week at least, for whoever investigates
    DELETE FROM scitq.web_login_attempt a
    WHERE a.at < p_now - greatest(interval '7 days', 2 * v_window);
    INSERT INTO scitq.web_login_attempt (at, user_name, address, outcome)
    VALUES (p_now, v_name, v_address, CASE WHEN v_reason IS NULL THEN 'failed' ELSE 'throttled' END)
    RETURNING id INTO v_id;
    attempt_id := v_id;
    allowed := v_reason IS NULL;
    retry_after := CASE WHEN v_reason IS NULL THEN 0 ELSE ceil(v_retry) END;
    reason := v_reason;
    RETURN NEXT;
END;
$$;
