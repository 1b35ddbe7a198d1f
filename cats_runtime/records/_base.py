"""The machinery every CATs record shares: field kinds, strict validation and the DAG-CBOR round trip.

A record class is a frozen, keyword-only dataclass plus a ``FIELDS`` table mapping each field
to a *kind* (a small validator). The same kinds check constructor arguments (``wire=False``:
any sequence or mapping is accepted, set-like lists are sorted for the caller) and decoded
blocks (``wire=True``: exactly the DAG-CBOR data model, set-like lists must already be sorted),
so a record that could not be decoded cannot be built either, and every record encodes to the
one canonical block its CID names.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, Self, TypeVar, cast, dataclass_transform

from ..cas import CID, CODEC_NAMES, DAG_CBOR, Block, _dagcbor
from ..errors import DecodeError, RecordError

__all__ = ["Record"]

_C = TypeVar("_C", bound="Checked")
_I64_MAX: Final = 2**63 - 1
_JSON_INT_MIN: Final = -(2**64)
_JSON_INT_MAX: Final = 2**64 - 1
_MAX_JSON_DEPTH: Final = 64


class FieldError(Exception):
    """Internal: a field's value is wrong; carries the dotted path to it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _found(value: Any) -> str:
    # How an unexpected value is described in messages: its IPLD kind, not Python internals.
    if value is None:
        return "null"
    if isinstance(value, CID):
        return f"a {value.codec_name} CID"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


# -- field kinds ----------------------------------------------------------------------------


class Kind:
    """A field validator. ``check`` returns the value as the record stores it."""

    what: str = "a value"

    def check(self, value: Any, path: str, wire: bool) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        """The value as it goes on the wire (DAG-CBOR data model)."""
        return value

    def fail(self, path: str, value: Any) -> FieldError:
        return FieldError(path, f"expected {self.what}, found {_found(value)}")


class Text(Kind):
    """A string, optionally non-empty and matching a pattern."""

    def __init__(self, what: str = "a string", *, pattern: str | None = None, nonempty: bool = False) -> None:
        self.what = what
        self.pattern = re.compile(pattern) if pattern else None
        self.nonempty = nonempty

    def check(self, value: Any, path: str, wire: bool) -> str:
        # Subclasses (e.g. StrEnum members) are accepted from Python callers and stored as str.
        if type(value) is not str and (wire or not isinstance(value, str)):
            raise self.fail(path, value)
        text = str(value)
        if self.nonempty and not text:
            raise FieldError(path, f"expected {self.what}, found an empty string")
        if self.pattern is not None and not self.pattern.fullmatch(text):
            raise FieldError(path, f"expected {self.what}, found {text!r}")
        return text


class Choice(Kind):
    """One string out of a closed set (the values of a ``typing.Literal``)."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        self.what = "one of " + ", ".join(repr(v) for v in values)

    def check(self, value: Any, path: str, wire: bool) -> str:
        if not isinstance(value, str) or value not in self.values:
            if isinstance(value, str):
                raise FieldError(path, f"expected {self.what}, found {value!r}")
            raise self.fail(path, value)
        return str(value)


class Int(Kind):
    """An integer (never a bool) in ``[lo, hi]``."""

    def __init__(self, lo: int = 0, hi: int = _I64_MAX, what: str | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.what = what or f"an integer in [{lo}, {hi}]"

    def check(self, value: Any, path: str, wire: bool) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or (wire and type(value) is not int):
            raise self.fail(path, value)
        if not self.lo <= value <= self.hi:
            raise FieldError(path, f"expected {self.what}, found {value}")
        return int(value)


class Bool(Kind):
    """``true`` or ``false``."""

    what = "a bool"

    def check(self, value: Any, path: str, wire: bool) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, value)
        return value


class Bytes(Kind):
    """A byte string, optionally of one exact length."""

    def __init__(self, size: int | None = None, what: str | None = None) -> None:
        self.size = size
        self.what = what or (f"{size} bytes" if size is not None else "bytes")

    def check(self, value: Any, path: str, wire: bool) -> bytes:
        if type(value) is not bytes:
            raise self.fail(path, value)
        if self.size is not None and len(value) != self.size:
            raise FieldError(path, f"expected {self.what}, found {len(value)} bytes")
        return value


class Link(Kind):
    """A CID link, optionally restricted to some codecs (records link records as dag-cbor)."""

    def __init__(self, *codecs: int, what: str | None = None) -> None:
        self.codecs = frozenset(codecs)
        if what is None:
            names = sorted(CODEC_NAMES.get(c, hex(c)) for c in codecs)
            what = f"a CID link to {' or '.join(names)}" if names else "a CID link"
        self.what = what

    def check(self, value: Any, path: str, wire: bool) -> CID:
        if not isinstance(value, CID):
            raise self.fail(path, value)
        if self.codecs and value.codec not in self.codecs:
            raise FieldError(path, f"expected {self.what}, found a {value.codec_name} CID {value}")
        return value


class Optional(Kind):
    """``null`` or a value of ``inner``; the field is present on the wire either way."""

    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        self.what = f"{inner.what} or null"

    def check(self, value: Any, path: str, wire: bool) -> Any:
        return None if value is None else self.inner.check(value, path, wire)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


class Seq(Kind):
    """A list of ``item`` values.

    With ``as_set`` the order carries no meaning, so the list must be sorted and unique on the
    wire (and is sorted and de-duplicated for Python callers): equal sets then hash alike.
    """

    def __init__(self, item: Kind, *, as_set: bool = False) -> None:
        self.item = item
        self.as_set = as_set
        self.what = f"a list (each item {item.what})"

    def check(self, value: Any, path: str, wire: bool) -> tuple[Any, ...]:
        if wire:
            if type(value) is not list:
                raise self.fail(path, value)
        elif isinstance(value, str | bytes | Mapping) or not (
            isinstance(value, Sequence) or (self.as_set and isinstance(value, set | frozenset))
        ):
            # A Python set has no stable order, so it is only accepted where order is irrelevant.
            raise self.fail(path, value)
        items = tuple(self.item.check(v, f"{path}[{i}]", wire) for i, v in enumerate(value))
        if not self.as_set or len(items) < 2:  # no order to check in fewer than two items
            return items
        ordered = tuple(sorted(set(items), key=_set_order))
        if wire and ordered != items:
            raise FieldError(path, "expected a sorted list without duplicates (it is a set)")
        return ordered

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]


def _set_order(value: Any) -> Any:
    # CIDs sort by their binary form (as CID.__lt__ does), strings by their UTF-8 bytes: the
    # orders a reader in any language can reproduce.
    if isinstance(value, CID):
        return value.buffer
    return value.encode("utf-8")


class Map(Kind):
    """A map with string keys checked by ``key`` and values checked by ``value``.

    Stored read-only (``MappingProxyType``) so a record cannot change after its CID is known.
    """

    def __init__(self, key: Text, value: Kind) -> None:
        self.key = key
        self.value = value
        self.what = f"a map of {key.what} to {value.what}"

    def check(self, value: Any, path: str, wire: bool) -> Mapping[str, Any]:
        if (wire and type(value) is not dict) or not isinstance(value, Mapping):
            raise self.fail(path, value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldError(
                    path, f"expected {self.key.what} as keys, found a {type(k).__name__} key {k!r}"
                )
            sub = f"{path}.{k}"
            self.key.check(k, sub, wire)
            out[str(k)] = self.value.check(v, sub, wire)
        return types.MappingProxyType(out)

    def dump(self, value: Any) -> Any:
        return {k: self.value.dump(v) for k, v in value.items()}


class Json(Kind):
    """A JSON-compatible value: null, bool, integer, finite float, string, list, string-keyed map.

    No bytes and no links (params are plain data), floats only when finite (DAG-CBOR has no
    NaN/Infinity). ``1`` and ``1.0`` are different values with different encodings.
    The value is deep-copied so the caller's later mutations cannot change the record.
    """

    what = "a JSON value (null, bool, integer, finite float, string, list or map)"

    def check(self, value: Any, path: str, wire: bool) -> Any:
        self._walk(value, path, wire, 0)
        return value if wire else _plain(value)

    def _walk(self, value: Any, path: str, wire: bool, depth: int) -> None:
        if value is None or isinstance(value, bool | str):
            return
        if isinstance(value, int):
            if not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
                raise FieldError(path, f"expected an integer in [-2**64, 2**64 - 1], found {value}")
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                raise FieldError(path, f"expected a finite float, found {value!r}")
            return
        if depth >= _MAX_JSON_DEPTH:
            raise FieldError(path, f"expected at most {_MAX_JSON_DEPTH} levels of nesting")
        if isinstance(value, list) or (not wire and isinstance(value, tuple)):
            for i, item in enumerate(value):
                self._walk(item, f"{path}[{i}]", wire, depth + 1)
            return
        if isinstance(value, dict) or (not wire and isinstance(value, Mapping)):
            for k, item in value.items():
                if not isinstance(k, str):
                    raise FieldError(path, f"expected string keys, found a {type(k).__name__} key {k!r}")
                self._walk(item, f"{path}.{k}", wire, depth + 1)
            return
        raise self.fail(path, value)

    def dump(self, value: Any) -> Any:
        return value


def _plain(value: Any) -> Any:
    # Python callers may hand tuples or read-only mappings; the record keeps plain lists and
    # dicts, which is what decoding produces and what user functions expect to receive.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return {str(k): _plain(v) for k, v in value.items()}


class Params(Map):
    """The ``params`` map of an Order: string keys, JSON values."""

    def __init__(self) -> None:
        super().__init__(Text("a parameter name", nonempty=True), Json())
        self.what = "a map of parameter names to JSON values"


class Struct(Kind):
    """A nested value with its own fixed fields (e.g. an Invoice's per-datum results)."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.what = f"a {cls.__name__} map"

    def check(self, value: Any, path: str, wire: bool) -> Any:
        if wire:
            if type(value) is not dict:
                raise self.fail(path, value)
            fields: dict[str, Kind] = self.cls.FIELDS
            _check_keys(value, fields, path + ".")
            values = {name: kind.check(value[name], f"{path}.{name}", True) for name, kind in fields.items()}
            return _build(self.cls, values, path + ".")
        if not isinstance(value, self.cls):
            raise self.fail(path, value)
        return value

    def dump(self, value: Any) -> Any:
        return {name: kind.dump(getattr(value, name)) for name, kind in self.cls.FIELDS.items()}


def _check_keys(obj: Mapping[str, Any], fields: Mapping[str, Kind], prefix: str) -> None:
    missing = [name for name in fields if name not in obj]
    if missing:
        raise FieldError(prefix + missing[0], "is missing (absent optional fields are written as null)")
    extra = sorted(k for k in obj if k not in fields)
    if extra:
        raise FieldError(prefix + str(extra[0]), "is not a field of this record type")


# -- records --------------------------------------------------------------------------------


def _validate(obj: Any, prefix: str = "") -> None:
    """Check (and normalize) every field of a freshly constructed record or struct."""
    for name, kind in type(obj).FIELDS.items():
        value = kind.check(getattr(obj, name), prefix + name, False)
        object.__setattr__(obj, name, value)
    obj._check()


def _build(cls: type[Any], values: dict[str, Any], prefix: str = "") -> Any:
    # Values from the wire are already checked: skip __init__ (which would check them again)
    # but still run the cross-field rules.
    obj = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    try:
        obj._check()
    except FieldError as exc:
        exc.path = prefix + exc.path
        raise
    return obj


class Checked:
    """Base of records and nested structs: validation on construction via ``FIELDS``."""

    FIELDS: ClassVar[Mapping[str, Kind]]

    def __post_init__(self) -> None:
        try:
            _validate(self)
        except FieldError as exc:
            raise RecordError(f"{self._label()}: field '{exc.path}' {exc.message}") from None

    def _label(self) -> str:
        return type(self).__name__

    def _check(self) -> None:
        """Cross-field rules; raise FieldError. Override when a record has some."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in self.FIELDS))


class Record(Checked):
    """Base class of the CATs records.

    Subclasses are frozen, keyword-only dataclasses. Records compare equal, and hash alike, when
    their encodings are equal (so ``params={"x": 1}`` and ``{"x": 1.0}`` differ, as their CIDs do).
    """

    TYPE: ClassVar[str]
    """The ``type`` field on the wire, ``"cats/<kind>@<version>"``."""

    def _label(self) -> str:
        return self.TYPE

    # -- wire form --------------------------------------------------------------------------
    def to_obj(self) -> dict[str, Any]:
        """The record as an IPLD value (a dict with ``type`` and every field; links are CIDs)."""
        obj: dict[str, Any] = {"type": self.TYPE}
        for name, kind in self.FIELDS.items():
            obj[name] = kind.dump(getattr(self, name))
        return obj

    @functools.cached_property
    def encoded(self) -> bytes:
        """The canonical DAG-CBOR block of this record (computed once)."""
        return _dagcbor.encode(self.to_obj())

    def encode(self) -> bytes:
        """The canonical DAG-CBOR encoding (the bytes the record's CID hashes)."""
        return self.encoded

    @functools.cached_property
    def cid(self) -> CID:
        """The record's CIDv1 (dag-cbor, sha2-256)."""
        return CID.compute(self.encoded, DAG_CBOR)

    def to_block(self) -> Block:
        """The record as a block ready for a store."""
        return Block._trusted(self.cid, self.encoded)

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        """Build a record from a decoded IPLD value, strictly.

        Raises:
            RecordError: ``obj`` is not a map, its ``type`` is not ``cls.TYPE``, or a field is
                missing, extra or wrong; the message names the record type and the field path.
        """
        if type(obj) is not dict:
            raise RecordError(f"{cls.TYPE}: expected a map, found {_found(obj)}")
        _check_type(obj, cls.TYPE)
        fields = cls.FIELDS
        try:
            # ``type`` and every field, nothing else: the usual case, settled without listing keys.
            if len(obj) != len(fields) + 1 or not obj.keys() >= fields.keys():
                _check_keys({k: v for k, v in obj.items() if k != "type"}, fields, "")
            values = {name: kind.check(obj[name], name, True) for name, kind in fields.items()}
            record: Self = _build(cls, values)
        except FieldError as exc:
            raise RecordError(f"{cls.TYPE}: field '{exc.path}' {exc.message}") from None
        return record

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode a DAG-CBOR block as this record type, strictly.

        Raises:
            RecordError: the bytes are not canonical DAG-CBOR or not a valid ``cls.TYPE`` record.
        """
        try:
            obj = _dagcbor.decode(data)
        except DecodeError as exc:
            raise RecordError(f"{cls.TYPE}: {exc}") from None
        record = cls.from_obj(obj)
        # Strict decoding admits only the canonical form, so these are the record's own bytes.
        record.__dict__["encoded"] = bytes(data)
        return record

    # -- value semantics --------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self.encoded == other.encoded

    def __hash__(self) -> int:
        return hash(self.encoded)

    def links(self) -> Iterator[CID]:
        """Every CID this record links to, in field order (a CID linked twice appears twice)."""
        return _dagcbor.iter_links(self.to_obj())


def _check_type(obj: Mapping[str, Any], expected: str) -> None:
    if "type" not in obj:
        raise RecordError(f"{expected}: field 'type' is missing (expected {expected!r})")
    found = obj["type"]
    if found == expected:
        return
    kind, _, _ = expected.partition("@")
    if isinstance(found, str) and found.startswith(kind + "@"):
        raise RecordError(
            f"{expected}: unknown version {found!r} (this CATs reads {expected!r}; a newer CATs may read it)"
        )
    raise RecordError(f"{expected}: field 'type' expected {expected!r}, found {found!r}")


@dataclass_transform(frozen_default=True, kw_only_default=True, eq_default=False)
def record(cls: type[_C]) -> type[_C]:
    """Class decorator: a frozen keyword-only dataclass whose fields match ``FIELDS`` exactly."""
    dc = dataclasses.dataclass(frozen=True, eq=False, kw_only=True)(cls)
    names = [f.name for f in dataclasses.fields(cast(Any, dc))]
    if names != list(dc.FIELDS):
        raise TypeError(f"{cls.__name__}: dataclass fields {names} differ from FIELDS {list(dc.FIELDS)}")
    return dc
