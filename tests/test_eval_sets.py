"""eval_sets in the config: each set is checked before any training (one line, exit 2), and the shipped
functional suite is the file its script writes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from toxdistill.cli import main
from toxdistill.config import EvalSetConfig, load_config
from toxdistill.errors import ToxdistillError
from toxdistill.pipeline.external import check_eval_set

from conftest import REPO

LABELS = ["hate speech", "offensive", "neither"]
MAP = {"hateful": ["hate speech"], "non-hateful": ["offensive", "neither"]}


def _set(tmp_path, body: str, name: str = "s.csv", **kw) -> EvalSetConfig:
    f = tmp_path / name
    f.write_text(body)
    return EvalSetConfig(name="s", path=str(f), label_map=MAP, **kw)


def test_a_good_set_passes_and_counts_its_rows(tmp_path):
    es = _set(tmp_path, "text,label,functionality\nyou are vermin,hateful,derogation\nhi,non-hateful,neutral\n")
    assert check_eval_set(es, LABELS) == 2


@pytest.mark.parametrize(
    "body, kw, words",
    [
        ("text,label\na,hateful\nb,sarcastic\n", {}, ["'sarcastic'"]),
        ("tweet,label\na,hateful\n", {}, ["no column 'text'", "text_col"]),
        ("text,label\n", {}, ["no rows"]),
        ("text,label\na,hateful\n", {"group_col": "functionality"}, ["no column 'functionality'", "group_col"]),
    ],
    ids=["unmapped label", "no text column", "empty", "no group column"],
)
def test_a_bad_set_is_one_line_naming_the_set(tmp_path, body, kw, words):
    es = _set(tmp_path, body, **kw)
    with pytest.raises(ToxdistillError) as e:
        check_eval_set(es, LABELS)
    msg = str(e.value)
    assert msg.startswith("eval set 's'") and "\n" not in msg
    assert all(w in msg for w in words), msg


def test_a_missing_file_is_one_line(tmp_path):
    es = EvalSetConfig(name="s", path=str(tmp_path / "nope.csv"), label_map=MAP)
    with pytest.raises(ToxdistillError, match="eval set 's'.*not found"):
        check_eval_set(es, LABELS)


def test_run_stops_before_training_on_a_bad_eval_set(tmp_path, capsys):
    data = tmp_path / "ok.csv"
    data.write_text("tweet,class\n" + "\n".join(f"text {i},{i % 3}" for i in range(30)) + "\n")
    (tmp_path / "set.csv").write_text("text,label\na,hateful\nb,sarcastic\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("baseline: false\neval_sets:\n  - {name: fs, path: set.csv, label_map: {hateful: [hate speech]}}\n")
    code = main(["run", "--config", str(cfg), "--data", str(data), "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "eval set 'fs'" in err[0] and "'sarcastic'" in err[0], err
    assert not (tmp_path / "runs" / "davidson-minilm" / "models").exists()  # nothing was trained


def test_a_relative_path_is_found_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "set.csv").write_text("text,label\na,hateful\n")
    (tmp_path / "cfg" / "c.yaml").write_text("eval_sets:\n  - {name: fs, path: set.csv}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "cfg" / "c.yaml")
    assert cfg.eval_sets[0].path == str((tmp_path / "cfg" / "set.csv").resolve())


def test_eval_set_names_are_unique(tmp_path):
    (tmp_path / "c.yaml").write_text("eval_sets:\n  - {name: a, path: x.csv}\n  - {name: a, path: y.csv}\n")
    with pytest.raises(ToxdistillError, match="unique"):
        load_config(tmp_path / "c.yaml")


def test_unknown_perturbation_kinds_in_the_config_list_the_valid_ones(tmp_path):
    (tmp_path / "c.yaml").write_text("train: {perturb: 0.3, perturb_kinds: [leet, l33t]}\n")
    with pytest.raises(ToxdistillError) as e:
        load_config(tmp_path / "c.yaml")
    assert "'l33t'" in str(e.value) and "homoglyph" in str(e.value) and "emoji" in str(e.value)
    (tmp_path / "c.yaml").write_text("robustness: {kinds: [nope]}\n")
    with pytest.raises(ToxdistillError, match="valid kinds"):
        load_config(tmp_path / "c.yaml")


def test_the_shipped_functional_suite_is_what_its_script_writes():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "functional_suite.py"), "--check"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()


def test_the_default_config_scores_the_functional_suite_on_every_class():
    cfg = load_config(None)
    [es] = cfg.eval_sets
    assert check_eval_set(es, cfg.data.label_names) > 300
