"""The teacher's outputs, computed once and cached (``RUN/cache``), and the perturbed training copies, made once.

A distilled student learns from the teacher's logits and final first-token ([CLS]) states on its training rows.
Rank 0 computes them once per teacher, split and tokenization and keeps them as safetensors; every student of the
run, on every rank, reads the file (``TeacherCache``). The teacher-labelled copies of ``distill.augment`` are
cached beside them the same way. The losses (``training.losses``) are pure functions of these tensors.

Consistency training (``train.perturb``) draws from perturbed copies of the training rows; every such stage of a
run perturbs the same rows alike, so they are made once per process and shared (``perturbed_ids``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from toxdistill.data.dataset import Dataset, frontend_on
from toxdistill.data.perturb import aim_classes, perturb_texts
from toxdistill.models.families import forward_inputs
from toxdistill.training.ddp import dist
from toxdistill.training.encoded import EncodedDataset, collator

TeacherOutputs = tuple[torch.Tensor, torch.Tensor]
"""The teacher's logits ``(n, K)`` and final first-token states ``(n, hidden)``, row i for the dataset's row i."""


# ---------------------------------------------------------------- keys
def teacher_cache_key(teacher_dir: Path, split_fingerprint: str, max_length: int) -> str:
    """Keyed by the teacher's weights and the split, so either changing invalidates the cache."""
    h = hashlib.sha256()
    for f in sorted(Path(teacher_dir).glob("*.safetensors")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(f"{split_fingerprint}:{max_length}".encode())
    return h.hexdigest()[:16]


def scores_cache_key(scores_sha256: str, split_fingerprint: str, text_col: str | None) -> str:
    """A scores teacher's key: the file's contents, the split and the column its texts are read from."""
    return hashlib.sha256(f"scores:{scores_sha256}:{split_fingerprint}:{text_col}".encode()).hexdigest()[:16]


def scores_outputs(folder: Path, key: str, build: Callable[[], torch.Tensor]) -> TeacherOutputs:
    """Every rank: a scores teacher's logits on the training rows (``build``, NaN where the file has no score),
    kept in ``teacher-<key>.safetensors`` as a model teacher's are, beside states of width 0: it has none."""
    cache_file = folder / f"teacher-{key}.safetensors"

    def make() -> TeacherOutputs:
        drop_other_teachers(cache_file)
        logits = build().float()
        cls = torch.zeros((len(logits), 0), dtype=torch.float32)
        save_outputs(cache_file, logits, cls)
        return logits, cls

    return rank0_cache(cache_file, make)


def augment_cache_name(teacher_key: str, copies: int, kinds: Sequence[str], seed: int, texts: Sequence[str]) -> str:
    """The augmentation cache's file name: keyed by the teacher cache's key, the copies, kinds and seed, and the
    copies' texts themselves (so a change to the perturbations is a new cache)."""
    h = hashlib.sha256(f"{teacher_key}:{copies}:{','.join(kinds)}:{seed}".encode())
    h.update("\x00".join(texts).encode("utf-8", "surrogatepass"))
    return f"augment-{teacher_key}-{h.hexdigest()[:16]}.safetensors"


# ---------------------------------------------------------------- computing and storing
@torch.no_grad()
def compute_teacher_outputs(
    teacher: PreTrainedModel, enc: EncodedDataset, batch_size: int = 128, progress: bool = True
) -> TeacherOutputs:
    """Logits and final [CLS] states for every row, teacher frozen in eval mode, length-sorted batches."""
    teacher.eval()
    order = np.argsort([len(x) for x in enc.input_ids], kind="stable")
    collate = collator(enc.tokenizer)
    n = len(enc)
    k = teacher.config.num_labels
    assert k is not None, "a sequence classifier knows its label count"
    logits = torch.empty((n, k), dtype=torch.float32)
    cls = torch.empty((n, teacher.config.hidden_size), dtype=torch.float32)
    for start in tqdm(range(0, n, batch_size), desc="teacher outputs", disable=not progress, unit="batch"):
        rows = [enc[int(i)] for i in order[start : start + batch_size]]
        b = collate(rows)
        idx = b.pop("idx")
        b.pop("labels")
        out = teacher(**b, output_hidden_states=True)
        logits[idx] = out.logits.float()
        cls[idx] = out.hidden_states[-1][:, 0].float()
    return logits, cls


def load_or_build_teacher_cache(
    cache_file: Path, teacher: PreTrainedModel, enc: EncodedDataset, batch_size: int = 128
) -> TeacherOutputs:
    """Compute once, store as safetensors (no pickle), reuse for every student."""
    if cache_file.is_file():
        t = load_file(str(cache_file))
        if t["logits"].shape[0] == len(enc):
            return t["logits"], t["cls"]
    logits, cls = compute_teacher_outputs(teacher, enc, batch_size)
    save_outputs(cache_file, logits, cls)
    return logits, cls


def save_outputs(cache_file: Path, logits: torch.Tensor, cls: torch.Tensor) -> None:
    """Written under a temporary name and renamed: a killed run leaves no half-written cache."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    save_file({"logits": logits.contiguous(), "cls": cls.contiguous()}, str(tmp))
    tmp.replace(cache_file)


def drop_other_teachers(cache_file: Path) -> None:
    """Removes the outputs of every other teacher kept beside ``cache_file``: one teacher's cache per run."""
    for stale in cache_file.parent.glob("teacher-*.safetensors"):
        if stale != cache_file:
            stale.unlink()


def rank0_cache(cache_file: Path, build: Callable[[], TeacherOutputs]) -> TeacherOutputs:
    """Rank 0 builds the cache once (if missing); every other rank waits, then reads the file."""
    if dist().is_main_process and not cache_file.is_file():
        out = build()
        dist().wait_for_everyone()
        return out
    dist().wait_for_everyone()
    t = load_file(str(cache_file))
    return t["logits"], t["cls"]


# ---------------------------------------------------------------- teacher-labelled augmentation
def augment_texts(
    texts: Sequence[str],
    copies: int,
    kinds: Sequence[str],
    seed: int,
    labels: Sequence[int] | None = None,
    weights: Sequence[Mapping[str, float]] | None = None,
) -> list[str]:
    """``copies`` perturbed copies of every text (``data.perturb``), copy-major: copy c of all texts, then copy
    c + 1. Copy c uses kind ``kinds[c mod len(kinds)]`` and is the generator's copy number c, so two copies of one
    kind differ; ``weights`` aim each row's perturbation at the words weighed towards its class."""
    out: list[str] = []
    for c in range(copies):
        out += perturb_texts(texts, kinds[c % len(kinds)], seed, c, labels, weights)
    return out


@dataclass
class Augmentation:
    """Teacher-labelled copies of the training rows (``distill.augment``): their texts and the teacher's logits
    and final [CLS] states on them, from the augmentation cache. The teacher's outputs are their only label."""

    texts: list[str]
    logits: torch.Tensor
    cls: torch.Tensor


# ---------------------------------------------------------------- a run's cache
@dataclass(frozen=True)
class TeacherCache:
    """A run's cached teacher outputs: on the training rows (``teacher-<key>.safetensors``) and on their
    teacher-labelled copies (``augment-<key>-<copies' key>.safetensors``), ``<key>`` being ``teacher_cache_key``.
    Rank 0 builds a missing file and removes the caches of older teachers; the other ranks read it."""

    folder: Path
    """Where the files are kept: the run's ``cache`` folder."""
    teacher_dir: Path
    """The teacher's model folder; its weight files' names, sizes and times key the cache."""
    split_fingerprint: str
    """The split's rows (``Split.fingerprint``): another split is another cache."""
    max_length: int
    """The rows' token cut (``data.max_length``): another cut gives the teacher other inputs."""
    load_teacher: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]
    """The teacher and its tokenizer, loaded only where a file must be built: a run whose caches exist skips it."""

    def key(self) -> str:
        return teacher_cache_key(self.teacher_dir, self.split_fingerprint, self.max_length)

    def teacher_file(self) -> Path:
        return self.folder / f"teacher-{self.key()}.safetensors"

    def outputs_on(
        self,
        ds: Dataset,
        cache_file: Path,
        teacher: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> TeacherOutputs:
        """Rank 0 only: the teacher's outputs on ``ds``'s rows, computed once and kept in ``cache_file``;
        the teacher is loaded unless given."""
        if teacher is None or tokenizer is None:
            teacher, tokenizer = self.load_teacher()
        tt = "token_type_ids" in forward_inputs(teacher)
        enc = EncodedDataset(ds, tokenizer, self.max_length, token_types=tt)
        return load_or_build_teacher_cache(cache_file, teacher, enc)

    def build(
        self,
        train: Dataset,
        teacher: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> TeacherOutputs:
        """Rank 0 only: the teacher's outputs on the training rows, computed once; caches of older teachers go."""
        cache_file = self.teacher_file()
        drop_other_teachers(cache_file)
        return self.outputs_on(train, cache_file, teacher, tokenizer)

    def outputs(self, train: Dataset) -> TeacherOutputs:
        """Every rank: the teacher's outputs on the training rows, built by rank 0 where missing."""
        return rank0_cache(self.teacher_file(), lambda: self.build(train))

    def augmentation(
        self,
        train: Dataset,
        copies: int,
        kinds: Sequence[str],
        seed: int,
        weights: Sequence[Mapping[str, float]] | None,
        announce: Callable[[str], None],
    ) -> Augmentation:
        """Every rank: ``copies`` perturbed copies of every training text (``augment_texts``), labelled by the
        teacher once and cached beside its outputs; caches of an older teacher go. ``announce`` tells the user
        when the teacher labels them."""
        texts = train.prepare_derived(
            augment_texts(train.texts, copies, kinds, seed, aim_classes(train.labels), weights)
        )
        teacher_key = self.key()
        cache_file = self.folder / augment_cache_name(teacher_key, copies, kinds, seed, texts)

        def build() -> TeacherOutputs:
            for stale in self.folder.glob("augment-*.safetensors"):
                if not stale.name.startswith(f"augment-{teacher_key}-"):
                    stale.unlink()
            rows = Dataset(
                ids=np.arange(len(texts)),
                texts=texts,
                labels=np.concatenate([np.asarray(train.labels)] * copies),
                label_names=train.label_names,
                source_sha256=train.source_sha256,
            )
            announce(f"augmentation: the teacher labels {len(texts):,} copies ({copies} per row, {', '.join(kinds)})")
            return self.outputs_on(rows, cache_file)

        logits, cls = rank0_cache(cache_file, build)
        return Augmentation(texts, logits, cls)

    def transfer(
        self, texts: list[str], texts_key: str, label_names: list[str], announce: Callable[[str], None]
    ) -> Augmentation:
        """Every rank: the teacher's outputs on the transfer set (``data.unlabelled``'s cleaned ``texts``, whose
        sha256 is ``texts_key``), computed once and cached beside its outputs on the training rows; a transfer
        cache of another teacher or other texts goes. Its rows have no label: the teacher's outputs are all a
        student learns from them."""
        teacher_key = self.key()
        cache_file = self.folder / f"transfer-{teacher_key}-{texts_key}.safetensors"

        def build() -> TeacherOutputs:
            for stale in self.folder.glob("transfer-*.safetensors"):
                if stale != cache_file:
                    stale.unlink()
            rows = Dataset(
                ids=np.arange(len(texts)),
                texts=texts,
                labels=np.zeros(len(texts), dtype=np.int64),  # unread: the teacher scores the texts alone
                label_names=label_names,
                source_sha256=texts_key,
            )
            announce(f"transfer set: the teacher labels {len(texts):,} unlabelled texts, once")
            return self.outputs_on(rows, cache_file)

        logits, cls = rank0_cache(cache_file, build)
        return Augmentation(texts, logits, cls)


# ---------------------------------------------------------------- perturbed training copies
# The last training set's perturbed copies, as token ids. Every consistency-trained stage of a run perturbs the
# same rows with the same seed, aims and tokenizer: making them took 12.6 s on the 2-core Intel Xeon (8 kinds x
# 19,827 rows), finding them again 1.0 s with the clean rows' encoding (docs/frontier.md). Two entries: a process
# trains on one training set at a time, and its transfer set (``data.unlabelled``) where there is one; seed
# repeats (``run --seeds``) come after every stage of the first seed.
_PERTURBED: dict[str, list[list[list[int]]]] = {}
_PERTURBED_SETS = 2


def perturbed_ids(
    enc: EncodedDataset,
    ds: Dataset,
    kinds: Sequence[str],
    seed: int,
    weights: Sequence[Mapping[str, float]] | None,
) -> list[list[list[int]]]:
    """Token ids (``enc.encode``) of each kind's perturbed copy of every row of ``ds`` (copy 0 of ``seed``,
    aimed by ``weights``, ``data.perturb``): ``[kind][row]``. Computed once per process for the same inputs;
    the lists are shared, and nothing that draws from them changes them."""
    labels = aim_classes(ds.labels)
    backend = getattr(enc.tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else repr(sorted(enc.tokenizer.get_vocab().items()))
    h = hashlib.sha256()
    # The front-end the copies go through (``Dataset.prepare_derived``); while it is off, the key it always had.
    front = [ds.clean.model_dump(mode="json")] if ds.clean is not None and frontend_on(ds.clean) else []
    for part in (ds.texts, labels, list(kinds), seed, weights, enc.max_length, vocab, *front):
        h.update(json.dumps(part, sort_keys=True).encode("utf-8", "surrogatepass"))
    key = h.hexdigest()
    if key not in _PERTURBED:
        while len(_PERTURBED) >= _PERTURBED_SETS:
            del _PERTURBED[next(iter(_PERTURBED))]  # the oldest
        _PERTURBED[key] = [
            enc.encode(ds.prepare_derived(perturb_texts(ds.texts, k, seed, 0, labels, weights))) for k in kinds
        ]
    return _PERTURBED[key]
