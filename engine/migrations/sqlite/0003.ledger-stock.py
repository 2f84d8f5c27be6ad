"""The ledger's ``stock`` column: what a document will move in its target's stock once final
(docs/state.md, "Stock held by open documents"), and its partial index. Where the column is
missing, the documents that still hold stock get it from the payload they recorded, by their
connector's ``stock_moves``, so the stock of documents sent before the upgrade is held too."""
import json

from yoyo import step

__depends__ = {"0002.ledger-is-ensure"}


def apply(db):
    from hexaflow.registry import get_connector
    from hexaflow.state import HOLDING, stock_text

    columns = {row[1] for row in db.execute("PRAGMA table_info(ledger)")}
    if "stock" not in columns:
        db.execute("ALTER TABLE ledger ADD COLUMN stock TEXT")
        marks = ",".join("?" * len(HOLDING))
        rows = db.execute(f"SELECT tenant, flow, route, key, connector, document, action, "
                          f"payload FROM ledger WHERE state IN ({marks})", HOLDING).fetchall()
        for *ref, connector, document, action, payload in rows:
            cls = get_connector(connector)
            moves = cls.stock_moves(document, action, json.loads(payload)) if cls else []
            if moves:
                db.execute("UPDATE ledger SET stock=? WHERE tenant=? AND flow=? AND route=? "
                           "AND key=?", (stock_text(moves), *ref))
    # Only the rows that move stock are indexed: the pending-stock read stays small.
    db.execute("CREATE INDEX IF NOT EXISTS ledger_stock ON ledger (tenant, connector, state) "
               "WHERE stock IS NOT NULL")


steps = [step(apply)]
