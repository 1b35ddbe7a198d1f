"""Named UnixFS import profiles: every setting that decides a file or directory CID.

The same bytes give the same CID only under the same settings (CID version, leaf format,
chunker, layout, links per node, HAMT threshold and how a directory's size is estimated).
Giving each combination a name, and recording that name with every input an Order imports
from a path, lets anyone re-derive the CID from the bytes years later.

The profiles are those of IPIP-499 (``unixfs-v0-2015``, ``unixfs-v1-2025``, as the npm
``ipfs-unixfs-importer`` 17 ``profile`` option and Kubo's ``Import.*`` config define them) and
CATs' default, ``kubo-cidv1``: Kubo's ``ipfs add --cid-version=1`` (docs/kubo.md says which
Kubo versions it matches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from ..errors import InvalidInputError

__all__ = ["DEFAULT_PROFILE", "PROFILES", "ImportProfile", "get_profile"]

ShardStrategy = Literal["links-bytes", "block-bytes"]


@dataclass(frozen=True, slots=True)
class ImportProfile:
    """The settings of one UnixFS import.

    Attributes:
        name: The profile's name.
        cid_version: 1 (CIDv1, base32) or 0 (CIDv0, base58btc).
        raw_leaves: Leaves are raw blocks (True) or dag-pb UnixFS File nodes (False).
        chunk_size: Fixed-size chunker, bytes (Kubo's ``--chunker=size-N``).
        max_links: Links per node of the balanced layout.
        hamt_threshold: A directory larger than this (strictly) becomes a HAMT shard.
        hamt_strategy: How a directory's size is measured against the threshold:
            ``links-bytes`` sums name bytes + CID bytes of its links (Kubo, boxo's estimate);
            ``block-bytes`` is the exact encoded block length (IPIP-499's ``unixfs-v1-2025``).
        hamt_fanout: Slots per HAMT node.
    """

    name: str
    cid_version: int
    raw_leaves: bool
    chunk_size: int
    max_links: int
    hamt_threshold: int
    hamt_strategy: ShardStrategy
    hamt_fanout: int = 256
    layout: Literal["balanced"] = "balanced"
    hash: Literal["sha2-256"] = "sha2-256"

    @property
    def chunker(self) -> str:
        """The chunker as Kubo spells it, ``size-N``."""
        return f"size-{self.chunk_size}"

    def to_json(self) -> dict[str, Any]:
        """Every setting, for records and ``--json`` output."""
        return {
            "name": self.name,
            "cid_version": self.cid_version,
            "raw_leaves": self.raw_leaves,
            "hash": self.hash,
            "chunker": self.chunker,
            "layout": self.layout,
            "max_links": self.max_links,
            "hamt_threshold": self.hamt_threshold,
            "hamt_strategy": self.hamt_strategy,
            "hamt_fanout": self.hamt_fanout,
        }


_KIB: Final = 1024
PROFILES: Final[dict[str, ImportProfile]] = {
    profile.name: profile
    for profile in (
        # `ipfs add --cid-version=1` (raw leaves follow from the CID version in Kubo).
        ImportProfile("kubo-cidv1", 1, True, 256 * _KIB, 174, 256 * _KIB, "links-bytes"),
        # Plain `ipfs add` (CIDv0) since 2015; IPIP-499's legacy profile.
        ImportProfile("unixfs-v0-2015", 0, False, 256 * _KIB, 174, 256 * _KIB, "links-bytes"),
        # IPIP-499's modern profile: 1 MiB chunks, 1024 links, exact block size for HAMT.
        ImportProfile("unixfs-v1-2025", 1, True, 1024 * _KIB, 1024, 256 * _KIB, "block-bytes"),
    )
}
DEFAULT_PROFILE: Final = PROFILES["kubo-cidv1"]


def get_profile(name: str) -> ImportProfile:
    """The profile called ``name``.

    Raises:
        InvalidInputError: no such profile.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidInputError(
            f"expected an import profile among {sorted(PROFILES)}, found {name!r}"
        ) from None
