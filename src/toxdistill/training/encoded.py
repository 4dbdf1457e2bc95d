"""The training rows as token ids (``EncodedDataset``) and the padding of their batches (``collator``): what the
Trainer, the teacher cache and the benches feed the models."""

from __future__ import annotations

import copy

import numpy as np
from torch.utils.data import Dataset as TorchDataset
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from toxdistill.data.dataset import Dataset


class EncodedDataset(TorchDataset):
    """Pre-tokenised rows. ``idx`` is the row's position, used to look up cached teacher outputs."""

    def __init__(self, ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, token_types: bool = True):
        enc = tokenizer(ds.texts, truncation=True, max_length=max_length)
        self.tokenizer = tokenizer  # its pad() pads the batches (``collator``)
        self.input_ids: list[list[int]] = enc["input_ids"]
        # Only for a model that takes them (families.forward_inputs); others would swallow them unused.
        self.token_type_ids = enc.get("token_type_ids") if token_types else None
        self.labels = ds.labels
        self.max_length = max_length
        # Perturbed copies of the rows for consistency training (``with_perturbations``); none by default.
        self.variants: list[list[list[int]]] = []
        self.share = 0.0
        self.rng = np.random.default_rng(0)

    def by_length(self) -> EncodedDataset:
        """The same rows, shortest first. For validation: the Trainer evaluates in order, so sorted batches
        carry little padding, and every metric is order-free."""
        order = np.argsort([len(x) for x in self.input_ids], kind="stable")
        out = copy.copy(self)
        out.input_ids = [self.input_ids[i] for i in order]
        out.token_type_ids = None if self.token_type_ids is None else [self.token_type_ids[i] for i in order]
        out.labels = np.asarray(self.labels)[order]
        return out

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts``, as the rows were encoded."""
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    def with_perturbations(self, variants: list[list[list[int]]], share: float, seed: int) -> EncodedDataset:
        """The same rows, each drawn as one of its perturbed copies ``variants[k][i]`` (token ids, ``encode``;
        k at random) with probability ``share``, else clean: consistency training. ``idx`` and the label stay
        the clean row's, so a perturbed row is scored against its clean row's label and cached teacher outputs.
        This copy is for training only; the clean one (teacher cache, validation) is left as it was."""
        out = copy.copy(self)
        out.variants = variants
        out.share = share
        # Draws follow the order the sampler asks for rows in, which the seed fixes.
        out.rng = np.random.default_rng(seed)
        return out

    def with_rows(self, texts: list[str], labels: np.ndarray) -> EncodedDataset:
        """These rows followed by ``texts`` as new rows (``idx`` from ``len(self)`` on): teacher-labelled
        augmentation. The new rows are drawn as they are; only the original ones have perturbed variants."""
        out = copy.copy(self)
        ids = self.encode(texts)
        out.input_ids = [*self.input_ids, *ids]
        if self.token_type_ids is not None:
            out.token_type_ids = [*self.token_type_ids, *([0] * len(x) for x in ids)]
        out.labels = np.concatenate([np.asarray(self.labels), np.asarray(labels)])
        return out

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        ids = self.input_ids[i]
        types = None if self.token_type_ids is None else self.token_type_ids[i]
        if self.variants and i < len(self.variants[0]) and self.rng.random() < self.share:
            ids = self.variants[int(self.rng.integers(len(self.variants)))][i]
            types = None if types is None else [0] * len(ids)  # one segment, as every training text
        y = self.labels[i]  # a class id, or a multi-label row's 0/1 vector
        item = {"input_ids": ids, "labels": [float(v) for v in y] if np.ndim(y) else int(y), "idx": i}
        if types is not None:
            item["token_type_ids"] = types
        return item


def collator(tokenizer: PreTrainedTokenizerBase, pad_to: int | None = None) -> DataCollatorWithPadding:
    """The tokenizer's own padding: to the longest row of each batch, or to ``pad_to`` (the naive set-up the
    training bench compares against). ``labels`` and ``idx`` pass through as tensors."""
    if pad_to is None:
        return DataCollatorWithPadding(tokenizer, padding="longest")
    return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
