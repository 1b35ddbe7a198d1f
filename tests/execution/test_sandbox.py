"""Probe Functions against the task sandbox, run the way a worker runs them (no Ray needed).

Each probe tries one escape and, if it worked, writes what it got into its output (so the task
would *succeed*); sandboxed, the attempt raises and the task fails with the reason.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from cats_runtime.cas import (
    DAG_PB,
    RAW,
    Block,
    MemoryBlockStore,
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    _unixfs,
    encode_pbnode,
    encode_unixfs,
)
from cats_runtime.errors import ExecutionError, InvalidInputError
from cats_runtime.execution import (
    DatumRef,
    SandboxPolicy,
    SandboxSettings,
    TaskLimits,
    TaskResult,
    TaskSpec,
    bwrap_available,
    clean_workdir,
    resolve_mode,
    run_task,
)

needs_bwrap = pytest.mark.skipif(bwrap_available() is not None, reason=f"bwrap unusable: {bwrap_available()}")

SMALL = TaskLimits(
    cpu_seconds=20,
    memory_bytes=512 << 20,
    processes=32,
    open_files=64,
    output_bytes=1 << 20,
    output_files=20,
    input_bytes=4 << 20,
    tmp_bytes=8 << 20,
    wall_seconds=60,
)


@pytest.fixture(autouse=True, params=["fork-server", "bwrap-per-task"])
def bwrap_start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every probe runs both ways bwrap mode starts a call: forked from a warm server, or fresh."""
    monkeypatch.setenv("CATS_SANDBOX_FORK", "1" if request.param == "fork-server" else "0")
    return str(request.param)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A node home with what a probe wants: a key, tokens, an allow-list, another task's code."""
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "node.key").write_bytes(b"SECRET-NODE-KEY")
    (home / "keys" / "node.key").chmod(0o600)
    (home / "node").mkdir()
    (home / "node" / "tokens.json").write_text('{"secret": "TOKENS"}')
    (home / "node" / "allow.txt").write_text("")
    victim = home / "work" / "task-1-victim" / "code"
    victim.mkdir(parents=True)
    (victim / "main.py").write_text("def main(ctx): (ctx.output / 'r').write_text('victim')\n")
    return home


def _run(
    store: MemoryBlockStore,
    tmp_path: Path,
    body: str,
    *,
    params: dict[str, object] | None = None,
    mode: str = "bwrap",
    limits: TaskLimits = SMALL,
    inputs: dict[str, str] | None = None,
    datum: DatumRef | None = None,
    network: bool = False,
    python_path: tuple[str, ...] = (),
) -> TaskResult:
    code = tmp_path / f"code-{abs(hash(body))}"
    code.mkdir(exist_ok=True)
    (code / "probe.py").write_text(body)
    settings = SandboxSettings(
        mode=mode,  # type: ignore[arg-type]
        limits=limits,
        network=network,
        workdir=str(tmp_path / "home" / "work"),
        python_path=python_path,
    )
    if inputs is None:
        inputs = {"a": str(_unixfs.add_bytes(b"input-a", store))}
    spec = TaskSpec(
        "batch",
        str(_unixfs.add_path(code, store).cid),
        "probe:main",
        inputs,
        params or {},
        3,
        datum,
        settings,
    )
    return run_task(spec, store)


def _output(store: MemoryBlockStore, result: TaskResult) -> dict[str, bytes]:
    sink = MemoryBlockStore()
    for cid_bytes, data in result.blocks:
        from cats_runtime.cas import CID

        sink.put(Block.checked(CID.from_bytes(cid_bytes), data))
    assert result.output is not None
    from cats_runtime.cas import CID

    root = CID.from_bytes(result.output)
    return {e.name: b"".join(_unixfs.cat(sink, e.cid)) for e in _unixfs.ls(sink, root)}


@needs_bwrap
def test_a_plain_function_runs_and_sees_its_inputs(tmp_path: Path, home: Path) -> None:
    store = MemoryBlockStore()
    result = _run(
        store,
        tmp_path,
        "import os\n"
        "def main(ctx):\n"
        "    print('uid', os.getuid() != 0)\n"
        "    (ctx.output / 'r.txt').write_text(ctx.inputs['a'].read_text() + str(ctx.seed))\n",
    )
    assert result.status == "succeeded", result.log
    assert result.sandbox == "bwrap"
    assert _output(store, result) == {"r.txt": b"input-a3"}
    assert not any((home / "work").glob("task-*-*[!m]")), "task directories are removed after the task"


@needs_bwrap
@pytest.mark.parametrize(
    ("what", "body", "reason"),
    [
        ("read the node key", "data = open(P['home'] + '/keys/node.key', 'rb').read()", "FileNotFoundError"),
        ("read the tokens", "data = open(P['home'] + '/node/tokens.json', 'rb').read()", "FileNotFoundError"),
        ("list the home", "data = repr(os.listdir(P['home'])).encode()", "FileNotFoundError"),
        (
            "append to the allow-list",
            "open(P['home'] + '/node/allow.txt', 'a').write('x\\n'); data = b'wrote'",
            "FileNotFoundError",
        ),
        (
            "rewrite another task's code",
            "open(P['home'] + '/work/task-1-victim/code/main.py', 'w').write('evil'); data = b'w'",
            "FileNotFoundError",
        ),
        (
            "write outside the output",
            "open(P['outside'], 'w').write('x'); data = b'w'",
            "FileNotFoundError",
        ),
        (
            "see the host's processes",
            "data = repr(sorted(os.listdir('/proc'))).encode(); "
            "assert any(p.isdigit() and int(p) > 10 for p in os.listdir('/proc')), data",
            "AssertionError",
        ),
        ("modify its input", "open(ctx.inputs['a'], 'w').write('x'); data = b'w'", "Error"),
    ],
)
def test_escapes_fail_with_the_reason(tmp_path: Path, home: Path, what: str, body: str, reason: str) -> None:
    store = MemoryBlockStore()
    outside = tmp_path / "outside.txt"
    result = _run(
        store,
        tmp_path,
        "import os\n"
        "def main(ctx):\n"
        "    P = ctx.params\n"
        f"    {body}\n"
        "    (ctx.output / 'stolen').write_bytes(data)\n",
        params={"home": str(home), "outside": str(outside)},
    )
    assert result.status == "failed", f"{what}: the probe succeeded: {result.log}"
    assert reason in (result.error or ""), result.error
    assert b"SECRET" not in result.log.encode()
    assert not outside.exists()
    assert (home / "node" / "allow.txt").read_text() == ""
    assert "evil" not in (home / "work" / "task-1-victim" / "code" / "main.py").read_text()


@needs_bwrap
def test_environment_is_scrubbed(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATS_NODE_CONFIG", f'{{"home": "{home}"}}')
    monkeypatch.setenv("RAY_SECRET_TOKEN", "sekrit")
    store = MemoryBlockStore()
    result = _run(
        store,
        tmp_path,
        "import os, sys\n"
        "def main(ctx):\n"
        "    (ctx.output / 'env').write_text(repr(dict(os.environ)) + repr(sys.path))\n",
    )
    assert result.status == "succeeded", result.log
    seen = _output(store, result)["env"].decode()
    assert "CATS_" not in seen and "RAY_" not in seen and str(home) not in seen and "sekrit" not in seen
    assert "site-packages" not in seen  # -I -S: not even the runtime's own packages


@needs_bwrap
def test_no_network_unless_declared(tmp_path: Path, home: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        store = MemoryBlockStore()
        body = (
            "import socket\n"
            "def main(ctx):\n"
            "    s = socket.create_connection(('127.0.0.1', ctx.params['port']), timeout=5)\n"
            "    s.sendall(b'hello from the sandbox')\n"
            "    (ctx.output / 'sent').write_text('yes')\n"
        )
        result = _run(store, tmp_path, body, params={"port": port})
        assert result.status == "failed" and "ConnectionRefusedError" in (result.error or ""), result.error
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever arrived
        declared = _run(store, tmp_path, body, params={"port": port}, network=True)
        assert declared.status == "succeeded", declared.log
        conn, _ = listener.accept()
        conn.close()


@needs_bwrap
@pytest.mark.parametrize(
    ("what", "body", "reason"),
    [
        (
            "fork without bound",
            "import os, time\n"
            "def main(ctx):\n"
            "    for _ in range(2000):\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(5); os._exit(0)\n",
            "LimitError: more than 32 processes",
        ),
        (
            "allocate past the memory limit",
            "def main(ctx):\n    x = bytearray(1 << 30)\n    (ctx.output / 'x').write_bytes(x[:1])\n",
            "LimitError: the task ran out of memory",
        ),
        (
            "write one file past the output budget",
            "def main(ctx):\n"
            "    with open(ctx.output / 'big', 'wb') as f:\n"
            "        for _ in range(4):\n"
            "            f.write(b'x' * (1 << 19))\n",
            "LimitError: a file under the output grew past the output budget of 1048576 bytes",
        ),
        (
            "write many files past the output budget",
            "def main(ctx):\n"
            "    for i in range(4):\n"
            "        (ctx.output / f'f{i}').write_bytes(b'x' * ((1 << 20) - 10))\n",
            "LimitError: the output holds more than the output budget",
        ),
        (
            "write too many files",
            "def main(ctx):\n    for i in range(50):\n        (ctx.output / f'f{i}').write_text('x')\n",
            "LimitError: the output holds more than 20 entries",
        ),
        (
            "fill /tmp",
            "def main(ctx):\n"
            "    for i in range(40):\n"
            "        open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 19))\n",
            "LimitError: the task's private /tmp is full",
        ),
        (
            "burn CPU",
            "def main(ctx):\n    while True:\n        pass\n",
            "LimitError: the task used more than 1 s of CPU time",
        ),
        ("exit the interpreter", "import os\ndef main(ctx):\n    os._exit(3)\n", "exited with status 3"),
    ],
)
def test_limits_fail_the_task_with_their_name(
    tmp_path: Path, home: Path, what: str, body: str, reason: str
) -> None:
    limits = TaskLimits(**{**SMALL.__dict__, "cpu_seconds": 1}) if "CPU" in reason else SMALL
    result = _run(MemoryBlockStore(), tmp_path, body, limits=limits)
    assert result.status == "failed", f"{what}: {result.log[-2000:]}"
    assert reason in (result.error or ""), (what, result.error)
    assert not list((home / "work").glob("task-[!1]*")), "the task directory is gone"


def _huge_file(store: MemoryBlockStore, leaf: bytes, fanout: int, depth: int) -> tuple[Block, int]:
    """A UnixFS file that repeats one leaf fanout**depth times: a few KB declaring terabytes."""
    block = Block.encode(leaf, RAW)
    store.put(block)
    size = len(leaf)
    for _ in range(depth):
        node = PBNode(
            tuple(PBLink(block.cid, "", size) for _ in range(fanout)),
            encode_unixfs(UnixFSData(UnixFSType.FILE, filesize=size * fanout, blocksizes=(size,) * fanout)),
        )
        block = Block.encode(encode_pbnode(node), DAG_PB)
        store.put(block)
        size *= fanout
    return block, size


@needs_bwrap
def test_a_dag_declaring_a_tebibyte_fails_before_a_byte_is_written(tmp_path: Path, home: Path) -> None:
    store = MemoryBlockStore()
    root, size = _huge_file(store, b"x" * (256 << 10), 64, 4)  # 64**4 * 256 KiB = 4 TiB
    assert size >= 1 << 40
    result = _run(store, tmp_path, "def main(ctx):\n    pass\n", inputs={"big": str(root.cid)})
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("LimitError: expected at most 4194304 bytes")
    assert "input 'big' declaring 4398046511104 bytes" in result.error
    assert not list((home / "work").glob("task-[!1]*"))


@needs_bwrap
def test_writing_stops_at_the_budget_when_the_dag_understates(tmp_path: Path, home: Path) -> None:
    store = MemoryBlockStore()
    real = _unixfs.add_bytes(os.urandom(6 << 20), store)
    lying = _unixfs.add_directory([("f", real, 10)], store).cid  # Tsize 10 for 6 MiB
    datum = DatumRef("d", "f", str(real))
    result = _run(store, tmp_path, "def main(ctx):\n    pass\n", inputs={"x": str(lying)})
    assert result.status == "failed"
    assert "understated its size" in (result.error or ""), result.error
    assert not list((home / "work").glob("task-[!1]*"))
    del datum


@needs_bwrap
def test_python_path_is_the_only_extra_sys_path(tmp_path: Path, home: Path) -> None:
    lib = tmp_path / "envlib"
    (lib / "envpkg").mkdir(parents=True)
    (lib / "envpkg" / "__init__.py").write_text("VALUE = 'from the environment'\n")
    store = MemoryBlockStore()
    body = (
        "import importlib.util\n"
        "def main(ctx):\n"
        "    import envpkg\n"
        "    seen = [importlib.util.find_spec(m) is not None for m in ('click', 'cats_runtime', 'ray')]\n"
        "    (ctx.output / 'r').write_text(envpkg.VALUE + repr(seen))\n"
    )
    result = _run(store, tmp_path, body, python_path=(str(lib),))
    assert result.status == "succeeded", result.log
    assert _output(store, result)["r"] == b"from the environment[False, False, False]"


def test_none_mode_is_a_fresh_process_with_limits(tmp_path: Path, home: Path) -> None:
    store = MemoryBlockStore()
    body = (
        "import os\n"
        "def main(ctx):\n"
        "    (ctx.output / 'pid').write_text(str(os.getppid()))\n"
        "    bytearray(1 << 30)\n"
    )
    result = _run(store, tmp_path, body, mode="none")
    assert result.status == "failed" and "LimitError: the task ran out of memory" in (result.error or "")
    assert result.sandbox == "none"
    ok = _run(
        store,
        tmp_path,
        "import os\ndef main(ctx):\n    (ctx.output / 'p').write_text(str(os.getpid()))\n",
        mode="none",
    )
    assert ok.status == "succeeded" and _output(store, ok)["p"] != str(os.getpid()).encode()


def test_modes_and_policies_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="expected a sandbox mode among auto, bwrap, uid, none"):
        SandboxPolicy(mode="chroot")
    with pytest.raises(InvalidInputError, match="expected a task limit memory_bytes >= 1"):
        TaskLimits(memory_bytes=0)
    assert TaskLimits.parse("memory_bytes=512M,cpu_seconds=9").memory_bytes == 512 << 20
    with pytest.raises(InvalidInputError, match="with a name among"):
        TaskLimits.parse("ram=1G")
    if os.geteuid() != 0:
        with pytest.raises(InvalidInputError, match="root node"):
            resolve_mode("uid")
    if bwrap_available() is None:
        assert resolve_mode("auto") == ("bwrap", None)
        assert SandboxPolicy().refusal() is None
    else:
        with pytest.raises(ExecutionError, match="bwrap is unavailable"):
            resolve_mode("bwrap")
        assert resolve_mode("auto")[0] == "none"
        assert "refuses" not in (SandboxPolicy(mode="none").refusal() or "")
        assert "--sandbox=uid" in (SandboxPolicy().refusal() or "")


def test_leftover_task_directories_are_removed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    dead = work / "task-999999999-abc"  # no such pid
    (dead / "output").mkdir(parents=True)
    (dead / "output" / "f").write_text("x")
    (dead / "output").chmod(0o500)
    live = work / f"task-{os.getpid()}-live"
    live.mkdir()
    other = work / "keep-me"
    other.mkdir()
    assert clean_workdir(work) == 1
    assert not dead.exists() and live.exists() and other.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid mode needs a root node")
@pytest.mark.skipif(
    any(
        not os.access(p, os.X_OK) or not (os.stat(p).st_mode & 0o001)
        for p in Path(sys.base_prefix).parents
        if p != Path("/")
    ),
    reason="the interpreter's prefix is not reachable by other uids here",
)
def test_uid_mode_runs_as_a_task_uid(tmp_path: Path, home: Path) -> None:
    store = MemoryBlockStore()
    result = _run(
        store,
        tmp_path,
        "import os\ndef main(ctx):\n    open(ctx.params['key'], 'rb').read()\n",
        params={"key": str(home / "keys" / "node.key")},
        mode="uid",
    )
    assert result.status == "failed" and "PermissionError" in (result.error or "")


def test_the_network_flag_is_part_of_the_function_cid() -> None:
    from cats_runtime.cas import CID
    from cats_runtime.errors import RecordError
    from cats_runtime.records import FunctionRecord

    code = CID.decode("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
    off = FunctionRecord(name="f", code=code, entrypoint="m:f", mode="batch", python="3.11")
    on = FunctionRecord(name="f", code=code, entrypoint="m:f", mode="batch", python="3.11", network=True)
    assert off.network is False and off.cid != on.cid
    assert FunctionRecord.decode(on.encode()).network is True
    obj = off.to_obj()
    del obj["network"]
    from cats_runtime.cas import _dagcbor

    with pytest.raises(RecordError, match="'network' is missing"):
        FunctionRecord.decode(_dagcbor.encode(obj))
