-- depends: 0002.status-access
-- One rate-limit bucket per (system, account) — a Haravan shop, a MISA company — shared by
-- every process on the store (engine/ratelimit_pg.py). The columns are the state of
-- hexaflow.http.RateLimiter: the calls in the bucket at `stamp`, draining at the caller's
-- leak rate; `blocked_until` is the latest Retry-After's end; `guessing` says the level is the
-- start-up guess (start_full) that the server's first count replaces. Times are the server's
-- clock (clock_timestamp()), seconds since the epoch. SQLite needs no such table: one process
-- owns an SQLite store, and its in-process bucket is the only one.
CREATE TABLE rate_limits (
    system TEXT NOT NULL,
    account TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    level DOUBLE PRECISION NOT NULL,
    stamp DOUBLE PRECISION NOT NULL,
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    guessing BOOLEAN NOT NULL,
    PRIMARY KEY (system, account));
