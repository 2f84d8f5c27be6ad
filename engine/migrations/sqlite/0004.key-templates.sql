-- depends: 0003.ledger-stock
-- Each writing run's key identity per route (hexaflow.keychanges); state files of runs that
-- recorded one already have it.
CREATE TABLE IF NOT EXISTS key_templates (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, route TEXT NOT NULL, template TEXT NOT NULL,
    recorded_at REAL NOT NULL, PRIMARY KEY (tenant, flow, route));
