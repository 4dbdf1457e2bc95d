"""RUN/best/: the frontier's chosen model, shipped as an exported folder with a model card.

``write_best`` copies the export of the row that ``frontier.json``'s selection names to ``RUN/best/``, in one
rename (a later run replaces the folder whole), and adds what a user of the folder needs beside it:

- ``selection.json``: the selection block (rule, criteria, reason, fallback, whether it holds on test, the
  candidates the behaviour bound left out and those flagged for parting ways with the teacher), the chosen row,
  the CPU it was measured on, how its engine was chosen (the winner, the runners-up with their samples/s), the
  behaviour set and every candidate in short (speed, validation scores, behaviour fidelity), so tools
  (``toxdistill serve``) can tell why the model is there, how fast it ran and where;
- ``test_logits.npy``: this graph's logits on the run's test split, which the card's intervals come from (the
  frontier's own, saved in the export when it scored it; scored here only where they are missing);
- ``README.md``: the model card (``pipeline.model_card``).

An export that did not pass its parity checks is never shipped. When no candidate met the rule
(``selection.fallback``), the chosen row is the teacher's and best/ is the teacher's own export: the card says
why, in one line; that is not an error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from toxdistill import __version__
from toxdistill.config import Config
from toxdistill.console import Say, quiet
from toxdistill.data.dataset import Dataset
from toxdistill.data.split import Split, load_run_split
from toxdistill.errors import ToxdistillError
from toxdistill.evaluation.stats import bootstrap_ci, metric_table
from toxdistill.files import BEST_DIR, META_FILE, MODEL_CARD, TEACHER, TEST_LOGITS
from toxdistill.inference.predict import load_scorer
from toxdistill.io import atomic_dir, atomic_write_json, atomic_write_text
from toxdistill.pipeline.check import output_names
from toxdistill.pipeline.model_card import CardFacts, render_model_card
from toxdistill.runs import SELECTION_FILE, read_meta

N_BOOT = 1000  # resamples of the card's intervals, as the report's significance table


def chosen_row(frontier: dict) -> dict:
    """The frontier row that ``selection.model`` names."""
    name = (frontier.get("selection") or {}).get("model")
    rows = {r.get("model"): r for r in frontier.get("rows") or []}
    if name not in rows:
        raise ToxdistillError(
            f"the frontier's selection names {name!r}, which is not one of its rows ({', '.join(map(str, rows))})",
            "run the frontier step again",
        )
    return rows[name]


def check_parity(folder: Path, row: dict) -> None:
    """Refuse (one line) an export whose record lacks parity checks or failed any of them."""
    record = read_meta(folder).get("export") or {}
    blocks = record.get("parity") or {}
    failed = sorted(k for k, b in blocks.items() if not (isinstance(b, dict) and b.get("ok")))
    if not record or not blocks or failed or row.get("parity_passed") is False:
        what = f"failed {', '.join(failed)}" if failed else "has no passed parity check"
        raise ToxdistillError(
            f"will not ship {row.get('model')} ({row.get('export_dir')}): its export {what}",
            "re-export it with 'toxdistill export' (without --allow-drift), or change select: to pick another",
        )


def write_best(run_dir: Path, frontier: dict, cfg: Config, say: Say = quiet, split: Split | None = None) -> Path:
    """Ship the frontier's chosen model to ``run_dir/best/`` (see the module's docstring) and return the folder.

    ``split`` is the run's split (rebuilt from the run folder when not given): the card's test metrics and
    intervals are this graph's own, on its test rows.
    """
    run_dir = Path(run_dir)
    selection = frontier.get("selection") or {}
    row = chosen_row(frontier)
    src = run_dir / str(row.get("export_dir") or "")
    if not row.get("export_dir") or not (src / META_FILE).is_file():
        raise ToxdistillError(
            f"the chosen model's export {src} is missing or unfinished", "run the frontier step again"
        )
    check_parity(src, row)
    split = split if split is not None else load_run_split(run_dir)
    final = run_dir / BEST_DIR
    with atomic_dir(final) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        atomic_write_json(tmp / SELECTION_FILE, selection_record(frontier, row))
        logits = _test_logits(tmp, split.test, cfg.threads)
        k = len(split.test.label_names)
        focus = cfg.data.focus_index()
        # The bootstrap resamples one class per text; a multi-label card goes without intervals.
        ci = (
            {}
            if split.test.multi_label
            else bootstrap_ci(
                split.test.labels, logits.argmax(-1), metric_table(focus), n_boot=N_BOOT, seed=cfg.seed, n_classes=k
            )
        )
        facts = _facts(run_dir, final, frontier, row, cfg, split, read_meta(tmp), ci)
        atomic_write_text(tmp / MODEL_CARD, render_model_card(facts))
    why = "no candidate met the rule: the teacher's own export" if selection.get("fallback") else selection.get("rule")
    say(f"best: {row.get('model')} ({row.get('backend')}; {why}) → {final}, with its model card {MODEL_CARD}")
    return final


def selection_record(frontier: dict, row: dict) -> dict:
    """selection.json: the selection block and the chosen row (with its ``engine_choice``), the CPU it was
    measured on, and the engine in short: the winner's full-bench samples/s, the rule, and the runners-up with
    the samples/s of the screen that chose it."""
    choice = row.get("engine_choice") or {}
    runners_up = [
        {k: c.get(k) for k in ("backend", "samples_per_s", "ok")}
        for c in sorted(choice.get("candidates") or [], key=lambda c: -c["samples_per_s"])
        if c.get("backend") != row.get("backend")
    ]
    engine = {
        "chosen": row.get("backend"),
        "samples_per_s": row.get("samples_per_s"),
        "rule": choice.get("rule") or f"frontier.target {frontier.get('engine')}",
        "pinned": choice.get("pinned", True),
        "screen": choice.get("timing"),
        "runners_up": runners_up,
    }
    return {
        "selection": frontier.get("selection") or {},
        "row": row,
        "cpu": frontier.get("cpu"),
        "cpu_features": frontier.get("cpu_features"),
        "engine": engine,
        "behaviour_set": frontier.get("behaviour"),
        "candidates": [
            _candidate(r) for r in sorted(frontier.get("rows") or [], key=lambda r: r.get("samples_per_s") or 0)
        ],
    }


def _candidate(row: dict) -> dict:
    """A frontier row in short, for selection.json: speed, validation scores and fidelity to the teacher."""
    keys = ("model", "backend", "samples_per_s", "parity_passed", "val", "behaviour")
    return {k: row.get(k) for k in keys}


def _test_logits(folder: Path, test: Dataset, threads: int | None) -> np.ndarray:
    """This graph's logits on the test rows: the export's saved ones when they fit, else scored now (and saved)."""
    saved = folder / TEST_LOGITS
    k = len(test.label_names)
    if saved.is_file():
        logits = np.load(saved)
        if logits.shape == (len(test.texts), k):
            return logits
    # The split's texts are already cleaned, as Predictor.logits expects.
    logits, _ = load_scorer(folder, threads).logits(list(test.texts))
    np.save(saved, logits)
    return logits


def _facts(
    run_dir: Path, final: Path, frontier: dict, row: dict, cfg: Config, split: Split, meta: dict, ci: dict
) -> CardFacts:
    rows = frontier.get("rows") or []
    teacher = next((r for r in rows if r.get("kind") == TEACHER), None)
    bench = {k: v for k, v in frontier.items() if k not in ("rows", "selection")}
    return CardFacts(
        run_name=run_dir.resolve().name,
        folder=_shown(final),
        run_folder=_shown(run_dir),
        meta=meta,
        row=row,
        selection=frontier.get("selection") or {},
        bench=bench,
        teacher_row=teacher,
        # A teacher that is only scores has no model: the card names the checkpoint its students are made from.
        teacher_model=cfg.teacher.source_model(),
        data_source=cfg.data.source,
        data_name=Path(cfg.data.path).name if cfg.data.path else None,
        label_names=list(split.test.label_names),
        focus_class=split.test.label_names[cfg.data.focus_index()],
        split_sizes={"train": len(split.train.texts), "val": len(split.val.texts), "test": len(split.test.texts)},
        test_support=_support(split.test),
        seed=cfg.seed,
        ci=ci,
        n_boot=N_BOOT,
        robustness=robustness_line(run_dir, str(row.get("model")), str((teacher or {}).get("model") or TEACHER)),
        version=__version__,
    )


def _support(test: Dataset) -> list[int]:
    """Test rows per class, or per label the rows that have it (multi-label)."""
    if test.multi_label:
        return [int(x) for x in np.asarray(test.labels).sum(0)]
    return np.bincount(test.labels, minlength=len(test.label_names)).tolist()


def robustness_line(run_dir: Path, model: str, teacher: str) -> str | None:
    """One line from the run's ``robustness.json`` about ``model``, or None when the run has none for it."""
    f = run_dir / output_names("test")[0]
    if not f.is_file():
        return None
    try:
        r = json.loads(f.read_text())
    except json.JSONDecodeError:
        return None
    worst = (r.get("worst_char_drop") or {}).get(model)
    if worst is None:
        return None
    t_worst = (r.get("worst_char_drop") or {}).get(teacher)
    agree = ((r.get("clean") or {}).get(model) or {}).get("agreement")
    line = (
        f"On the test split with character-level perturbations (leetspeak, swapped or spaced letters, …), the "
        f"worst costs {100 * worst:.1f} macro-F1 points"
        + (f" (the teacher: {100 * t_worst:.1f})" if t_worst is not None and teacher != model else "")
    )
    if agree is not None:
        line += f"; on clean text it agrees with the teacher on {100 * agree:.1f}% of the tweets"
    return line + f" (measured on {model}'s torch weights; the run's report has the table)."


def _shown(path: Path) -> str:
    """``path`` as the card's commands write it: relative to the working folder when inside it, else absolute."""
    full, here = Path(path).resolve(), Path.cwd().resolve()
    return os.path.relpath(full, here) if full.is_relative_to(here) else str(full)
