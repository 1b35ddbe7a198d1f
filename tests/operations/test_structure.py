from __future__ import annotations

from pathlib import Path

import pytest
from program_locks import write_small_lock

from cats_runtime.cas import MemoryBlockStore
from cats_runtime.errors import InvalidInputError
from cats_runtime.operations import build_structure, local_structure, sanitize_stack_config, store_structure
from cats_runtime.operations._structure import SECRET_PLACEHOLDER, plugin_pins
from cats_runtime.records import StructureRecord

CIPHERTEXT = "v1:Zm9vYmFyc2VjcmV0:QUJDREVGR0hJSktMTU5PUA=="
STACK = f"""encryptionsalt: v1:c2FsdHNhbHQ=:v1:AAAAAAAAAAAA:BBBBBBBBBB==
config:
  cats:cloud: aws
  cats:region: eu-west-1
  cats:dbPassword:
    secure: {CIPHERTEXT}
  cats:workers: 3
"""


def _program(tmp_path: Path, stack_text: str = STACK) -> Path:
    prog = tmp_path / "prog"
    (prog / "components").mkdir(parents=True)
    (prog / "stacks").mkdir()
    (prog / "Pulumi.yaml").write_text("name: cats-node\nruntime: python\nstackConfigDir: stacks\n")
    (prog / "__main__.py").write_text("import pulumi\npulumi.export('ok', 1)\n")
    (prog / "components" / "plant.py").write_text("REPLICAS = 2\nNAME = 'plant'\n")
    (prog / "stacks" / "Pulumi.acme.yaml").write_text(stack_text)
    (prog / "stacks" / "Pulumi.other.yaml").write_text("config:\n  cats:cloud: gcp\n")
    # A lock pins the installed SDK (a disagreeing pin is refused: tests/iac/test_structure_pins.py).
    (prog / "requirements.txt").write_text(f"pulumi=={plugin_pins()['pulumi']}\n")
    write_small_lock(prog)  # the program's own dependencies: the Structure's Environment
    (prog / "README.md").write_text("not part of the program\n")
    return prog


def test_secrets_never_reach_a_block(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    record = build_structure(_program(tmp_path), "acme", store)
    cid = store_structure(record, store)
    assert record.cloud == "aws" and record.stack == "acme" and record.program is not None
    assert store.has(cid)
    needles = [CIPHERTEXT.encode(), b"Zm9vYmFyc2VjcmV0", b"encryptionsalt", b"c2FsdHNhbHQ"]
    for block_cid in store:
        data = store.get(block_cid)
        for needle in needles:
            assert needle not in data, f"{needle!r} leaked into block {block_cid}"
    # The non-secret config is there, and other stacks and stray files are not.
    everything = b"".join(store.get(c) for c in store)
    assert b"eu-west-1" in everything
    # The secret's key stays, with a fixed placeholder, so redeploy can ask for its value.
    assert b"cats:dbPassword: '" + SECRET_PLACEHOLDER.encode() + b"'" in everything
    assert b"not part of the program" not in everything
    assert b"cats:cloud: gcp" not in everything


def test_secret_change_keeps_cid_component_change_does_not(tmp_path: Path) -> None:
    base = build_structure(_program(tmp_path / "a"), "acme", None)
    rotated = build_structure(
        _program(
            tmp_path / "b",
            STACK.replace(CIPHERTEXT, "v1:b3RoZXJzZWNyZXQ=:ZZZZ").replace("c2FsdHNhbHQ", "bmV3"),
        ),
        "acme",
        None,
    )
    assert rotated.to_block().cid == base.to_block().cid
    prog = _program(tmp_path / "c")
    (prog / "components" / "plant.py").write_text("REPLICAS = 3\nNAME = 'plant'\n")
    changed = build_structure(prog, "acme", None)
    assert changed.to_block().cid != base.to_block().cid
    prog = _program(tmp_path / "d")
    (prog / "README.md").write_text("edited docs\n")
    (prog / "stacks" / "Pulumi.other.yaml").write_text("config:\n  cats:cloud: azure\n")
    assert build_structure(prog, "acme", None).to_block().cid == base.to_block().cid


def test_sanitize_is_canonical() -> None:
    a = sanitize_stack_config("config:\n  b: 1\n  a: {x: 2}\n")
    b = sanitize_stack_config("config:\n    a:\n        x: 2\n    b: 1\n")
    assert a == b
    assert "secure" not in sanitize_stack_config("config:\n  k:\n    secure: abc\n  l: [1, {secure: x}]\n")


def test_local_structure() -> None:
    record = local_structure()
    assert isinstance(record, StructureRecord)
    assert record.cloud == "local" and record.program is None


def test_structure_errors(tmp_path: Path) -> None:
    prog = _program(tmp_path)
    with pytest.raises(InvalidInputError, match=r"Pulumi\.nope\.yaml"):
        build_structure(prog, "nope", None)
    (prog / "stacks" / "Pulumi.bad.yaml").write_text("config:\n  cats:cloud: mars\n")
    with pytest.raises(InvalidInputError, match="mars"):
        build_structure(prog, "bad", None)
    (prog / "stacks" / "Pulumi.none.yaml").write_text("config: {}\n")
    with pytest.raises(InvalidInputError, match="cats:cloud"):
        build_structure(prog, "none", None)
    (prog / "__main__.py").unlink()
    with pytest.raises(InvalidInputError, match=r"__main__\.py"):
        build_structure(prog, "acme", None)
