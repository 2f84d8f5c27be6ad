-- depends: 0004.key-templates
-- The status page's sessions and login throttle, shared by every serve process on the store
-- (engine/statuspage_access.py). A session is kept by the SHA-256 of its id (the cookie's
-- value is never stored); a wrong guess by its SHA-256 (never the guess). Times are the
-- store's clock, seconds since the epoch.
CREATE TABLE status_sessions (
    id_hash TEXT NOT NULL PRIMARY KEY, csrf TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX status_sessions_created ON status_sessions (created_at);
-- scope 'client' (name: the client's address) or 'token' (name '': all clients together).
CREATE TABLE status_login_failures (
    scope TEXT NOT NULL, name TEXT NOT NULL, failures INTEGER NOT NULL,
    wait_until REAL NOT NULL, recent TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (scope, name));
CREATE INDEX status_login_failures_updated ON status_login_failures (scope, updated_at);
