-- Named queries about the web dashboard's sessions and login attempts; the writes call
-- stored functions (85_web_sessions.sql). Tokens arrive hashed (SHA-256).

-- name: web_session_start
SELECT * FROM scitq.web_session_start_v1(
    %(token_hash)s, %(name)s, %(attempt_id)s, %(address)s, %(now)s
);

-- name: web_session_touch
-- The user of a live session (no row: log in again); ends it if idle or too old.
SELECT * FROM scitq.web_session_touch_v1(
    %(token_hash)s, %(idle_seconds)s, %(max_seconds)s, %(now)s
);

-- name: web_session_end
SELECT scitq.web_session_end_v1(%(token_hash)s, %(reason)s, %(now)s) AS ended;

-- name: web_session_end_user
SELECT scitq.web_session_end_user_v1(%(name)s, %(reason)s, %(now)s) AS ended;

-- name: web_session_list
-- The live sessions (not ended), newest first; a session past its idle or absolute
-- lifetime is ended at its next use, so it may still show here.
SELECT u.name, s.address, s.created_at, s.last_seen_at
FROM scitq.web_session s
JOIN scitq.web_user u ON u.id = s.user_id
WHERE s.ended_at IS NULL
  AND (%(name)s::text IS NULL OR u.name = %(name)s::text)
ORDER BY s.created_at DESC;

-- name: web_login_attempt
SELECT * FROM scitq.web_login_attempt_v1(
    %(name)s, %(address)s, %(free)s, %(lockout)s, %(window_seconds)s, %(now)s
);
