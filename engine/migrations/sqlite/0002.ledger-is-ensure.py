"""The ledger's ``is_ensure`` column: a prerequisite a route ensured. Rows written before it
get the rule used until then: an ensured prerequisite's route is ``<route>.<name>`` (route names
are identifiers, so no other route holds a dot). State files made since the column existed
(before migrations were versioned) already have it: nothing to do there."""
from yoyo import step

__depends__ = {"0001.tables"}


def apply(db):
    columns = {row[1] for row in db.execute("PRAGMA table_info(ledger)")}
    if "is_ensure" not in columns:
        db.execute("ALTER TABLE ledger ADD COLUMN is_ensure INTEGER NOT NULL DEFAULT 0")
        db.execute("UPDATE ledger SET is_ensure = 1 WHERE instr(route, '.') > 0")


steps = [step(apply)]
