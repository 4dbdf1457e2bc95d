"""Data: find the file, read it and clean it."""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toxdistill.config import CleanConfig, DataConfig
from toxdistill.data import frontend
from toxdistill.data.readers import read_frame, safe_text
from toxdistill.errors import ToxdistillError
from toxdistill.io import sha256_file

log = logging.getLogger(__name__)

DAVIDSON_URL = (
    "https://raw.githubusercontent.com/t-davidson/hate-speech-and-offensive-language/master/data/labeled_data.csv"
)
ENV_VAR = "TOXDISTILL_DATA"
HOW_TO_PROVIDE = (
    f"pass --data PATH/labeled_data.csv or set {ENV_VAR}; the file is the Davidson et al. 2017 "
    "labeled_data.csv (github.com/t-davidson/hate-speech-and-offensive-language)"
)


def cache_dir() -> Path:
    return Path(os.environ.get("TOXDISTILL_CACHE", Path.home() / ".cache" / "toxdistill"))


def resolve_data_path(cfg: DataConfig, cli_path: str | None = None, download: bool = True) -> Path:
    """--data, then $TOXDISTILL_DATA, then config path, then the cache, then a checked download."""
    for candidate, origin in ((cli_path, "--data"), (os.environ.get(ENV_VAR), ENV_VAR), (cfg.path, "config data.path")):
        if candidate:
            p = Path(candidate).expanduser()
            if not p.is_file():
                raise ToxdistillError(f"data file from {origin} not found: {p}", HOW_TO_PROVIDE)
            return p
    if cfg.source == "file":
        raise ToxdistillError("config data.source is 'file' but no path was given", HOW_TO_PROVIDE)
    cached = cache_dir() / "davidson" / "labeled_data.csv"
    if cached.is_file() and (cfg.sha256 is None or sha256_file(cached) == cfg.sha256):
        return cached
    if download:
        try:
            return _download(DAVIDSON_URL, cached, cfg.sha256)
        except OSError as e:
            raise ToxdistillError(
                f"could not download the Davidson data ({e.__class__.__name__})", HOW_TO_PROVIDE
            ) from None
    raise ToxdistillError("no data file found", HOW_TO_PROVIDE)


def _download(url: str, dest: Path, sha256: str | None) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
        f.write(r.read())
    got = sha256_file(tmp)
    if sha256 and got != sha256:
        tmp.unlink(missing_ok=True)
        raise ToxdistillError(f"downloaded data has sha256 {got[:12]}…, expected {sha256[:12]}…", HOW_TO_PROVIDE)
    os.replace(tmp, dest)
    return dest


@dataclass(frozen=True)
class CleanStep:
    """One regex step of ``clean_text``: where ``switch`` (a CleanConfig field) is on, ``pattern`` becomes
    ``repl``. Data, not code, so the model card's plain-Python snippet renders the very same steps."""

    switch: str
    pattern: str
    repl: str
    strip: bool = False  # then trim both ends


# The regex steps, in the order clean_text applies them (after the HTML unescaping, which is not a regex).
CLEAN_STEPS = (
    CleanStep("normalize_urls", r"https?://\S+|www\.\S+", "http"),
    CleanStep("normalize_mentions", r"@\w+", "@user"),
    CleanStep("strip_rt", r"^\s*RT\b:?\s*", ""),
    CleanStep("collapse_whitespace", r"\s+", " ", strip=True),
)
_COMPILED = {s.switch: re.compile(s.pattern) for s in CLEAN_STEPS}


# The front-end's steps (data/frontend.py), each switched by the data.clean key of its name, in the order clean_text
# applies them: after the HTML unescaping and before the regex steps, on the characters as the user typed them,
# so that a mention or a link written in full-width or with a zero-width space inside is still found, and a
# symbol inside a word ("b@stard") is a letter before "@\w+" could take it for a mention.
FRONTEND_STEPS = ("nfkc", "strip_zero_width", "fold_confusables", "decode_leet", "join_spelled", "squeeze_repeats")


@functools.lru_cache(maxsize=1)
def confusables_table() -> dict[str, str]:
    """The fold table that ships with toxdistill (``data/confusables.json``), read once."""
    return frontend.load_confusables(Path(__file__).with_name(frontend.CONFUSABLES_FILE))


def _frontend(text: str, cfg) -> str:
    for name in FRONTEND_STEPS:
        if getattr(cfg, name):
            if name == "fold_confusables":
                text = frontend.fold_confusables(text, confusables_table())
            else:
                text = getattr(frontend, name)(text)
    return text


def write_frontend_files(folder: Path, cfg) -> None:
    """What the model card's plain-Python code needs beside a model folder's weights: the fold table, where the
    CleanConfig ``cfg`` folds confusables. A copy, so that the folder keeps the table its model was made with."""
    if cfg is not None and cfg.fold_confusables:
        shutil.copyfile(Path(__file__).with_name(frontend.CONFUSABLES_FILE), Path(folder) / frontend.CONFUSABLES_FILE)


def frontend_on(cfg) -> bool:
    """Whether any front-end step of the CleanConfig ``cfg`` is switched on."""
    return cfg is not None and any(getattr(cfg, name) for name in FRONTEND_STEPS)


def clean_text(text: str, cfg) -> str:
    """Apply the switched-on cleaning steps. ``cfg`` is a CleanConfig. Unencodable code points (lone
    surrogates, which only JSON can carry) become U+FFFD first, so any string is safe to tokenize."""
    text = safe_text(text)
    if cfg.unescape_html:
        # Twice: some tweets are double-escaped ("&amp;#8220;").
        text = html.unescape(html.unescape(text))
    text = _frontend(text, cfg)
    for step in CLEAN_STEPS:
        if getattr(cfg, step.switch):
            text = _COMPILED[step.switch].sub(step.repl, text)
            if step.strip:
                text = text.strip()
    return text


def frontend_text(text: str, cfg) -> str:
    """``text`` through the front-end steps alone, then the whitespace collapsed where data.clean says so: a text
    made from an already cleaned one (a perturbed copy in training or ``toxdistill check``) as the model would
    get it from a user, raw. Nothing changes while every front-end step is off."""
    if not frontend_on(cfg):
        return text
    text = _frontend(safe_text(text), cfg)
    if cfg.collapse_whitespace:
        text = _COMPILED["collapse_whitespace"].sub(" ", text).strip()
    return text


@dataclass
class Dataset:
    """Cleaned rows: ``ids`` are stable row ids from the source file."""

    ids: np.ndarray
    texts: list[str]
    labels: np.ndarray  # class ids (n,), or for a multi-label task an (n, L) float 0/1 matrix
    label_names: list[str]
    source_sha256: str
    # Per-row share of annotator votes for each class (rows sum to 1), when data.vote_cols names the counts.
    votes: np.ndarray | None = None
    # The data.clean the texts went through: texts made from them (perturbed copies) go through its front-end.
    clean: CleanConfig | None = None

    def prepare_derived(self, texts: list[str]) -> list[str]:
        """``texts`` made from this set's cleaned rows (perturbed copies) through the front-end its rows went
        through (``frontend_text``), as a model gets them at prediction time; as they are while it is off."""
        if not frontend_on(self.clean):
            return texts
        return [frontend_text(t, self.clean) for t in texts]

    @property
    def multi_label(self) -> bool:
        """Whether ``labels`` is an (n, L) 0/1 matrix (``data.task: multi_label``) rather than class ids."""
        return np.asarray(self.labels).ndim == 2

    def subset(self, ids: np.ndarray) -> Dataset:
        pos = {int(i): k for k, i in enumerate(self.ids)}
        idx = [pos[int(i)] for i in ids]
        return Dataset(
            ids=self.ids[idx],
            texts=[self.texts[k] for k in idx],
            labels=self.labels[idx],
            label_names=self.label_names,
            source_sha256=self.source_sha256,
            votes=None if self.votes is None else self.votes[idx],
            clean=self.clean,
        )

    def __len__(self) -> int:
        return len(self.texts)


def load_dataset(path: Path, cfg: DataConfig) -> Dataset:
    df = read_frame(path, cfg.format)
    label_cols = cfg.label_cols if cfg.multi_label else [cfg.label_col]
    missing = [c for c in (cfg.text_col, *(label_cols or []), *(cfg.vote_cols or [])) if c not in df.columns]
    if missing:
        raise ToxdistillError(
            f"{path.name} has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns[:8]))})",
            "set data.text_col / data.label_col / data.vote_cols in the config",
        )
    # The Davidson file's unnamed first column is its row id; other files use their row number.
    ids = df["Unnamed: 0"].to_numpy() if "Unnamed: 0" in df.columns else np.arange(len(df))
    labels = _multi_hot(df, cfg, path) if cfg.multi_label else _class_ids(df, cfg, path)
    return _cleaned(df, cfg, path, ids, labels)


def _multi_hot(df: pd.DataFrame, cfg: DataConfig, path: Path) -> np.ndarray:
    """``data.label_cols`` as an (n, L) float 0/1 matrix: the columns as they are, or each count at least
    ``data.label_min_votes``."""
    assert cfg.label_cols is not None, "config validation: multi_label has label_cols"
    raw = df[cfg.label_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(raw).all(1) | (raw < 0).any(1)
    if cfg.label_min_votes is None:
        bad |= ~np.isin(raw, (0.0, 1.0)).all(1)
    if bad.any():
        what = "non-negative counts" if cfg.label_min_votes else "0 or 1"
        raise ToxdistillError(
            f"{path.name}: {int(bad.sum())} rows have label_cols values that are not {what} "
            f"(first: row {int(np.flatnonzero(bad)[0])})",
            "fix the labels, or set data.label_min_votes where label_cols hold vote counts",
        )
    cut = 1.0 if cfg.label_min_votes is None else float(cfg.label_min_votes)
    return (raw >= cut).astype(np.float32)


def _class_ids(df: pd.DataFrame, cfg: DataConfig, path: Path) -> np.ndarray:
    """``data.label_col`` as class ids 0..K-1 (through ``data.label_map`` where given)."""
    n_classes = len(cfg.label_names)
    raw_labels = df[cfg.label_col]
    if raw_labels.isna().any():
        raise ToxdistillError(
            f"{path.name}: {int(raw_labels.isna().sum())} rows have no label in {cfg.label_col!r}",
            "fill or drop them",
        )
    if cfg.label_map is not None:
        mapped = raw_labels.astype(str).map(cfg.label_map)
        bad = raw_labels[mapped.isna()].astype(str).unique()[:3]
        if len(bad):
            raise ToxdistillError(f"{path.name}: labels {list(bad)} are not in data.label_map", "add them to label_map")
        labels = mapped.to_numpy(dtype=np.int64)
    else:
        numeric = pd.to_numeric(raw_labels, errors="coerce")
        bad_mask = numeric.isna() | ~numeric.isin(range(n_classes))
        if bad_mask.any():
            bad = raw_labels[bad_mask].astype(str).unique()[:3]
            raise ToxdistillError(
                f"{path.name}: labels {list(bad)} are outside classes 0..{n_classes - 1} ({', '.join(cfg.label_names)})",
                "fix the labels or set data.label_map / data.label_names",
            )
        labels = numeric.to_numpy(dtype=np.int64)
    return labels


def _cleaned(df: pd.DataFrame, cfg: DataConfig, path: Path, ids: np.ndarray, labels: np.ndarray) -> Dataset:
    """The rows with a non-empty cleaned text."""
    texts_raw = df[cfg.text_col]
    keep = []
    texts = []
    for k, t in enumerate(texts_raw):
        if isinstance(t, str):
            c = clean_text(t, cfg.clean)
            if c:
                keep.append(k)
                texts.append(c)
    dropped = len(df) - len(keep)
    if dropped:
        log.warning("dropped %d rows with empty or missing text", dropped)
    if not keep:
        raise ToxdistillError(f"{path.name}: every text is empty", f"check data.text_col ({cfg.text_col!r})")
    keep_arr = np.asarray(keep)
    kept_ids = np.asarray(ids)[keep_arr].astype(np.int64)
    return Dataset(
        ids=kept_ids,
        texts=texts,
        labels=labels[keep_arr],
        label_names=list(cfg.label_names),
        source_sha256=sha256_file(path),
        votes=None if cfg.vote_cols is None else _vote_shares(df.iloc[keep_arr], cfg, path, kept_ids),
        clean=cfg.clean,
    )


def _vote_shares(df: pd.DataFrame, cfg: DataConfig, path: Path, ids: np.ndarray) -> np.ndarray:
    """Each row's annotator counts per class (``data.vote_cols``, in class order), divided by their sum."""
    counts = df[cfg.vote_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(counts).all(1) | (counts < 0).any(1) | (counts.sum(1) <= 0)
    if bad.any():
        raise ToxdistillError(
            f"{path.name}: {int(bad.sum())} rows have vote counts that are missing, not numbers, negative or "
            f"all zero (first: row id {int(ids[np.flatnonzero(bad)[0]])})",
            "data.vote_cols must name non-negative counts, one column per class",
        )
    return (counts / counts.sum(1, keepdims=True)).astype(np.float32)
