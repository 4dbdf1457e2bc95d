"""Run folders survive killed writers: crash-safe folder replacement and its recovery (``io``), the run lock taken
by every command that writes into a run, permissions from the umask, and the bounded line reader."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toxdistill.cli import main
from toxdistill.errors import ToxdistillError
from toxdistill.io import atomic_dir, atomic_write_text, recover_partial_writes, run_lock

SRC = Path(__file__).resolve().parents[1] / "src"

# A process that fills atomic_dir(X) with a new copy and is killed (os._exit: no clean-up, like SIGKILL) just before
# its k-th rename or removal; k = 0: while it is still writing the copy.
_KILLED_WRITER = """
import os, shutil, sys
from pathlib import Path
import toxdistill.io as tio

final, k, calls = Path(sys.argv[1]), int(sys.argv[2]), [0]

def killed_at_step(f):
    def step(*a, **kw):
        calls[0] += 1
        if calls[0] == k:
            os._exit(9)
        return f(*a, **kw)
    return step

os.replace, shutil.rmtree = killed_at_step(os.replace), killed_at_step(shutil.rmtree)
with tio.atomic_dir(final) as tmp:
    (tmp / "a.txt").write_text("new")
    if k == 0:
        os._exit(9)
    (tmp / "b.txt").write_text("new")
"""


def _copy(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _kill_writer(final: Path, k: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(final), str(k)], env=env).returncode


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# Steps with an old copy: 1 filled -> .new, 2 X -> .old, 3 .new -> X, 4 remove .old; 5: never killed.
# After the recovery: the old copy while X was not yet moved away, the new one from then on.
@pytest.mark.parametrize("k, kept", [(0, "old"), (1, "old"), (2, "old"), (3, "new"), (4, "new"), (5, "new")])
def test_a_replacement_killed_at_any_step_leaves_one_complete_copy(tmp_path, k, kept):
    final = tmp_path / "models" / "odd"
    final.mkdir(parents=True)
    (final / "a.txt").write_text("old")
    (final / "b.txt").write_text("old")
    assert _kill_writer(final, k) == (0 if k == 5 else 9)
    recover_partial_writes(final.parent)  # what a restarted run does first
    assert _copy(final) == {"a.txt": kept, "b.txt": kept}
    assert _hidden(final.parent) == []


# Without an old copy: 1 filled -> .new, 2 .new -> X. Killed before the copy was complete, there is none to keep.
@pytest.mark.parametrize("k, kept", [(0, None), (1, None), (2, "new"), (3, "new")])
def test_a_first_write_killed_at_any_step_leaves_a_complete_copy_or_none(tmp_path, k, kept):
    final = tmp_path / "odd"
    _kill_writer(final, k)
    recover_partial_writes(tmp_path)
    assert (_copy(final) if final.exists() else None) == (None if kept is None else {"a.txt": kept, "b.txt": kept})
    assert _hidden(tmp_path) == []


def test_the_next_atomic_dir_recovers_a_killed_replacement_of_its_folder(tmp_path):
    final = tmp_path / "odd"
    final.mkdir()
    (final / "a.txt").write_text("old")
    _kill_writer(final, 3)  # killed with X moved away and the complete new copy beside it
    assert not final.exists()
    with atomic_dir(final) as tmp:  # a writer outside any run: its own folder is put right first
        assert _copy(final) == {"a.txt": "new", "b.txt": "new"}
        (tmp / "c.txt").write_text("newer")
    assert _copy(final) == {"c.txt": "newer"} and _hidden(tmp_path) == []


@pytest.mark.parametrize("k", [1, 2, 3])
def test_an_error_at_any_step_of_the_replacement_leaves_one_complete_copy(tmp_path, monkeypatch, k):
    import toxdistill.io as tio

    final = tmp_path / "odd"
    final.mkdir()
    (final / "a.txt").write_text("old")
    calls, real = [0], os.replace

    def interrupted_at_step(*a):
        calls[0] += 1
        if calls[0] == k:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(tio.os, "replace", interrupted_at_step)
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("new")
    monkeypatch.setattr(tio.os, "replace", real)
    assert _copy(final) == {"a.txt": "old" if k < 3 else "new"}  # before step 3 X was never moved away
    assert _hidden(tmp_path) == []


def test_an_older_toxdistills_killed_replacement_is_restored(tmp_path):
    # What the two-rename replacement left when killed between its renames: no X, the old copy and the new one.
    old, new = tmp_path / ".odd.old", tmp_path / ".odd.k3x9_q2z.tmp"
    for d, text in ((old, "old"), (new, "new")):
        d.mkdir()
        (d / "a.txt").write_text(text)
    recover_partial_writes(tmp_path)
    assert _copy(tmp_path / "odd") == {"a.txt": "old"} and _hidden(tmp_path) == []


def test_the_clean_up_keeps_what_a_live_process_writes(tmp_path):
    live, dead = os.getppid(), _dead_pid()
    for pid, name in ((live, "odd"), (dead, "odd"), (dead, "even")):
        (tmp_path / f".{name}.{pid}-0123abcd.tmp").mkdir()
    (tmp_path / f".report.md.{dead}-0123abcd.tmp").write_text("half")
    (tmp_path / ".frontier.png.tmp").write_text("half")  # a writer that names no owner
    recover_partial_writes(tmp_path)
    assert _hidden(tmp_path) == [f".odd.{live}-0123abcd.tmp"]


def test_the_runs_start_up_clean_up_restores_models_and_keeps_live_temp_folders(tmp_path):
    from toxdistill.pipeline.plan import _remove_partial_writes

    run = tmp_path / "run"
    dead, live = _dead_pid(), os.getppid()
    new = run / "models" / f".odd.{dead}-0123abcd.new"  # killed between moving the old odd away and the new in
    new.mkdir(parents=True)
    (new / "toxdistill.json").write_text("{}")
    (run / "models" / f".odd.{dead}-0123abcd.old").mkdir()
    exporting = run / "export" / f".odd-onnx.{live}-0123abcd.tmp"  # an export still running
    exporting.mkdir(parents=True)
    stale = run / "seeds" / "seed43" / f".odd.{dead}-0123abcd.tmp"
    stale.mkdir(parents=True)
    _remove_partial_writes(run)
    assert (run / "models" / "odd" / "toxdistill.json").is_file() and _hidden(run / "models") == []
    assert exporting.is_dir() and not stale.exists()


# ------------------------------------------------------------------ the run lock
@pytest.fixture
def busy_run(tmp_path):
    run = tmp_path / "run"
    (run / "models" / "odd").mkdir(parents=True)
    (run / "config.yaml").write_text("name: run\n")
    with run_lock(run):  # what `toxdistill run` holds while it works
        yield run


@pytest.mark.parametrize("command", ["export", "bench", "frontier", "check", "evaluate"])
def test_commands_that_write_into_a_run_refuse_it_while_it_is_in_use(busy_run, command, capsys):
    if command == "export":
        pytest.importorskip("onnxruntime")
    target = busy_run / "models" / "odd" if command == "export" else busy_run
    extra = ["--data", str(busy_run / "labelled.csv")] if command == "evaluate" else []
    code = main([command, str(target), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"run folder {busy_run.resolve()} is in use by process {os.getpid()}" in err[0]
    assert "run this command again" in err[0]
    assert _hidden(busy_run) == [".lock", ".lock.pid"]  # nothing written


def test_export_into_another_run_takes_that_runs_lock(busy_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    code = main(["export", str(tmp_path / "elsewhere"), "-o", str(busy_run / "export" / "odd-onnx")])
    assert code == 2 and "is in use by process" in capsys.readouterr().err


# ------------------------------------------------------------------ permissions from the umask
@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_get_the_umasks_permissions(tmp_path, umask):
    before = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(before)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask


# ------------------------------------------------------------------ bounded lines
class _Endless(io.RawIOBase):
    """A line without end: ``head`` then ``a`` for 64 MiB, counting what is read."""

    def __init__(self, head: bytes = b""):
        self.head, self.left, self.read_bytes = head, 64 << 20, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left + len(self.head))
        data = (self.head + b"a" * n)[:n]
        self.head, self.left = self.head[n:], self.left - max(0, n - len(self.head))
        b[:n] = data
        self.read_bytes += n
        return n


@pytest.mark.parametrize("fmt, head", [("txt", b"ok\n"), ("jsonl", b'{"text": "ok"}\n{"text": "'), ("csv", b"text\n")])
def test_a_line_over_the_limit_fails_after_the_limit_not_after_the_line(monkeypatch, fmt, head):
    from toxdistill.data.readers import MAX_LINE_BYTES, open_input, read_chunks

    stream = _Endless(head)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(stream)))
    src = open_input("-")
    with pytest.raises(ToxdistillError, match=r"input <stdin> line 2 is longer than 1 MiB — .*--max-line-bytes"):
        for _ in read_chunks(src, fmt, None, 4):
            pass
    assert stream.read_bytes < 2 * MAX_LINE_BYTES  # read up to about the limit, never the 64 MiB line


class _Trickle(io.RawIOBase):
    """``data`` ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.step, len(self.data))
        b[:n], self.data = self.data[:n], self.data[n:]
        return n


# step 6: line breaks, a \r\n's two bytes too, fall between reads; 64 KiB: the long line sits inside one read.
@pytest.mark.parametrize("step", [6, 1 << 16])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_numbers_count_every_kind_of_line_break_across_reads(monkeypatch, newline, step):
    from types import SimpleNamespace

    from toxdistill.data.readers import open_input, read_chunks

    data = newline.join([b"short"] * 9 + [b"x" * 41, b"tail"]) + newline
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=_Trickle(data, step)))
    with pytest.raises(ToxdistillError, match=r"line 10 is longer than 40 bytes"):
        list(read_chunks(open_input("-", max_line_bytes=40), "txt", None, 100))
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=_Trickle(data, step)))
    texts = [t for chunk, _ in read_chunks(open_input("-", max_line_bytes=41), "txt", None, 100) for t in chunk]
    assert texts == ["short"] * 9 + ["x" * 41, "tail"]


def test_the_servers_upload_refuses_a_long_line_as_predict_does():
    from toxdistill.serve.batch import BatchError, read_texts

    with pytest.raises(BatchError, match=r"upload big\.txt line 2 is longer than 1 MiB — split it into shorter texts$"):
        read_texts("big.txt", b"fine\n" + b"x" * ((1 << 20) + 1) + b"\n")
    assert read_texts("ok.txt", b"fine\n" + b"x" * (1 << 20) + b"\n")[0][1] == "x" * (1 << 20)
