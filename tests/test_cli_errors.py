"""Bad input to `toxdistill run`: one line on stderr, exit 2, no traceback, nothing damaged."""

import json
from pathlib import Path

import pytest

from toxdistill.cli import main
from toxdistill.runs import write_run_format


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _cfg(tmp_path, body=""):
    p = tmp_path / "c.yaml"
    p.write_text("baseline: false\n" + body)
    return p


CASES = {
    "missing data file": (["--data", "{tmp}/nope.csv"], "", "not found"),
    "binary data": (["--data", "{tmp}/bin.csv"], "", "binary"),
    "missing text column": (["--data", "{tmp}/cols.csv"], "", "no column 'tweet'"),
    "labels outside classes": (["--data", "{tmp}/labels.csv"], "", "outside classes"),
    "unknown config key": (["--data", "{tmp}/ok.csv"], "bogus: 1\n", "unknown key"),
    "invalid yaml": (["--data", "{tmp}/ok.csv"], "teacher: [\n", "not valid YAML"),
    "unreadable teacher path": (["--data", "{tmp}/ok.csv"], "teacher: {model: ./no/such/folder}\n", "not found"),
    "impossible layer set": (["--data", "{tmp}/ok.csv"], "stages: [{name: s, kind: distill, layers: []}]\n", "empty"),
    "unknown force stage": (["--data", "{tmp}/ok.csv", "--force", "nostage"], "", "is not a stage"),
}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\x00\xff\x00binary")
    (tmp_path / "cols.csv").write_text("text,class\nhello,1\n")
    (tmp_path / "labels.csv").write_text("tweet,class\nhello,7\n")
    (tmp_path / "ok.csv").write_text("tweet,class\n" + "\n".join(f"text {i},{i % 3}" for i in range(30)) + "\n")
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_run_bad_input(case, files, capsys):
    args, cfg_body, msg = CASES[case]
    args = [a.format(tmp=files) for a in args]
    cfg = _cfg(files, cfg_body)
    code, err = _run(["run", "--config", str(cfg), "--output-dir", str(files / "runs"), *args], capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("toxdistill: error:"), err
    assert msg in err[0]
    assert "Traceback" not in err[0]


def test_run_refuses_a_folder_made_with_another_config(files, capsys):
    run_dir = files / "runs" / "r"
    (run_dir / "models" / "teacher").mkdir(parents=True)
    keep = run_dir / "models" / "teacher" / "toxdistill.json"
    keep.write_text('{"precious": true}')
    (run_dir / "config.fingerprint").write_text("someotherconfig")
    write_run_format(run_dir)
    code, err = _run(
        [
            "run",
            "--config",
            str(_cfg(files)),
            "--output-dir",
            str(files / "runs"),
            "--name",
            "r",
            "--data",
            str(files / "ok.csv"),
        ],
        capsys,
    )
    assert code == 2 and "different data, seed or teacher config" in err[0] and "--force all" in err[0]
    assert keep.read_text() == '{"precious": true}'
    assert (run_dir / "config.fingerprint").read_text() == "someotherconfig"


def test_run_refuses_a_folder_in_use_and_takes_over_after_its_holder_dies(files, capsys):
    import os
    import subprocess
    import sys

    run_dir = files / "runs" / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from toxdistill.io import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    argv = ["run", "--config", str(_cfg(files)), "--output-dir", str(files / "runs"), "--name", "busy"]
    argv += ["--data", str(files / "ok.csv")]
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = _run(argv, capsys)
        assert code == 2 and f"in use by process {holder.pid}" in err[0]
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the OS releases the lock
        holder.wait()
    from toxdistill.io import run_lock

    with run_lock(run_dir):  # taken over at once
        assert (run_dir / ".lock.pid").read_text() == str(os.getpid())


def test_help_on_every_command(capsys):
    from toxdistill.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: toxdistill " + name in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_missing_data_message_says_how_to_provide(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TOXDISTILL_DATA", raising=False)
    monkeypatch.setenv("TOXDISTILL_CACHE", str(tmp_path / "cache"))
    import toxdistill.data.dataset as data

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    code, err = _run(["run", "--config", str(_cfg(tmp_path)), "--output-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "--data" in err[0] and "TOXDISTILL_DATA" in err[0]
    assert not Path(tmp_path / "cache" / "davidson" / "labeled_data.csv").exists()


def test_run_refuses_a_stage_trained_with_other_settings(files, capsys):
    run_dir = files / "runs" / "s"
    (run_dir / "models" / "odd").mkdir(parents=True)
    meta = run_dir / "models" / "odd" / "toxdistill.json"
    meta.write_text('{"name": "odd", "fingerprint": "from-an-older-lr"}')
    write_run_format(run_dir)
    code, err = _run(
        [
            "run",
            "--config",
            str(_cfg(files, "stages: [{name: odd, kind: distill, layers: odd}]\n")),
            "--output-dir",
            str(files / "runs"),
            "--name",
            "s",
            "--data",
            str(files / "ok.csv"),
        ],
        capsys,
    )
    assert code == 2 and "stage 'odd'" in err[0] and "--force odd" in err[0]
    assert "older-lr" in meta.read_text()


def test_run_refuses_a_seed_repeat_trained_with_other_settings(files, capsys):
    run_dir = files / "runs" / "s"
    (run_dir / "seeds" / "seed43" / "odd").mkdir(parents=True)
    meta = run_dir / "seeds" / "seed43" / "odd" / "toxdistill.json"
    meta.write_text('{"name": "odd", "fingerprint": "from-an-older-lr"}')
    argv = ["run", "--config", str(_cfg(files, "stages: [{name: odd, kind: distill, layers: odd}]\n"))]
    argv += ["--output-dir", str(files / "runs"), "--name", "s", "--data", str(files / "ok.csv"), "--seeds", "2"]
    code, err = _run(argv, capsys)
    assert code == 2 and "stage 'odd'" in err[0] and "seed43" in err[0] and "--force odd" in err[0]
    assert "older-lr" in meta.read_text()


def test_forcing_a_stage_drops_its_old_seed_repeats(files, monkeypatch):
    """`--force odd` without --seeds: seed folders of the old odd would otherwise sit in the Seed table."""
    from toxdistill.config import load_config
    from toxdistill.pipeline import plan, stages

    cfg = load_config(
        _cfg(files, "stages: [{name: odd, kind: distill, layers: odd}, {name: even, kind: distill, layers: even}]\n")
    )
    cfg = cfg.model_copy(update={"output_dir": str(files / "runs")})
    run_dir = files / "runs" / cfg.name
    teacher = run_dir / "models" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "toxdistill.json").write_text(
        json.dumps({"name": "teacher", "fingerprint": cfg.stage_fingerprint("teacher")})
    )
    for name in ("odd", "even"):
        (run_dir / "seeds" / "seed43" / name).mkdir(parents=True)
    write_run_format(run_dir)

    class Stop(Exception):
        pass

    def retrain(ctx, st):
        assert not (run_dir / "seeds" / "seed43" / "odd").exists()  # gone before the new odd trains
        raise Stop

    monkeypatch.setattr(stages, "stage_distill", retrain)
    with pytest.raises(Stop):
        plan.run(cfg, data_path=str(files / "ok.csv"), force=["odd"])
    assert (run_dir / "seeds" / "seed43" / "even").is_dir()  # not forced: kept


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "m", "in.txt", "-o", "out.csv", "--threads", "0"],
        ["evaluate", "run", "--data", "x.csv", "--threads", "0"],
        ["bench", "run", "--threads", "0"],
        ["serve", "run", "--threads", "0"],
        ["predict", "m", "in.txt", "-o", "out.csv", "--batch-size", "0"],
        ["evaluate", "run", "--data", "x.csv", "--batch-size", "-3"],
    ],
)
def test_shared_options_are_checked_the_same_way_everywhere(argv, capsys):
    code, err = _run(argv, capsys)
    flag, value = argv[-2], argv[-1]
    assert code == 2 and len(err) == 1
    assert f"{flag} {value} must be at least 1" in err[0] and f"toxdistill {argv[0]} --help" in err[0]
