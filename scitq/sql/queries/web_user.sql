-- Named queries about the web dashboard's users; the writes call stored functions.

-- name: web_user_get
-- One user with the password hash, for the login check and the role of each request.
SELECT u.id, u.name, u.password_hash, u.role, u.created_at, u.last_login_at
FROM scitq.web_user u
WHERE u.name = %(name)s;

-- name: web_user_list
SELECT u.id, u.name, u.role, u.created_at, u.last_login_at
FROM scitq.web_user u
ORDER BY u.name;

-- name: web_user_set
SELECT * FROM scitq.web_user_set_v1(%(name)s, %(password_hash)s, %(role)s);

-- name: web_user_record_login
SELECT scitq.web_user_record_login_v1(%(name)s);

-- name: web_user_delete
SELECT scitq.web_user_delete_v1(%(name)s) AS deleted;
