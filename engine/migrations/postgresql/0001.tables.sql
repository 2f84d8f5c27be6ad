-- The state store's tables on PostgreSQL: the same tables, columns and keys as the SQLite
-- store's migrations 0001-0004 give (times are seconds since the epoch, as there).
CREATE TABLE ledger (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, route TEXT NOT NULL, key TEXT NOT NULL,
    connector TEXT NOT NULL, document TEXT NOT NULL, action TEXT NOT NULL,
    source_id TEXT NOT NULL, source_version TEXT,
    payload_hash TEXT NOT NULL, payload TEXT NOT NULL, params TEXT,
    state TEXT NOT NULL, target_ref TEXT, code TEXT, message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    is_ensure INTEGER NOT NULL DEFAULT 0,
    stock TEXT,
    PRIMARY KEY (tenant, flow, route, key));
CREATE INDEX ledger_source ON ledger (tenant, flow, source_id);
CREATE INDEX ledger_target ON ledger (tenant, connector, document, key);
CREATE INDEX ledger_ref ON ledger (tenant, connector, target_ref);
CREATE INDEX ledger_state ON ledger (tenant, flow, state);
CREATE INDEX ledger_stock ON ledger (tenant, connector, state) WHERE stock IS NOT NULL;
CREATE TABLE ledger_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant TEXT NOT NULL,
    flow TEXT NOT NULL, route TEXT NOT NULL, key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL, detail TEXT);
CREATE INDEX ledger_events_doc ON ledger_events (tenant, flow, route, key);
CREATE TABLE cursors (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, value TEXT, updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, flow));
CREATE TABLE runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant TEXT NOT NULL,
    flow TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION,
    status TEXT NOT NULL, summary TEXT);
CREATE TABLE dead_letters (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant TEXT NOT NULL,
    flow TEXT NOT NULL, source_id TEXT NOT NULL, route TEXT, key TEXT, reason TEXT NOT NULL,
    record TEXT, payload TEXT, created_at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL DEFAULT 'open');
CREATE INDEX dead_letters_flow ON dead_letters (tenant, flow, status);
-- One row per (tenant, flow): the fencing number (epoch) is incremented each time a run
-- takes the flow's advisory lock; the lock itself is the session's (docs/state.md, "Locks").
CREATE TABLE locks (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, owner TEXT, fence BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, flow));
CREATE TABLE inbox (
    tenant TEXT NOT NULL, connector TEXT NOT NULL, resource TEXT NOT NULL,
    record_id TEXT NOT NULL, version TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
    handled_at DOUBLE PRECISION,
    PRIMARY KEY (tenant, connector, resource, record_id, version));
CREATE INDEX inbox_pending ON inbox (tenant, connector, resource, handled_at);
CREATE TABLE key_templates (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, route TEXT NOT NULL, template TEXT NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, flow, route));
