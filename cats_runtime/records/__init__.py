"""Records: the typed IPLD (DAG-CBOR) records of CATs, and the catalog that indexes them.

See ``docs/records.md`` for every record type and field.
"""

from __future__ import annotations

from ._base import Record
from ._catalog import CATALOG_FILE, Catalog, CatalogStats, RunRow, VerdictRow, memo_entries, memo_key
from ._records import (
    RECORD_TYPES,
    BOMRecord,
    Cloud,
    DatumResult,
    Distribution,
    EnvironmentRecord,
    FunctionRecord,
    InputImport,
    InvoiceRecord,
    Mode,
    OrderRecord,
    ParamDecl,
    ParamType,
    Status,
    StructureRecord,
    StructureRecordV1,
    Verdict,
    VerificationRecord,
    decode_record,
    json_type_matches,
    json_type_of,
    record_from_obj,
)

__all__ = [
    "CATALOG_FILE",
    "RECORD_TYPES",
    "BOMRecord",
    "Catalog",
    "CatalogStats",
    "Cloud",
    "DatumResult",
    "Distribution",
    "EnvironmentRecord",
    "InputImport",
    "FunctionRecord",
    "InvoiceRecord",
    "Mode",
    "OrderRecord",
    "ParamDecl",
    "ParamType",
    "Record",
    "RunRow",
    "Status",
    "StructureRecord",
    "StructureRecordV1",
    "Verdict",
    "VerdictRow",
    "VerificationRecord",
    "decode_record",
    "json_type_matches",
    "json_type_of",
    "memo_entries",
    "memo_key",
    "record_from_obj",
]
