"""The run-folder format: reading a model's metadata and training settings, and finding a run's models.

One module for what every layer reads from a run folder (report, evaluate, export, bench, serve), so that
no layer has to borrow it from another. It sits just above ``config``: it imports nothing but the config,
the file names (``files``) and the errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from toxdistill.config import CleanConfig, Config, load_config
from toxdistill.errors import ToxdistillError
from toxdistill.files import (
    BASELINE_FILES,
    BEST_DIR,
    CONFIG_FILE,
    EXPORT_DIR,
    FORMAT_VERSION,
    META_FILE,
    MODELS_DIR,
    RUN_FILE,
    SPLIT_FILE,
    TEACHER_SCORES,
)
from toxdistill.io import atomic_write_json, run_lock

log = logging.getLogger(__name__)

# Beside a shipped RUN/best/ export: why it was chosen (the frontier's selection block) and its frontier row.
SELECTION_FILE = "selection.json"


# What a command that reads a run folder suggests when it cannot: a new run writes the current format.
RERUN = "run 'toxdistill run' again into a new folder (--name NEW)"


def write_run_format(run_dir: Path) -> None:
    """Record in ``RUN/run.json`` the run-folder format this toxdistill writes."""
    atomic_write_json(Path(run_dir) / RUN_FILE, {"format_version": FORMAT_VERSION})


def check_run_format(run_dir: Path, fix: str = RERUN) -> None:
    """One line for a run folder of a format this toxdistill cannot read: a newer one, an unknown one, or none
    recorded in a folder that holds a run's results (a split or a finished model), which one written before run
    folders recorded their format does. A folder without results yet is fine: a run records its format when it
    starts."""
    run_dir = Path(run_dir)
    f = run_dir / RUN_FILE
    if not f.is_file():
        if (run_dir / SPLIT_FILE).is_file() or any((run_dir / MODELS_DIR).glob(f"*/{META_FILE}")):
            raise ToxdistillError(
                f"run folder {run_dir} records no format version ({RUN_FILE}): an older toxdistill wrote it", fix
            )
        return
    try:
        version = json.loads(f.read_text()).get("format_version")
    except (json.JSONDecodeError, AttributeError):
        version = None
    if version == FORMAT_VERSION:
        return
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ToxdistillError(
            f"run folder {run_dir} has format version {version}; this toxdistill reads version {FORMAT_VERSION}",
            "upgrade toxdistill (pip install -U toxdistill)",
        )
    raise ToxdistillError(f"run folder {run_dir}: {f.name} has no format version this toxdistill knows", fix)


def load_run_config(run_dir: Path) -> Config:
    """A run folder's saved config, once its format is one this toxdistill reads."""
    check_run_format(run_dir)
    return load_config(Path(run_dir) / CONFIG_FILE)


def run_folder_of(path: Path) -> Path | None:
    """The run folder that ``path`` is or sits in (``RUN``, ``RUN/models``, ``RUN/models/<m>``, ``RUN/export/<m>``),
    or None for a folder outside any run."""
    path = Path(path).resolve()
    if (path / CONFIG_FILE).is_file():
        return path
    if path.name == MODELS_DIR and (path.parent / CONFIG_FILE).is_file():
        return path.parent
    if path.parent.name in (MODELS_DIR, EXPORT_DIR) and (path.parent.parent / CONFIG_FILE).is_file():
        return path.parent.parent
    return None


@contextlib.contextmanager
def run_folders_locked(*paths: str | Path | None) -> Iterator[list[Path]]:
    """Hold the lock of every run folder that ``paths`` are or sit in (``run_folder_of``), as ``toxdistill run``
    holds its own: a command that writes into a run folder (export, bench, frontier) then never mixes its files
    with a run's, and a run starting meanwhile is refused instead of clearing the command's temporary folders.
    Another holder is one line (``ToxdistillError``), at once: nothing waits."""
    runs = sorted({r for p in paths if p is not None and (r := run_folder_of(Path(p))) is not None})
    with contextlib.ExitStack() as stack:
        for run in runs:
            stack.enter_context(run_lock(run, fix="wait for it to finish, then run this command again"))
        yield runs


def read_meta(model_dir: Path) -> dict:
    """A model folder's ``toxdistill.json``, or ``{}`` when it has none (a plain ``save_pretrained`` folder)."""
    f = Path(model_dir) / META_FILE
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError:
            raise ToxdistillError(f"{f} is not valid JSON", "re-export or retrain the model") from None
    return {}


def find_clean_config(model_dir: Path, meta: dict | None = None) -> CleanConfig | None:
    """The ``data.clean`` settings the model was trained with: from its metadata (exports record it),
    else from the run's config.yaml when the folder sits in ``runs/<name>/models|export/``."""
    raw = (meta or {}).get("clean") or ((meta or {}).get("export") or {}).get("clean")
    if isinstance(raw, dict):
        try:
            return CleanConfig.model_validate(raw)
        except ValueError:
            log.warning("ignoring unreadable clean settings in %s", model_dir)
    model_dir = Path(model_dir).resolve()
    run_cfg = model_dir.parent.parent / CONFIG_FILE
    if model_dir.parent.name in (MODELS_DIR, EXPORT_DIR) and run_cfg.is_file():
        check_run_format(run_cfg.parent)  # a folder of an unknown format is refused, not read as unclean
        try:
            return load_config(run_cfg).data.clean
        except ToxdistillError:
            log.warning("cannot read %s; texts are not cleaned", run_cfg)
    return None


def is_baseline_folder(folder: Path) -> bool:
    """The TF-IDF baseline's folder (vocabulary + weights), as opposed to a transformers folder."""
    return all((Path(folder) / f).is_file() for f in BASELINE_FILES) and not (Path(folder) / "config.json").is_file()


def is_transformer(folder: Path) -> bool:
    """A transformers folder (config + safetensors), as opposed to the TF-IDF baseline."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def read_selection(folder: Path) -> dict:
    """A shipped ``best/`` folder's ``selection.json`` (``{"selection": ..., "row": ...}``), or ``{}`` for any
    other folder."""
    f = Path(folder) / SELECTION_FILE
    if not f.is_file():
        return {}
    try:
        out = json.loads(f.read_text())
    except json.JSONDecodeError:
        raise ToxdistillError(f"{f} is not valid JSON", "run the frontier step again to rewrite best/") from None
    return out if isinstance(out, dict) else {}


def shipped_best(path: str | Path) -> Path | None:
    """The run's finished ``best/`` folder for a run folder or its ``models/`` folder, else None."""
    path = Path(path)
    run = path.parent if path.name == MODELS_DIR else path if (path / MODELS_DIR).is_dir() else None
    best = run / BEST_DIR if run is not None else None
    return best if best is not None and (best / META_FILE).is_file() else None


def find_models(path: str | Path, transformers_only: bool = False, best: bool = False) -> dict[str, Path]:
    """Finished model folders by name: ``runs/<name>/models/*``, a bare models folder, or one model folder.

    A folder counts once it has its ``toxdistill.json``, which is written last. Hidden folders are
    ``atomic_dir``'s unfinished or replaced copies and never count. With ``best`` (what serving asks for),
    the run's shipped ``best/`` comes first, named ``best``; evaluation, checks and the bench leave it out,
    as it is a copy of one of the run's exports.
    """
    path = Path(path)
    if not path.is_dir():
        raise ToxdistillError(
            f"run folder not found: {path}", "give a folder written by 'toxdistill run', e.g. runs/<name>"
        )
    run = run_folder_of(path)
    if run is not None:
        check_run_format(run)
    if (path / META_FILE).is_file():
        found = {path.name: path}
    else:
        root = path / MODELS_DIR if (path / MODELS_DIR).is_dir() else path
        found = {
            d.name: d
            for d in sorted(root.iterdir())
            if d.is_dir()
            and not d.name.startswith(".")
            and (d / META_FILE).is_file()
            and TEACHER_SCORES not in read_meta(d)  # a scores teacher's record: nothing to load
        }
    shipped = shipped_best(path) if best else None
    if shipped is not None:
        if BEST_DIR in found:
            log.warning("a model named %s hides the run's shipped %s", BEST_DIR, shipped)
        else:
            found = {BEST_DIR: shipped, **found}
    if transformers_only:
        found = {n: d for n, d in found.items() if is_transformer(d)}
    if not found:
        what = "transformer models" if transformers_only else "models"
        raise ToxdistillError(
            f"no {what} in {path} (no model folder with a {META_FILE})",
            "finish a 'toxdistill run' first, or point at runs/<name>",
        )
    return found


def select_models(found: dict[str, Path], names: str | Sequence[str] | None) -> dict[str, Path]:
    """Keep the named models (comma list or sequence), in the order given; unknown names are an error."""
    if not names:
        return found
    wanted = names.split(",") if isinstance(names, str) else list(names)
    wanted = list(dict.fromkeys(n.strip() for n in wanted if n and n.strip()))
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ToxdistillError(f"no model named {', '.join(missing)} in this run", f"pick from: {', '.join(found)}")
    return {n: found[n] for n in wanted}


def run_dir_of(model_dir: Path) -> Path | None:
    """``runs/<name>`` for a model in ``runs/<name>/models/<m>`` (or ``export/<m>``), else None."""
    model_dir = Path(model_dir)
    if model_dir.name in ("", ".", ".."):
        model_dir = model_dir.resolve()
    run = model_dir.parent.parent
    if model_dir.parent.name in (MODELS_DIR, EXPORT_DIR) and (run / CONFIG_FILE).is_file():
        check_run_format(run)
        return run
    return None
