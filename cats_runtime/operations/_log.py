"""The captured log of a run (stdout, stderr, log records, tracebacks), found from a BOM or an Invoice."""

from __future__ import annotations

from collections.abc import Iterator

from ..cas import CID, _unixfs
from ..errors import NotFoundError, RecordError
from ..records import BOMRecord, InvoiceRecord, VerificationRecord
from ._node import Node

__all__ = ["invoice_of", "read_log"]


def invoice_of(node: Node, cid: CID) -> tuple[CID, InvoiceRecord]:
    """The Invoice behind a BOM, an Invoice or a Verification (its re-execution)."""
    record = node.load(cid)
    if isinstance(record, (BOMRecord, VerificationRecord)):
        cid, record = record.invoice, node.load(record.invoice)
    if not isinstance(record, InvoiceRecord):
        raise RecordError(f"expected a BOM, Invoice or Verification CID, found a {record.TYPE} record: {cid}")
    return cid, record


def read_log(node: Node, cid: CID) -> Iterator[bytes]:
    """The log bytes of the run ``cid`` points at (a BOM, Invoice or Verification), verified as read."""
    invoice_cid, invoice = invoice_of(node, cid)
    if invoice.log is None:
        raise NotFoundError(f"invoice {invoice_cid} has no log")
    return _unixfs.cat(node.store, invoice.log)
