"""The bad-input matrix: every case exits non-zero with one stderr line that names the problem and the
fix, prints no traceback, and changes no file that existed before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from toxdistill.cli import main

from conftest import LABELS, make_tiny_run, tiny_bert


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer) -> Path:
    """Every file the cases need, built once: data files, configs, model folders, a run."""
    w = tmp_path_factory.mktemp("world")
    ok_rows = "\n".join(f"some text {i},{i % 3}" for i in range(30))
    (w / "ok.csv").write_text(f"tweet,class\n{ok_rows}\n")
    (w / "empty.csv").write_text("")
    (w / "binary.csv").write_bytes(b"\x00\x01\xff\xfe" * 64)
    (w / "latin1.csv").write_bytes("tweet,class\ncaf\xe9 cr\xe8me,1\n".encode("latin-1"))
    (w / "cols.csv").write_text("text,label\nhello,1\n")
    (w / "labels.csv").write_text("tweet,class\nhello,9\n")
    (w / "nan.csv").write_text("tweet,class\n,1\n,2\n")
    (w / "texts.txt").write_text("hello\nworld\n")
    (w / "ext.csv").write_text("text,label\nhello,mystery\n")
    (w / "a_file").write_text("not a folder")
    (w / "bad.yaml").write_text("teacher: [unclosed\n")
    (w / "unknown.yaml").write_text("baseline: false\nno_such_key: 1\n")
    (w / "types.yaml").write_text("baseline: false\nseed: not-a-number\n")
    (w / "layers.yaml").write_text("baseline: false\nstages: [{name: s, kind: distill, layers: [9]}]\n")
    # A 3-layer teacher cannot be split into odd and even halves of the same depth.
    odd_teacher = w / "three-layer"
    tiny_bert(n_layers=3).save_pretrained(odd_teacher)
    tokenizer.save_pretrained(odd_teacher)
    (w / "oddsize.yaml").write_text(
        f"baseline: false\nteacher: {{model: {odd_teacher}}}\nstages: [{{name: s, kind: distill, layers: odd}}]\n"
    )
    (w / "noteacher.yaml").write_text("baseline: false\nteacher: {model: ./no/such/teacher}\n")

    good = w / "good-model"
    tiny_bert(n_layers=2).save_pretrained(good)
    tokenizer.save_pretrained(good)
    (good / "toxdistill.json").write_text(json.dumps({"name": "good", "label_names": LABELS, "max_length": 64}))

    truncated = w / "truncated-model"
    tiny_bert(n_layers=2).save_pretrained(truncated)
    tokenizer.save_pretrained(truncated)
    st = truncated / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 3])

    # The model knows 1,000 tokens but its tokenizer can emit 30,522: ids past 999 would index garbage.
    from transformers import BertConfig, BertForSequenceClassification

    mismatched = w / "mismatched-model"
    BertForSequenceClassification(
        BertConfig(
            vocab_size=1000,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=3,
        )
    ).save_pretrained(mismatched)
    tokenizer.save_pretrained(mismatched)

    noweights = w / "noweights-model"
    noweights.mkdir()
    (noweights / "config.json").write_text(json.dumps({"model_type": "bert"}))

    make_tiny_run(w, tokenizer, names=("teacher", "odd"))  # -> w / "tiny-run"
    (w / "empty-run" / "models").mkdir(parents=True)
    bad_run = w / "bad-run" / "models" / "teacher"
    bad_run.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(truncated, bad_run)
    (bad_run / "toxdistill.json").write_text(json.dumps({"name": "teacher", "kind": "teacher", "label_names": LABELS}))

    (w / "existing-out.csv").write_text("previous results, keep me\n")
    return w


RUN = ["run", "--output-dir", "{w}/runs", "--name", "r"]

CASES: dict[str, tuple[list[str], str]] = {
    # ---- run: data
    "run: data missing": (RUN + ["--data", "{w}/nope.csv"], "not found"),
    "run: data empty": (RUN + ["--data", "{w}/empty.csv"], "empty"),
    "run: data binary": (RUN + ["--data", "{w}/binary.csv"], "binary"),
    "run: data wrong encoding": (RUN + ["--data", "{w}/latin1.csv"], "UTF-8"),
    "run: data wrong columns": (RUN + ["--data", "{w}/cols.csv"], "no column"),
    "run: data bad labels": (RUN + ["--data", "{w}/labels.csv"], "outside classes"),
    "run: data NaN texts": (RUN + ["--data", "{w}/nan.csv"], "every text is empty"),
    # ---- run: configs
    "run: config invalid YAML": (RUN + ["--config", "{w}/bad.yaml", "--data", "{w}/ok.csv"], "not valid YAML"),
    "run: config unknown key": (RUN + ["--config", "{w}/unknown.yaml", "--data", "{w}/ok.csv"], "unknown key"),
    "run: config wrong type": (RUN + ["--config", "{w}/types.yaml", "--data", "{w}/ok.csv"], "seed"),
    "run: config layer out of range": (RUN + ["--config", "{w}/layers.yaml", "--data", "{w}/ok.csv"], "out of range"),
    "run: config odd/even on odd-sized teacher": (
        RUN + ["--config", "{w}/oddsize.yaml", "--data", "{w}/ok.csv"],
        "even number",
    ),
    "run: config missing config file": (RUN + ["--config", "{w}/none.yaml", "--data", "{w}/ok.csv"], "not found"),
    "run: zero seeds": (RUN + ["--seeds", "0", "--data", "{w}/ok.csv"], "at least 1"),
    # ---- run: model folders and outputs
    "run: teacher folder missing": (RUN + ["--config", "{w}/noteacher.yaml", "--data", "{w}/ok.csv"], "not found"),
    "run: output dir unwritable": (
        ["run", "--output-dir", "{w}/a_file/runs", "--config", "{w}/unknown.yaml", "--data", "{w}/ok.csv"],
        "",
    ),
    # ---- evaluate
    "evaluate: run folder missing": (
        ["evaluate", "{w}/no-run", "--data", "{w}/ext.csv", "--map", "mystery=*"],
        "no-run",
    ),
    "evaluate: data missing column": (
        ["evaluate", "{w}/tiny-run", "--data", "{w}/ext.csv", "--text-col", "nope"],
        "nope",
    ),
    "evaluate: unmapped label": (["evaluate", "{w}/tiny-run", "--data", "{w}/ext.csv"], "mystery"),
    "evaluate: empty data": (["evaluate", "{w}/tiny-run", "--data", "{w}/empty.csv"], "empty"),
    # ---- check
    "check: run folder missing": (["check", "{w}/no-run"], "no-run"),
    "check: not a run folder": (["check", "{w}/empty-run"], "not a run folder"),
    "check: unknown perturbation kind": (["check", "{w}/tiny-run", "--kinds", "leet,l33t"], "valid kinds: leet"),
    "check: zero words": (["check", "{w}/tiny-run", "--words", "0"], "at least 1"),
    # ---- frontier
    "frontier: run folder missing": (["frontier", "{w}/no-run"], "no-run"),
    "frontier: run without models": (["frontier", "{w}/empty-run"], "not a finished run folder"),
    "frontier: negative tolerance": (["frontier", "{w}/tiny-run", "--max-drop-f1-macro", "-0.02"], "at least 0"),
    "frontier: run without a split": (["frontier", "{w}/tiny-run"], "split.json"),
    # ---- predict
    "predict: model folder missing": (
        ["predict", "{w}/no-model", "{w}/texts.txt", "-o", "{w}/existing-out.csv"],
        "no-model",
    ),
    "predict: truncated safetensors": (
        ["predict", "{w}/truncated-model", "{w}/texts.txt", "-o", "{w}/existing-out.csv"],
        "",
    ),
    "predict: mismatched tokenizer": (
        ["predict", "{w}/mismatched-model", "{w}/texts.txt", "-o", "{w}/existing-out.csv"],
        "tokenizer",
    ),
    "predict: input empty": (["predict", "{w}/good-model", "{w}/empty.csv", "-o", "{w}/existing-out.csv"], "empty"),
    "predict: input binary": (["predict", "{w}/good-model", "{w}/binary.csv", "-o", "{w}/existing-out.csv"], ""),
    "predict: input missing column": (
        ["predict", "{w}/good-model", "{w}/ok.csv", "--text-col", "nope", "-o", "{w}/existing-out.csv"],
        "nope",
    ),
    "predict: input missing": (["predict", "{w}/good-model", "{w}/none.txt", "-o", "{w}/existing-out.csv"], ""),
    "predict: output unwritable": (["predict", "{w}/good-model", "{w}/texts.txt", "-o", "{w}/a_file/out.csv"], ""),
    # ---- export
    "export: model folder missing": (["export", "{w}/no-model", "-o", "{w}/exp1"], "no-model"),
    "export: truncated safetensors": (["export", "{w}/truncated-model", "-o", "{w}/exp2"], ""),
    "export: folder without weights": (["export", "{w}/noweights-model", "-o", "{w}/exp3"], ""),
    "export: output unwritable": (["export", "{w}/good-model", "-o", "{w}/a_file/exp"], ""),
    # ---- serve
    "serve: folder with no models": (["serve", "{w}/empty-run", "--port", "0"], "no models"),
    "serve: folder missing": (["serve", "{w}/no-run", "--port", "0"], ""),
    "serve: truncated safetensors": (["serve", "{w}/bad-run", "--port", "0"], ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, world, capsys):
    argv, must_say = CASES[case]
    argv = [a.format(w=world) for a in argv]
    before = _digest(world)
    code = main(argv)
    captured = capsys.readouterr()
    err = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert code != 0, f"{case}: exit 0"
    assert len(err) == 1, f"{case}: stderr has {len(err)} lines: {err[:5]}"
    assert err[0].startswith("toxdistill: error:"), err[0]
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert must_say.lower() in err[0].lower(), err[0]
    # The message names a fix, not only the problem: "problem — fix".
    assert " — " in err[0] or "use " in err[0] or "pass " in err[0] or "give " in err[0], err[0]
    after = _digest(world)
    changed = [k for k in before if before[k] != after.get(k)]
    assert not changed, f"{case}: changed {changed}"


def test_every_command_has_bad_input_cases():
    """A command added to the CLI without cases here fails this test, not silently skips the matrix."""
    from toxdistill.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = set(sub.choices) - {"bench"}  # bench's bad inputs are in tests/test_export.py
    covered = {argv[0] for argv, _ in CASES.values()}
    assert commands <= covered, commands - covered
