-- The tables as the first state files had them. CREATE ... IF NOT EXISTS: a state file made
-- before migrations were versioned already holds them (with the columns added since, which
-- the next migrations add only where they are missing).
CREATE TABLE IF NOT EXISTS ledger (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, route TEXT NOT NULL, key TEXT NOT NULL,
    connector TEXT NOT NULL, document TEXT NOT NULL, action TEXT NOT NULL,
    source_id TEXT NOT NULL, source_version TEXT,
    payload_hash TEXT NOT NULL, payload TEXT NOT NULL, params TEXT,
    state TEXT NOT NULL, target_ref TEXT, code TEXT, message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, flow, route, key));
CREATE INDEX IF NOT EXISTS ledger_source ON ledger (tenant, flow, source_id);
CREATE INDEX IF NOT EXISTS ledger_target ON ledger (tenant, connector, document, key);
CREATE INDEX IF NOT EXISTS ledger_ref ON ledger (tenant, connector, target_ref);
CREATE INDEX IF NOT EXISTS ledger_state ON ledger (tenant, flow, state);
CREATE TABLE IF NOT EXISTS ledger_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, flow TEXT NOT NULL,
    route TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
    detail TEXT);
CREATE INDEX IF NOT EXISTS ledger_events_doc ON ledger_events (tenant, flow, route, key);
CREATE TABLE IF NOT EXISTS cursors (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, value TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, flow));
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, flow TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL, summary TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, flow TEXT NOT NULL,
    source_id TEXT NOT NULL, route TEXT, key TEXT, reason TEXT NOT NULL,
    record TEXT, payload TEXT, created_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'open');
CREATE INDEX IF NOT EXISTS dead_letters_flow ON dead_letters (tenant, flow, status);
CREATE TABLE IF NOT EXISTS locks (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, owner TEXT, fence INTEGER NOT NULL,
    expires_at REAL NOT NULL, PRIMARY KEY (tenant, flow));
CREATE TABLE IF NOT EXISTS inbox (
    tenant TEXT NOT NULL, connector TEXT NOT NULL, resource TEXT NOT NULL,
    record_id TEXT NOT NULL, version TEXT NOT NULL, received_at REAL NOT NULL,
    handled_at REAL,
    PRIMARY KEY (tenant, connector, resource, record_id, version));
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (tenant, connector, resource, handled_at);
