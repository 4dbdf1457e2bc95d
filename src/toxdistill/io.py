"""Atomic writes, crash-safe folder replacement and the run-folder lock.

Nothing is ever visible half-written, and a process killed at any moment (SIGKILL included) leaves one complete
copy of what it was replacing: ``recover_partial_writes``, which a run calls on start and ``atomic_dir`` calls
for its own folder, puts it back in place and removes the rest.

Temporary entries sit beside their final path, hidden, named ``.<name>.<pid>-<8 hex>.<kind>``: the pid says
which process owns the entry, so that no clean-up removes what a live process is still writing, and the kind
says what it holds:

- ``tmp``: being written, incomplete (a file or a folder);
- ``new``: a complete folder, about to replace ``<name>``;
- ``old``: the ``<name>`` it replaces, about to be removed;
- ``part``: ``toxdistill predict``'s output being written.

New files and folders get the permissions the umask gives (0666 / 0777 less the umask), as ``open`` and
``mkdir`` would, not ``tempfile``'s private 0600 / 0700.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from toxdistill.errors import ToxdistillError

log = logging.getLogger(__name__)

TEMP_KINDS = ("tmp", "new", "old", "part")
_TEMP = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?P<kind>tmp|new|old|part)$")
# What tempfile named them before the owner was part of the name: ``.<name>.<8 chars>.tmp|part``.
_LEGACY_TEMP = r"^\.{name}\.[a-z0-9_]{{8}}\.(tmp|part)$"
# O_BINARY: without it Windows' C runtime would turn every \n written through the descriptor into \r\n.
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (the teacher's weights are 440 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ temporary names
def temp_path(final: Path, kind: str = "tmp") -> Path:
    """A fresh temporary name beside ``final``, owned by this process."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"unknown temporary kind {kind!r}")
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def new_temp_file(final: Path, kind: str = "tmp") -> tuple[int, Path]:
    """Create a temporary file beside ``final`` (mode 0666 less the umask): its open descriptor and its path."""
    while True:
        path = temp_path(final, kind)
        try:
            return os.open(path, _NEW_FILE_FLAGS, 0o666), path
        except FileExistsError:  # 32 random bits: a clash is rare, never fatal
            continue


def new_temp_dir(final: Path, kind: str = "tmp") -> Path:
    """Create a temporary folder beside ``final`` (mode 0777 less the umask) and return it."""
    while True:
        path = temp_path(final, kind)
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue


def _owner_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this process counts). Windows has no cheap check that cannot kill
    (``os.kill`` terminates there): its entries count as orphaned, and the run lock, which every writer into
    a run folder holds, is what keeps a clean-up from a live writer's files."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


# ------------------------------------------------------------------ recovery of killed writers
def _leftovers(folder: Path, name: str | None, mine: bool) -> list[tuple[Path, str | None, str]]:
    """Orphaned temporary entries in ``folder`` (of ``name`` only, when given) as (path, base name, kind).

    Entries of a live process are left alone; ``mine`` counts this process's own as orphaned (``atomic_dir``
    undoing its own failed replacement)."""
    legacy = re.compile(_LEGACY_TEMP.format(name=re.escape(name))) if name is not None else None
    found: list[tuple[Path, str | None, str]] = []
    for p in folder.iterdir():
        n = p.name
        m = _TEMP.match(n)
        if m:
            pid = int(m["pid"])
            live = not mine if pid == os.getpid() else _owner_alive(pid)
            if not live and (name is None or m["base"] == name):
                found.append((p, m["base"], m["kind"]))
        elif n.startswith(".") and n.endswith(".old") and (name is None or (n == f".{name}.old" and p.is_dir())):
            # An older toxdistill's replaced folder. Only folders are restored: beside a predict output, a file of
            # that name is someone's backup and is left alone; in a run folder it is a leftover, as it always was.
            found.append((p, n[1:-4] if p.is_dir() else None, "old"))
        elif legacy is not None and legacy.match(n):
            found.append((p, name, "tmp"))
        elif name is None and n.startswith(".") and n.endswith(".tmp"):
            found.append((p, None, "tmp"))  # an older toxdistill's, or another writer's without an owner
    return found


def recover_partial_writes(folder: Path, name: str | None = None, mine: bool = False) -> None:
    """Undo what writers killed in ``folder`` left behind (only for the entry ``name``, when given).

    A missing entry gets back its newest complete copy: a replacement's ``new`` folder, else the ``old`` one it
    was replacing. Every other orphaned temporary entry is then removed: an entry is only ever deleted once its
    final path holds a complete copy, or when no complete copy of it ever existed (``tmp`` and ``part``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    items = _leftovers(folder, name, mine)
    keep: set[str] = set()
    for base in sorted({b for _, b, k in items if b is not None and k in ("new", "old")}):
        final = folder / base
        if final.exists() or final.is_symlink():
            continue
        copies = [p for p, b, k in items if b == base and k == "new"] or [
            p for p, b, k in items if b == base and k == "old"
        ]
        best = max(copies, key=lambda p: p.stat().st_mtime)
        try:
            os.replace(best, final)
            log.warning("restored %s from %s, left by a process that was stopped", final, best.name)
        except OSError as e:  # keep every copy of it rather than lose the last one
            log.warning("cannot restore %s from %s (%s); its copies are kept", final, best.name, e)
            keep.add(base)
    for p, of, _ in items:
        if of in keep or not (p.exists() or p.is_symlink()):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


# ------------------------------------------------------------------ atomic writes
def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(o):
    """``json.dumps``'s ``default`` for numpy values: scalars as their Python value, arrays as lists."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``final``.

    The replacement is a sequence of renames, each leaving one complete copy a recovery finds: the filled
    folder is renamed ``.new`` (complete), ``final`` to ``.old``, ``.new`` to ``final``, then ``.old`` goes.
    Killed after the first rename and before the third, ``final`` is missing and ``recover_partial_writes``
    puts the complete new copy there (the old one when no new one is complete). An error, Ctrl-C included,
    runs that recovery at once: ``final`` is then the old folder, or the new one if it was already moved in.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_partial_writes(final.parent, final.name)  # an earlier replacement of it, killed midway
    tmp = new_temp_dir(final)
    try:
        yield tmp
        _replace_dir(tmp, final)
    except BaseException:
        recover_partial_writes(final.parent, final.name, mine=True)
        raise


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete folder ``tmp`` to ``final``, through names a recovery understands (see ``atomic_dir``)."""
    stem = tmp.name[: -len("tmp")]
    new, old = tmp.with_name(stem + "new"), tmp.with_name(stem + "old")
    os.replace(tmp, new)  # from here on it is a complete copy
    if final.exists() or final.is_symlink():
        os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, final)


# ------------------------------------------------------------------ the run lock
@contextlib.contextmanager
def run_lock(run_dir: Path, fix: str = "wait for it to finish or use another --name") -> Iterator[None]:
    """One writer per run folder: an OS file lock (``filelock``) on ``run_dir/.lock``.

    The OS drops the lock when its process dies, however it dies, so a crashed run never blocks the next.
    ``.lock.pid`` names the holder for the message a second writer gets; ``fix`` is what that message advises.
    """
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / ".lock"), timeout=0)
    owner = run_dir / ".lock.pid"
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = f"process {int(owner.read_text().strip())}"
        except (OSError, ValueError):
            holder = "another process"
        raise ToxdistillError(f"run folder {run_dir} is in use by {holder}", fix) from None
    try:
        owner.write_text(str(os.getpid()))
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
