"""SIGKILL a run during teacher training and during distillation; the restarted run ends where an
uninterrupted one does."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toxdistill.files import FORMAT_VERSION, RUN_FILE

pytestmark = pytest.mark.integration

CONFIG = """
name: resume
data: {quick_rows: 1200}  # enough steps that the kill lands mid-stage even with a tiny teacher
teacher: {model: TEACHER, train: {epochs: 3, lr: 1.0e-4, batch_size: 16}}
train: {epochs: 3, lr: 1.0e-4, batch_size: 16}
# After the last stage: not where a run resumes, and results.json holds only the stages' scores (the checks and the
# frontier in a run: tests/test_integration.py).
robustness: {enabled: false}
frontier: {enabled: false}
threads: 2
eval_sets: []
stages:
  - {name: even, kind: distill, layers: even}
"""
# Measured on this machine, so they differ between runs; everything else must match.
TIMING_KEYS = {"throughput_sps", "train_runtime_s"}


def _cmd(cfg: Path, out: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "toxdistill.cli",
        "run",
        "--quick",
        "--config",
        str(cfg),
        "--output-dir",
        str(out),
        "--name",
        name,
    ]


def _run_here(cmd: list[str], capsys) -> str:
    """The command's run in this process; returns what it printed."""
    from toxdistill.cli import main

    capsys.readouterr()
    code = main(cmd[cmd.index("run") :])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    return printed.out


def _kill_when(proc: subprocess.Popen, ready, timeout=600) -> None:
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() - t0 < timeout
        time.sleep(0.05)
    # At once: the next epoch has begun (or its first checkpoint is still being written), and two
    # more epochs remain, so the stage cannot have finished.
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _checkpoint(work: Path):
    return lambda: any(work.glob("checkpoint-*/trainer_state.json"))


def _numbers(results: list[dict]) -> dict:
    out = {}
    for r in results:
        for k, v in r.items():
            if isinstance(v, (int, float)) and k not in TIMING_KEYS:
                out[f"{r['name']}.{k}"] = v
            elif isinstance(v, dict) and k in ("f1_per_class", "tuned"):
                out[f"{r['name']}.{k}"] = json.dumps(v, sort_keys=True)
    return out


def test_kill_and_resume_gives_the_same_results(tmp_path, real_data_env, tiny_model_dir, monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    # A tiny teacher: what is tested is where a killed run resumes, not what a model learns.
    cfg.write_text(CONFIG.replace("TEACHER", str(tiny_model_dir)))
    out = tmp_path / "runs"
    env = real_data_env
    quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # The runs that are not killed run in this process: a new interpreter costs more here than the run itself.
    monkeypatch.setenv("TOXDISTILL_DATA", env["TOXDISTILL_DATA"])
    _run_here(_cmd(cfg, out, "straight"), capsys)

    run_dir = out / "killed"
    p = subprocess.Popen(_cmd(cfg, out, "killed"), **quiet)
    _kill_when(p, _checkpoint(run_dir / "work" / "teacher"))
    assert not (run_dir / "models" / "teacher" / "toxdistill.json").exists()  # killed mid-teacher

    p = subprocess.Popen(_cmd(cfg, out, "killed"), **quiet)
    _kill_when(p, _checkpoint(run_dir / "work" / "even"))
    assert (run_dir / "models" / "teacher" / "toxdistill.json").exists()
    assert not (run_dir / "models" / "even" / "toxdistill.json").exists()  # killed mid-distillation

    assert "teacher: done already" in _run_here(_cmd(cfg, out, "killed"), capsys)  # the finished stage was kept

    a = _numbers(json.loads((out / "straight" / "results.json").read_text()))
    b = _numbers(json.loads((run_dir / "results.json").read_text()))
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], str):
            assert a[k] == b[k], k
        else:
            assert b[k] == pytest.approx(a[k], abs=1e-6), k
    assert not list(run_dir.glob("**/.*.tmp"))
    assert json.loads((run_dir / RUN_FILE).read_text()) == {"format_version": FORMAT_VERSION}
