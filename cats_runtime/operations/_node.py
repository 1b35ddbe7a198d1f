"""A CATs home opened for work: the block repository, the catalog and the node's identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cas import CID, DAG_CBOR, Repo
from ..errors import RecordError
from ..records import CATALOG_FILE, Catalog, CatalogStats
from ._identity import NodeIdentity, sign_bom

if TYPE_CHECKING:
    from ..cas import BlockStore
    from ..records import BOMRecord

__all__ = ["Node", "rebuild_catalog"]


@dataclass
class Node:
    """One CATs home: the repository (``blocks/``, ``pins/``), ``catalog.sqlite`` and ``keys/``.

    Open with :meth:`open`; close it (or use it as a context manager) to release the catalog.
    """

    home: Path
    repo: Repo
    catalog: Catalog
    _identity: NodeIdentity | None = field(default=None, repr=False)

    @classmethod
    def open(cls, home: Path) -> Node:
        """Open (creating on first use) the home at ``home``."""
        repo = Repo.open(home)
        return cls(home=repo.home, repo=repo, catalog=Catalog(repo.home / CATALOG_FILE))

    @property
    def store(self) -> BlockStore:
        """The node's block store."""
        return self.repo.blocks

    @property
    def keys(self) -> Path:
        """The directory of the node's keys."""
        return self.home / "keys"

    def close(self) -> None:
        """Close the catalog."""
        self.catalog.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def identity(self) -> NodeIdentity:
        """The node's Ed25519 identity (created on first use)."""
        if self._identity is None:
            self._identity = NodeIdentity.load_or_create(self.home)
        return self._identity

    def sign(self, bom: BOMRecord) -> BOMRecord:
        """``bom`` issued and signed by this node."""
        return sign_bom(bom, self.identity)

    def load(self, cid: CID) -> Any:
        """Decode the CATs record stored under ``cid`` (verified read, strict decode)."""
        from ..records import decode_record

        if cid.codec != DAG_CBOR:
            raise RecordError(
                f"expected a CATs record (a dag-cbor block) at {cid}, found a {cid.codec_name} block"
            )
        return decode_record(self.store.get(cid))


def rebuild_catalog(node: Node) -> CatalogStats:
    """Recreate the node's catalog from every block in its store."""
    return node.catalog.rebuild(node.store, iter(node.repo.blocks))
