"""The CATs record types (Function, Structure, Order, Invoice, BOM, Verification, Environment).

Each is a frozen, keyword-only dataclass with ``TYPE = "cats/<kind>@1"``; ``docs/records.md``
explains every field. Field rules live in each class's ``FIELDS`` table (checked both when a
record is built and when one is decoded) and in its ``_check`` method (rules across fields).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from typing import Any, ClassVar, Final, Literal, get_args

from ..cas import CID, DAG_CBOR, DAG_PB, _dagcbor
from ..errors import DecodeError, RecordError
from ._base import (
    Bool,
    Bytes,
    Checked,
    Choice,
    FieldError,
    Int,
    Json,
    Kind,
    Link,
    Map,
    Optional,
    Params,
    Record,
    Seq,
    Struct,
    Text,
    record,
)

__all__ = [
    "RECORD_TYPES",
    "BOMRecord",
    "Cloud",
    "DatumResult",
    "Distribution",
    "EnvironmentRecord",
    "FunctionRecord",
    "InputImport",
    "InvoiceRecord",
    "Mode",
    "OrderRecord",
    "ParamDecl",
    "ParamType",
    "Status",
    "StructureRecord",
    "Verdict",
    "VerificationRecord",
    "decode_record",
    "json_type_matches",
    "json_type_of",
    "record_from_obj",
]

Mode = Literal["batch", "map"]
"""How a Function runs: once over all inputs (``batch``) or once per datum (``map``)."""
Cloud = Literal["local", "aws", "gcp", "azure", "existing"]
"""Where a Structure provisions its Plant."""
Status = Literal["succeeded", "failed"]
"""Outcome of a run or of one datum."""
Verdict = Literal["match", "mismatch", "error"]
"""Outcome of a re-execution."""
ParamType = Literal["string", "integer", "number", "boolean", "array", "object", "any"]
"""The JSON type a declared parameter takes (``any``: not checked)."""

# -- shared field kinds --------------------------------------------------------------------

_RECORD_LINK: Final = Link(DAG_CBOR)  # records link records, which are always dag-cbor
_UNIXFS_DIR: Final = Link(DAG_PB, what="a CID link to a UnixFS directory (dag-pb)")
_ANY_LINK: Final = Link()
_INPUT_NAME: Final = Text(
    "an input name of letters, digits, '_', '-', '.' (not starting with '.' or '-', at most 128)",
    pattern=r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
)
_ENTRYPOINT: Final = Text(
    "an entrypoint 'module:callable' (dotted module path, Python identifiers)",
    pattern=r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*",
)
_PYTHON: Final = Text("a Python version 'major.minor' such as '3.11'", pattern=r"[0-9]{1,3}\.[0-9]{1,3}")
_IMAGE: Final = Text("an image digest 'sha256:<64 lowercase hex>'", pattern=r"sha256:[0-9a-f]{64}")
_DID_KEY: Final = Text("a did:key identifier 'did:key:z...'", pattern=r"did:key:z[1-9A-HJ-NP-Za-km-z]{1,200}")
_NAME: Final = Text("a non-empty name without control characters", pattern=r"[^\x00-\x1f\x7f]+")
_PATTERN: Final = Text("a non-empty pattern", pattern=r"[^\x00]+")
_TEXT: Final = Text("a string")
_MILLIS: Final = Int(0, 2**63 - 1, "milliseconds since the Unix epoch, in [0, 2**63 - 1]")


class _DatumName(Text):
    """A datum's path inside its input: relative, '/'-separated, no '.', '..' or empty parts."""

    def __init__(self) -> None:
        super().__init__("a relative path inside the input ('/'-separated, no '.', '..' or empty parts)")

    def check(self, value: Any, path: str, wire: bool) -> str:
        text = super().check(value, path, wire)
        parts = text.split("/")
        if any(p in ("", ".", "..") or "\x00" in p or "\\" in p for p in parts):
            raise FieldError(path, f"expected {self.what}, found {text!r}")
        return text


def json_type_of(value: Any) -> str:
    """The JSON type name of a JSON value (``integer`` for ints, ``number`` for floats)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def json_type_matches(declared: str, value: Any) -> bool:
    """Whether ``value`` is of the declared :data:`ParamType` (an integer is also a ``number``)."""
    found = json_type_of(value)
    return declared == "any" or found == declared or (declared == "number" and found == "integer")


_PARAM_NAME: Final = Text(
    "a parameter name of letters, digits, '_', '-' (not starting with '-', at most 128)",
    pattern=r"[A-Za-z_][A-Za-z0-9_-]{0,127}",
)


@record
class ParamDecl(Checked):
    """One declared parameter of a Function (a nested map of the Function record, no ``type``).

    Attributes:
        type: The JSON type of its value (:data:`ParamType`).
        default: The value used when the Order does not set it; None when it must be set
            (null is never a valid parameter default).
        description: What it means, for people (``cats run --help`` of the code, the node page).
    """

    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "type": Choice(get_args(ParamType)),
        "default": Json(),
        "description": Optional(_TEXT),
    }

    type: ParamType
    default: Any = None
    description: str | None = None

    def _check(self) -> None:
        if self.default is not None and not json_type_matches(self.type, self.default):
            raise FieldError(
                "default", f"expected a default of type {self.type}, found {json_type_of(self.default)}"
            )


# -- records -------------------------------------------------------------------------------


@record
class FunctionRecord(Record):
    """Transformer code and what it needs to run: the ``cats/function@1`` record.

    Attributes:
        name: Human-readable name (defaults to the callable's name); not used to run anything.
        code: The code directory, hashed as a UnixFS directory (dag-pb).
        entrypoint: ``"module:callable"`` inside ``code``.
        mode: ``"batch"`` (one call with every input) or ``"map"`` (one call per datum).
        python: The ``major.minor`` Python version the code was hashed for.
        requirements: The pinned requirements file, or None.
        image: A container image digest ``"sha256:<64 hex>"``, or None.
        ignore: Exclude patterns applied when hashing ``code`` (a set: stored sorted, unique).
        environment: The EnvironmentRecord the code runs in (its pinned distributions), or None
            when it needs only the standard library.
        params: The parameters the code declares (name -> :class:`ParamDecl`), or None when it
            declares none (then any params are passed through unchecked).
        network: Whether the code needs the network; without it the task's sandbox has none.
            Part of the Function CID, so a node's allow-list names it too.
    """

    TYPE: ClassVar[str] = "cats/function@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "name": _NAME,
        "code": _UNIXFS_DIR,
        "entrypoint": _ENTRYPOINT,
        "mode": Choice(get_args(Mode)),
        "python": _PYTHON,
        "requirements": Optional(_ANY_LINK),
        "image": Optional(_IMAGE),
        "ignore": Seq(_PATTERN, as_set=True),
        "environment": Optional(_RECORD_LINK),
        "params": Optional(Map(_PARAM_NAME, Struct(ParamDecl))),
        "network": Bool(),
    }

    name: str
    code: CID
    entrypoint: str
    mode: Mode
    python: str
    requirements: CID | None = None
    image: str | None = None
    ignore: Sequence[str] = ()
    environment: CID | None = None
    params: Mapping[str, ParamDecl] | None = None
    network: bool = False


@record
class StructureRecord(Record):
    """The infrastructure a run needs: the ``cats/structure@2`` record.

    Attributes:
        cloud: Where the Plant runs; ``"local"`` is the embedded Ray and blockstore.
        stack: The Pulumi stack name (``"local"`` for the local structure).
        program: The sanitized Pulumi program as a UnixFS directory; None exactly when local.
        environment: The EnvironmentRecord of the program's own Python dependencies (pulumi, the
            provider SDKs), resolved from the program's hashed ``requirements.lock``; None
            exactly when local.
        outputs: Names of the stack outputs the run uses (a set: stored sorted, unique).
    """

    TYPE: ClassVar[str] = "cats/structure@2"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "cloud": Choice(get_args(Cloud)),
        "stack": Text("a Pulumi stack name", pattern=r"[A-Za-z0-9_.\-/]{1,200}"),
        "program": Optional(_UNIXFS_DIR),
        "environment": Optional(_RECORD_LINK),
        "outputs": Seq(_NAME, as_set=True),
    }

    cloud: Cloud
    stack: str
    program: CID | None = None
    environment: CID | None = None
    outputs: Sequence[str] = ()

    def _check(self) -> None:
        self._check_program()
        if self.cloud == "local" and self.environment is not None:
            raise FieldError("environment", "expected null for the local cloud (no program to run)")
        if self.cloud != "local" and self.environment is None:
            raise FieldError(
                "environment",
                f"expected the Pulumi program's Environment CID for cloud {self.cloud!r}, found null",
            )

    def _check_program(self) -> None:
        if self.cloud == "local" and self.program is not None:
            raise FieldError("program", "expected null for the local cloud (nothing to provision)")
        if self.cloud != "local" and self.program is None:
            raise FieldError(
                "program", f"expected the Pulumi program's CID for cloud {self.cloud!r}, found null"
            )


class StructureRecordV1(StructureRecord):
    """A ``cats/structure@1`` record, read so that Structures written before ``@2`` keep their CIDs.

    The same fields as :class:`StructureRecord` but no ``environment`` (always None here): the
    program's dependencies were pinned only by the lock file inside ``program``. New Structures
    are written as ``@2``; redeploying a ``@1`` Structure checks the installed SDKs instead of
    building the program's Environment.
    """

    TYPE: ClassVar[str] = "cats/structure@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        name: kind for name, kind in StructureRecord.FIELDS.items() if name != "environment"
    }

    def _check(self) -> None:
        self._check_program()


@record
class InputImport(Checked):
    """How an Order's input was imported from a path, so the CID can be re-derived from the bytes.

    Every UnixFS setting that decides the CID (a named profile and its values, which stay
    meaningful even if the name is redefined later), plus whether hidden entries were included.
    """

    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "profile": _NAME,
        "cid_version": Int(0, 1),
        "raw_leaves": Bool(),
        "hash": Choice(("sha2-256",)),
        "chunker": Text("a chunker 'size-N'", pattern=r"size-[1-9][0-9]{0,7}"),
        "layout": Choice(("balanced",)),
        "max_links": Int(2, 1 << 20),
        "hamt_threshold": Int(0, 1 << 40),
        "hamt_strategy": Choice(("links-bytes", "block-bytes")),
        "hamt_fanout": Int(2, 1 << 16),
        "hidden": Bool(),
    }

    profile: str
    cid_version: int
    raw_leaves: bool
    hash: str
    chunker: str
    layout: str
    max_links: int
    hamt_threshold: int
    hamt_strategy: str
    hamt_fanout: int
    hidden: bool


@record
class OrderRecord(Record):
    """A request to run a Function on inputs: the ``cats/order@1`` record.

    Deterministic: the same work is the same Order, so its CID is a memoization key.

    Attributes:
        function: The FunctionRecord.
        structure: The StructureRecord to run on.
        inputs: Input name -> data CID (UnixFS file or directory, or raw block).
        params: Parameter name -> JSON value, passed to the function.
        seed: Seed for any randomness, in ``[0, 2**63)``.
        parents: BOMs whose outputs are among the inputs (a set: stored sorted by CID bytes, unique).
        imports: Input name -> the UnixFS settings it was imported with, for every input added
            from a path (inputs given as CIDs have none: the Order did not import them).
    """

    TYPE: ClassVar[str] = "cats/order@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "function": _RECORD_LINK,
        "structure": _RECORD_LINK,
        "inputs": Map(_INPUT_NAME, _ANY_LINK),
        "params": Params(),
        "seed": Int(0, 2**63 - 1),
        "parents": Seq(_RECORD_LINK, as_set=True),
        "imports": Map(_INPUT_NAME, Struct(InputImport)),
    }

    function: CID
    structure: CID
    inputs: Mapping[str, CID]
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    parents: Sequence[CID] = ()
    imports: Mapping[str, InputImport] = field(default_factory=dict)

    def _check(self) -> None:
        unknown = sorted(set(self.imports) - set(self.inputs))
        if unknown:
            raise FieldError("imports", f"expected names of inputs, found {unknown[0]!r}, which is no input")


@record
class DatumResult(Checked):
    """What happened to one datum of an Invoice (not a record of its own: no ``type``).

    Attributes:
        input: The input name the datum belongs to.
        name: The datum's path inside that input.
        cid: The datum's content.
        output: What the function produced for it, or None when it failed.
        status: ``"succeeded"`` or ``"failed"``.
        memoized: True when ``output`` was reused from an earlier run instead of computed.
        error: The error message when it failed, else None.
    """

    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "input": _INPUT_NAME,
        "name": _DatumName(),
        "cid": _ANY_LINK,
        "output": Optional(_ANY_LINK),
        "status": Choice(get_args(Status)),
        "memoized": Bool(),
        "error": Optional(_TEXT),
    }

    input: str
    name: str
    cid: CID
    output: CID | None
    status: Status
    memoized: bool = False
    error: str | None = None

    def _check(self) -> None:
        _check_outcome(self.status, self.output, self.error)


def _check_outcome(status: str, output: CID | None, error: str | None) -> None:
    # A success names its output and carries no error; a failure always says why. This is what
    # keeps a failed run from ever being mistaken for a successful one.
    if status == "succeeded":
        if output is None:
            raise FieldError("output", "expected a CID link when status is 'succeeded', found null")
        if error is not None:
            raise FieldError("error", "expected null when status is 'succeeded', found a message")
    elif error is None:
        raise FieldError("error", "expected a message when status is 'failed', found null")


@record
class InvoiceRecord(Record):
    """What happened when an Order ran: the ``cats/invoice@1`` record.

    Attributes:
        order: The OrderRecord that ran.
        status: ``"succeeded"`` or ``"failed"``.
        output: The output directory (or file), or None when failed.
        data: Per-datum results, in processing order.
        log: The run's log text as a UnixFS file, or None.
        executor: Facts about the executor (versions, node, cluster), string to string.
        started_ms: Start time, milliseconds since the epoch.
        finished_ms: End time (>= ``started_ms``).
        error: Why the run failed, or None when it succeeded.
    """

    TYPE: ClassVar[str] = "cats/invoice@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "order": _RECORD_LINK,
        "status": Choice(get_args(Status)),
        "output": Optional(_ANY_LINK),
        "data": Seq(Struct(DatumResult)),
        "log": Optional(_ANY_LINK),
        "executor": Map(Text("a non-empty fact name", nonempty=True), _TEXT),
        "started_ms": _MILLIS,
        "finished_ms": _MILLIS,
        "error": Optional(_TEXT),
    }

    order: CID
    status: Status
    output: CID | None = None
    data: Sequence[DatumResult] = ()
    log: CID | None = None
    executor: Mapping[str, str] = field(default_factory=dict)
    started_ms: int
    finished_ms: int
    error: str | None = None

    def _check(self) -> None:
        _check_outcome(self.status, self.output, self.error)
        if self.finished_ms < self.started_ms:
            raise FieldError(
                "finished_ms", f"expected a time >= started_ms {self.started_ms}, found {self.finished_ms}"
            )


@record
class BOMRecord(Record):
    """The bill of materials of one successful run: the ``cats/bom@1`` record.

    Its CID is the handle users pass around; every ingredient is one link away
    (``ipfs dag get <bom>/order/function``).

    Attributes:
        order: The OrderRecord.
        invoice: The InvoiceRecord of the successful run.
        function: The FunctionRecord (same as the Order's, repeated for direct access).
        structure: The StructureRecord (same as the Order's).
        inputs: Input name -> data CID (same as the Order's).
        output: The output the run produced.
        parents: Parent BOMs (a set: stored sorted by CID bytes, unique).
        issuer: The signer's ``did:key``, or None when unsigned.
        signature: Ed25519 signature (64 bytes) over :meth:`signing_payload`, or None.
    """

    TYPE: ClassVar[str] = "cats/bom@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "order": _RECORD_LINK,
        "invoice": _RECORD_LINK,
        "function": _RECORD_LINK,
        "structure": _RECORD_LINK,
        "inputs": Map(_INPUT_NAME, _ANY_LINK),
        "output": _ANY_LINK,
        "parents": Seq(_RECORD_LINK, as_set=True),
        "issuer": Optional(_DID_KEY),
        "signature": Optional(Bytes(64, "a 64-byte Ed25519 signature")),
    }

    order: CID
    invoice: CID
    function: CID
    structure: CID
    inputs: Mapping[str, CID]
    output: CID
    parents: Sequence[CID] = ()
    issuer: str | None = None
    signature: bytes | None = None

    def _check(self) -> None:
        if self.signature is not None and self.issuer is None:
            raise FieldError(
                "issuer", "expected the signer's did:key when a signature is present, found null"
            )

    def signing_payload(self) -> bytes:
        """The bytes the signature covers: this BOM's DAG-CBOR with ``signature`` set to null.

        ``issuer`` is part of the payload, so set it before signing (or use :meth:`signed`).
        """
        obj = self.to_obj()
        obj["signature"] = None
        return _dagcbor.encode(obj)

    def with_signature(self, issuer: str, signature: bytes) -> BOMRecord:
        """A copy carrying ``issuer`` and ``signature`` (not verified here)."""
        return dataclasses.replace(self, issuer=issuer, signature=signature)

    def signed(self, issuer: str, sign: Callable[[bytes], bytes]) -> BOMRecord:
        """A copy signed by ``sign`` (e.g. ``Ed25519PrivateKey.sign``) as ``issuer``."""
        unsigned = dataclasses.replace(self, issuer=issuer, signature=None)
        return unsigned.with_signature(issuer, sign(unsigned.signing_payload()))


@record
class VerificationRecord(Record):
    """The outcome of re-executing a BOM's Order: the ``cats/verification@1`` record.

    Attributes:
        bom: The BOM that was checked.
        invoice: The InvoiceRecord of the re-execution.
        verdict: ``"match"`` (same output CID), ``"mismatch"`` or ``"error"`` (no output).
        expected: The output the BOM claims.
        found: The output the re-execution produced, or None when it produced none.
        differences: Human-readable differences (e.g. per-file), in report order.
        structure: The StructureRecord the re-execution ran on (may differ from the BOM's).
    """

    TYPE: ClassVar[str] = "cats/verification@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "bom": _RECORD_LINK,
        "invoice": _RECORD_LINK,
        "verdict": Choice(get_args(Verdict)),
        "expected": _ANY_LINK,
        "found": Optional(_ANY_LINK),
        "differences": Seq(_TEXT),
        "structure": _RECORD_LINK,
    }

    bom: CID
    invoice: CID
    verdict: Verdict
    expected: CID
    found: CID | None = None
    differences: Sequence[str] = ()
    structure: CID

    def _check(self) -> None:
        if self.verdict == "match" and self.found != self.expected:
            raise FieldError(
                "found", f"expected {self.expected} (the verdict is 'match'), found {self.found}"
            )
        if self.verdict == "mismatch" and (self.found is None or self.found == self.expected):
            raise FieldError("found", "expected a CID different from 'expected' (the verdict is 'mismatch')")


# -- environments --------------------------------------------------------------------------

_DIST_NAME: Final = Text(
    "a normalized distribution name (lowercase letters, digits, single '-' between them)",
    pattern=r"[a-z0-9]+(?:-[a-z0-9]+)*",
)
_VERSION: Final = Text(
    "a version such as '1.26.4' (letters, digits, '.', '+', '!', '-', '_')",
    pattern=r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,127}",
)
_WHEEL: Final = Text(
    "a wheel file name '<name>-<version>-<python>-<abi>-<platform>.whl'",
    pattern=r"[A-Za-z0-9_.]+-[A-Za-z0-9_.+!]+(?:-[0-9][A-Za-z0-9_.]*)?-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl",
)
_SHA256: Final = Text("a sha256 digest (64 lowercase hex)", pattern=r"[0-9a-f]{64}")


@record
class Distribution(Checked):
    """One installed distribution of an Environment (not a record of its own: no ``type``).

    Attributes:
        name: The normalized distribution name (``canonicalize_name``).
        version: The exact version installed.
        filename: The wheel's file name (it carries the wheel's Python, ABI and platform tags).
        sha256: The wheel file's sha256, as a ``--hash=sha256:`` pin would state it.
        size: The wheel's size in bytes.
        wheel: The wheel file itself, as a UnixFS file.
    """

    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "name": _DIST_NAME,
        "version": _VERSION,
        "filename": _WHEEL,
        "sha256": _SHA256,
        "size": Int(0, 2**63 - 1, "a size in bytes, in [0, 2**63 - 1]"),
        "wheel": _ANY_LINK,
    }

    name: str
    version: str
    filename: str
    sha256: str
    size: int
    wheel: CID


@record
class EnvironmentRecord(Record):
    """The exact Python environment code runs in: the ``cats/environment@1`` record.

    Attributes:
        python: The interpreter's ``major.minor`` version.
        implementation: The interpreter implementation, lowercase (``"cpython"``).
        platform: The platform the wheels were resolved for (``sysconfig.get_platform()``,
            e.g. ``"linux-x86_64"``).
        distributions: Every distribution installed, sorted by name, one per name.
    """

    TYPE: ClassVar[str] = "cats/environment@1"
    FIELDS: ClassVar[Mapping[str, Kind]] = {
        "python": _PYTHON,
        "implementation": Text("an implementation name such as 'cpython'", pattern=r"[a-z][a-z0-9_]{0,31}"),
        "platform": Text("a platform such as 'linux-x86_64'", pattern=r"[A-Za-z0-9_.-]{1,64}"),
        "distributions": Seq(Struct(Distribution)),
    }

    python: str
    implementation: str
    platform: str
    distributions: Sequence[Distribution] = ()

    def _check(self) -> None:
        names = [d.name for d in self.distributions]
        for i in range(1, len(names)):
            if names[i] <= names[i - 1]:
                raise FieldError(
                    f"distributions[{i}].name",
                    f"expected names sorted and unique, found {names[i]!r} after {names[i - 1]!r}",
                )


# -- dispatch ------------------------------------------------------------------------------

RECORD_TYPES: Final[Mapping[str, type[Record]]] = {
    cls.TYPE: cls
    for cls in (
        FunctionRecord,
        StructureRecord,
        StructureRecordV1,
        OrderRecord,
        InvoiceRecord,
        BOMRecord,
        VerificationRecord,
        EnvironmentRecord,
    )
}
"""Every record class by its wire ``type``."""


def record_from_obj(obj: Any) -> Record:
    """Build whichever record ``obj`` (a decoded IPLD value) is, from its ``type`` field.

    Raises:
        RecordError: not a map, an unknown ``type`` or version, or an invalid field.
    """
    if type(obj) is not dict:
        raise RecordError(f"expected a CATs record (a map with a 'type'), found {type(obj).__name__}")
    kind = obj.get("type")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(RECORD_TYPES))
        if isinstance(kind, str) and kind.partition("@")[0] in {t.partition("@")[0] for t in RECORD_TYPES}:
            raise RecordError(f"unknown record version {kind!r}: this CATs reads {known}")
        if kind is None:
            raise RecordError(f"expected a CATs record with a 'type' field (one of {known}), found none")
        raise RecordError(f"expected a record type in {known}, found {kind!r}")
    return cls.from_obj(obj)


def decode_record(data: bytes) -> Record:
    """Decode a DAG-CBOR block as whichever CATs record its ``type`` says.

    Raises:
        RecordError: not canonical DAG-CBOR, or not a valid record (see :func:`record_from_obj`).
    """
    try:
        obj = _dagcbor.decode(data)
    except DecodeError as exc:
        raise RecordError(f"expected a CATs record: {exc}") from None
    return record_from_decoded(obj, data)


def record_from_decoded(obj: Any, data: bytes) -> Record:
    """The record whose block is ``data``, from ``obj``, what :func:`dagcbor.decode` made of it.

    For a caller that has already decoded the block (to look at its ``type`` first): the bytes
    are not decoded a second time. ``obj`` must come from strictly decoding ``data``, so ``data``
    are the record's own canonical bytes.

    Raises:
        RecordError: not a valid record (see :func:`record_from_obj`).
    """
    rec = record_from_obj(obj)
    rec.__dict__["encoded"] = bytes(data)  # strict decoding: these are the record's own bytes
    return rec
