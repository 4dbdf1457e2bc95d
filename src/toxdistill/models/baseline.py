"""The classical floor: TF-IDF word 1-3-grams + logistic regression, saved without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from toxdistill.data.dataset import Dataset


class TfidfLR:
    """Same ``logits``/``label_names`` interface as the Predictor, so it goes through the same evaluation."""

    def __init__(self, label_names: list[str], seed: int = 0):
        self.label_names = label_names
        # min_df=2 drops hapaxes (mostly typos and handles); sublinear tf tames repeated slurs.
        self.vec = TfidfVectorizer(ngram_range=(1, 3), min_df=2, max_features=200_000, sublinear_tf=True)
        # C=10 was best on validation among {1, 3, 10}; the data is large enough to need little shrinkage.
        self.clf = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)

    def fit(self, ds: Dataset) -> TfidfLR:
        self.clf.fit(self.vec.fit_transform(ds.texts), ds.labels)
        return self

    def logits(self, texts, batch_size: int = 0, **_) -> tuple[np.ndarray, np.ndarray]:
        # Log-probabilities are valid logits: softmax(log p) = p.
        lp = self.clf.predict_log_proba(self.vec.transform(list(texts)))
        return lp.astype(np.float32), np.zeros(len(texts), dtype=bool)

    def class_word_weights(self, top: int = 2000) -> list[dict[str, float]]:
        """For each class, the words weighed most towards it: a unigram's coefficient minus its mean over the
        classes, the ``top`` largest positive ones. What ``data.perturb`` aims at: the words that carry the label."""
        coef = np.asarray(self.clf.coef_, dtype=np.float64)
        if coef.shape[0] == 1:  # two classes: sklearn keeps one row, the second class's
            coef = np.vstack([-coef[0], coef[0]])
        rel = coef - coef.mean(0, keepdims=True)
        unigrams = {w: j for w, j in self.vec.vocabulary_.items() if " " not in w}
        words, cols = list(unigrams), np.fromiter(unigrams.values(), dtype=np.int64, count=len(unigrams))
        out = []
        for c in range(rel.shape[0]):
            w = rel[c, cols]
            best = np.argsort(-w, kind="stable")[:top]
            out.append({words[i]: float(w[i]) for i in best if w[i] > 0})
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        vocab = {k: int(v) for k, v in self.vec.vocabulary_.items()}
        (folder / "vocab.json").write_text(json.dumps({"label_names": self.label_names, "vocabulary": vocab}))
        np.savez(
            folder / "weights.npz",
            idf=self.vec.idf_,
            coef=self.clf.coef_,
            intercept=self.clf.intercept_,
            classes=self.clf.classes_,
        )

    @classmethod
    def load(cls, folder: Path) -> TfidfLR:
        meta = json.loads((folder / "vocab.json").read_text())
        w = np.load(folder / "weights.npz", allow_pickle=False)
        m = cls(meta["label_names"])
        m.vec.vocabulary_ = meta["vocabulary"]
        m.vec.idf_ = w["idf"]
        m.clf.coef_, m.clf.intercept_, m.clf.classes_ = w["coef"], w["intercept"], w["classes"]
        return m
