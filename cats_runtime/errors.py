"""The one error hierarchy of CATs.

Every error a user can cause or meet is a :class:`CatsError`. Each subclass also
inherits the builtin it corresponds to, so callers that only know Python's
builtins (``except ValueError``) still catch it. Only the CLI and the HTTP
service catch ``CatsError``; library code raises and lets it travel.

::

    CatsError
    ├── InvalidInputError (ValueError)          bad user input: params, options, paths
    │   ├── InvalidCIDError                     a CID string or byte string that does not parse
    │   ├── UnsupportedCodecError               a codec CATs cannot decode
    │   ├── UnsupportedHashError                a hash function CATs cannot verify
    │   └── UnsafePathError                     a path that would escape its root
    ├── MissingExtraError (ImportError)         an optional extra (iac, dev) is not installed
    ├── DecodeError (ValueError)                bytes that are not valid for their codec
    │   ├── CARFormatError                      a truncated or malformed CAR stream
    │   └── RecordError                         DAG-CBOR that is not a valid CATs record
    ├── IntegrityError (ValueError)             bytes whose hash does not match their CID
    │   └── CorruptBlockError (+ StoreError)    a block of the local store itself that no longer matches
    ├── BlockNotFoundError (LookupError)        a CID no configured source has
    ├── NotFoundError (LookupError)             a named thing (run, pin, stack) that does not exist
    ├── StoreError (OSError)                    the store cannot be read or written
    ├── AddressInUseError (OSError)             the address a node should listen on is taken
    ├── ExecutionError (RuntimeError)           a run that could not complete
    │   └── FunctionFailedError                 the user's function raised
    ├── VerificationError (RuntimeError)        re-execution did not reproduce the outputs
    ├── ProvisionError (RuntimeError)           Pulumi / infrastructure could not be provisioned
    ├── PolicyViolationError (RuntimeError)     a mandatory policy failed
    ├── AuthError (PermissionError)             missing or wrong credentials, code not allowed
    │   └── CredentialsError                    no credentials, or unknown ones (HTTP 401, not 403)
    ├── LimitError (RuntimeError)               a size or concurrency limit was exceeded
    │   └── TooLargeError                       a body or object bigger than allowed (HTTP 413, not 429)
    └── PeerError (ConnectionError)             a remote node or Kubo answered badly or not at all
"""

from __future__ import annotations

__all__ = [
    "AddressInUseError",
    "AuthError",
    "BlockNotFoundError",
    "CARFormatError",
    "CatsError",
    "CorruptBlockError",
    "CredentialsError",
    "DecodeError",
    "ExecutionError",
    "FunctionFailedError",
    "IntegrityError",
    "InvalidCIDError",
    "InvalidInputError",
    "LimitError",
    "MissingExtraError",
    "NotFoundError",
    "PeerError",
    "PolicyViolationError",
    "ProvisionError",
    "RecordError",
    "StoreError",
    "TooLargeError",
    "UnsafePathError",
    "UnsupportedCodecError",
    "UnsupportedHashError",
    "VerificationError",
]


class CatsError(Exception):
    """Root of every error CATs raises on purpose."""


class InvalidInputError(CatsError, ValueError):
    """User input (an option, a parameter, a path) is not what was expected."""


class InvalidCIDError(InvalidInputError):
    """A CID string or byte string does not parse."""


class UnsupportedCodecError(InvalidInputError):
    """A multicodec CATs does not know how to decode."""


class UnsupportedHashError(InvalidInputError):
    """A multihash function CATs cannot compute, so cannot verify."""


class UnsafePathError(InvalidInputError):
    """A path or entry name that would escape the directory it belongs to."""


class MissingExtraError(CatsError, ImportError):
    """A command needs an optional extra of the package that is not installed (the message says how)."""


class DecodeError(CatsError, ValueError):
    """Bytes that are not a valid encoding for their codec."""


class CARFormatError(DecodeError):
    """A CAR stream that is truncated or malformed."""


class RecordError(DecodeError):
    """A DAG-CBOR value that is not a valid CATs record; the message names the field."""


class IntegrityError(CatsError, ValueError):
    """Bytes whose hash does not match the CID they were stored or served under."""


class BlockNotFoundError(CatsError, LookupError):
    """A block that no configured source has."""


class NotFoundError(CatsError, LookupError):
    """A named object (a pin, a run, a stack, a catalog entry) that does not exist."""


class StoreError(CatsError, OSError):
    """The store cannot be read or written (permissions, disk full, lock held)."""


class CorruptBlockError(IntegrityError, StoreError):
    """A block of the local store whose bytes no longer hash to its CID.

    An :class:`IntegrityError` (the CLI's exit 4, like any hash mismatch) that is also a
    :class:`StoreError`: the fault is this store's, not the caller's, so the node answers 500,
    where a block a client sent that does not match its CID is the client's 400.
    """


class AddressInUseError(CatsError, OSError):
    """The host and port a node should listen on are taken, or cannot be bound at all."""


class ExecutionError(CatsError, RuntimeError):
    """A run that could not complete."""


class FunctionFailedError(ExecutionError):
    """The user's function raised; the Invoice records the traceback."""


class VerificationError(CatsError, RuntimeError):
    """Re-execution or re-hashing did not reproduce what a BOM claims."""


class ProvisionError(CatsError, RuntimeError):
    """Infrastructure could not be provisioned (missing pulumi CLI, credentials, failed update)."""


class PolicyViolationError(CatsError, RuntimeError):
    """A mandatory policy rule failed."""


class AuthError(CatsError, PermissionError):
    """Missing or wrong credentials, or code that is not on the allow-list."""


class CredentialsError(AuthError):
    """No credentials were presented, or they match no known holder (as opposed to refused ones)."""


class LimitError(CatsError, RuntimeError):
    """A size, rate or concurrency limit was exceeded."""


class TooLargeError(LimitError):
    """A request body, block or other object is bigger than the configured limit."""


class PeerError(CatsError, ConnectionError):
    """A remote node, gateway or Kubo daemon answered badly or not at all."""
