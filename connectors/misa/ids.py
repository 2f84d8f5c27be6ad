"""Deterministic ``org_refid`` values.

``org_refid`` is MISA's idempotency key for a voucher request: re-sending the same id updates the
same request. It must therefore be derived, never random. The recipe is the engine's generic
``uuid5`` function, so a mapping writing ``<<uuid5(tenant, 'sales_voucher', order.id)>>`` gets
exactly what :func:`org_refid` returns:

    org_refid = str(uuid5(ID_NAMESPACE, f"{tenant}|{document_kind}|{source_id}"))
    ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://hexaflow.dev/ids")
                 = 1bf32068-4ee3-5dcd-98b1-27fb7c01d8ae   (hexaflow.functions; fixed forever)
"""
from __future__ import annotations

import uuid

from hexaflow.functions import ID_NAMESPACE


def org_refid(tenant: str, document_kind: str, source_id: object) -> str:
    """The org_refid of ``document_kind`` (e.g. ``sales_voucher``) for source record
    ``source_id`` of ``tenant``."""
    parts = (tenant, document_kind, source_id)
    if any(p is None or p == "" for p in parts):
        raise ValueError("org_refid: tenant, document kind and source id must all be given")
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(str(p) for p in parts)))
