-- depends: 0001.tables
-- The status page's sessions and login throttle, shared by every serve process on the store
-- (engine/statuspage_access.py), as the SQLite store's migration 0005 makes them. A session
-- is kept by the SHA-256 of its id (the cookie's value is never stored); a wrong guess by its
-- SHA-256 (never the guess). Times are the store's clock, seconds since the epoch.
CREATE TABLE status_sessions (
    id_hash TEXT NOT NULL PRIMARY KEY, csrf TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL);
CREATE INDEX status_sessions_created ON status_sessions (created_at);
-- scope 'client' (name: the client's address) or 'token' (name '': all clients together).
CREATE TABLE status_login_failures (
    scope TEXT NOT NULL, name TEXT NOT NULL, failures INTEGER NOT NULL,
    wait_until DOUBLE PRECISION NOT NULL, recent TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, name));
CREATE INDEX status_login_failures_updated ON status_login_failures (scope, updated_at);
-- The status page's newest documents: SQLite walks its rowid order, PostgreSQL this index.
CREATE INDEX ledger_created ON ledger (tenant, created_at);
