"""A run folder's models: found once, the same way for report, evaluate, serve and bench."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toxdistill.errors import ToxdistillError
from toxdistill.inference.predict import META_FILE


def is_transformer(folder: Path) -> bool:
    """A transformers folder (config + safetensors), as opposed to the TF-IDF baseline."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def find_models(path: str | Path, transformers_only: bool = False) -> dict[str, Path]:
    """Finished model folders by name: ``runs/<name>/models/*``, a bare models folder, or one model folder.

    A folder counts once it has its ``toxdistill.json``, which is written last. Hidden folders are
    ``atomic_dir``'s unfinished or replaced copies and never count.
    """
    path = Path(path)
    if not path.is_dir():
        raise ToxdistillError(
            f"run folder not found: {path}", "give a folder written by 'toxdistill run', e.g. runs/<name>"
        )
    if (path / META_FILE).is_file():
        found = {path.name: path}
    else:
        root = path / "models" if (path / "models").is_dir() else path
        found = {
            d.name: d
            for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(".") and (d / META_FILE).is_file()
        }
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
    if model_dir.parent.name in ("models", "export") and (run / "config.yaml").is_file():
        return run
    return None
