"""Shared fixtures: tiny random BERTs built in code (loaded once per session) and a tiny run folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from toxdistill.runs import write_run_format

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# A user's exported TOXDISTILL_DATA would outrank the tiny runs' own data files (the CLI's lookup order), so the
# tests take it out of their environment; it still names the real CSV for the integration run.
_USER_DATA = os.environ.pop("TOXDISTILL_DATA", None)
REPO = Path(__file__).resolve().parents[1]
DAVIDSON = Path(
    os.environ.get("TOXDISTILL_TEST_DATA")
    or _USER_DATA
    or REPO.parent / "shared" / "data" / "davidson" / "labeled_data.csv"
)
LABELS = ["hate speech", "offensive", "neither"]


def load_bench_script(name: str):
    """Import ``bench/<name>.py`` as a module: the bench scripts are run as files, not installed as a package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_bert(n_layers: int = 4, hidden: int = 32, seed: int = 0):
    """A random BertForSequenceClassification small enough to train in a second."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=30522,  # the bert-base-uncased vocabulary, so the packaged tokenizer fits
        hidden_size=hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    model = BertForSequenceClassification(cfg)
    model.eval()
    return model


# In-process commands set torch's thread count for the whole process (predict --threads 1, a run's `threads`), and
# it stayed at that for every later test: the suite ran parts of itself on one of the two cores.
_TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    yield
    if torch.get_num_threads() != _TORCH_THREADS:
        torch.set_num_threads(_TORCH_THREADS)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from toxdistill.models.teacher import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("packaged:all-MiniLM-L6-v2"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A save_pretrained folder of a tiny 4-layer BERT, with toxdistill metadata."""
    d = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    model = tiny_bert()
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    (d / "toxdistill.json").write_text(
        json.dumps({"name": "tiny-bert", "kind": "teacher", "label_names": LABELS, "max_length": 64})
    )
    return d


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_model_dir):
    """``tiny_export(target)``: ``tiny_model_dir`` exported to that target through the CLI, once per session for
    every test file that reads it. Read-only: a test that changes an export copies it first."""
    from toxdistill.cli import main

    root = tmp_path_factory.mktemp("tiny-exports")
    made: dict[str, Path] = {}

    def get(target: str) -> Path:
        if target not in made:
            out = root / target
            assert main(["export", str(tiny_model_dir), "--target", target, "-o", str(out)]) == 0
            made[target] = out
        return made[target]

    return get


def tiny_dataset(n: int = 48, seed: int = 0):
    """Made-up rows of a few words with random labels: enough to run training code, not to learn."""
    from toxdistill.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    words = ["good", "bad", "hate", "love", "you", "them", "nice", "awful", "the", "a"]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 12))) for _ in range(n)]
    return Dataset(np.arange(n), texts, rng.integers(0, 3, n), LABELS, "x")


SAMPLE_TEXTS = [
    "you are a wonderful person",
    "I hate all of you so much, get out of this country",
    "this is trash and so are you",
    "what a lovely day at the beach with my family and friends",
    "lol",
    "a much much longer text " * 20,
]


def make_tiny_run(root: Path, tokenizer, names=("teacher", "odd", "even", "lora-teacher")) -> Path:
    """A run folder like `toxdistill run` writes, with tiny models and made-up metrics."""
    run = root / "tiny-run"
    for k, name in enumerate(names):
        d = run / "models" / name
        n_layers = 4 if name in ("teacher", "lora-teacher") else 2
        model = tiny_bert(n_layers=n_layers, seed=k)
        model.save_pretrained(d)
        tokenizer.save_pretrained(d)
        kind = {"teacher": "teacher", "lora-teacher": "lora"}.get(name, "student")
        cm = [[5, 3, 2], [1, 80, 4], [0, 5, 20]]
        meta = {
            "name": name,
            "kind": kind,
            "layers": list(range(1, n_layers + 1)),
            "label_names": LABELS,
            "max_length": 64,
            "calibration": {"temperature": 1.0, "offsets": [0.0, 0.0, 0.0]},
            "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters()),
            "size_mb": 4.0,
            "train": {"train_loss": 0.5},
            "metrics": {
                "accuracy": 0.88 - 0.01 * k,
                "f1_weighted": 0.87 - 0.01 * k,
                "f1_macro": 0.70 - 0.01 * k,
                "f1_per_class": {"hate speech": 0.3, "offensive": 0.9, "neither": 0.8},
                "precision_per_class": {n: 0.8 for n in LABELS},
                "recall_per_class": {n: 0.8 for n in LABELS},
                "confusion_matrix": cm,
                "val_loss": 0.4,
                "test_loss": 0.41,
                "throughput_sps": 500.0 - 50 * k,
            },
        }
        (d / "toxdistill.json").write_text(json.dumps(meta))
    results = [json.loads((run / "models" / n / "toxdistill.json").read_text()) for n in names]
    (run / "results.json").write_text(
        json.dumps([{"name": r["name"], "kind": r["kind"], **r["metrics"]} for r in results])
    )
    (run / "config.yaml").write_text("name: tiny-run\n")
    write_run_format(run)
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tokenizer) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("runs"), tokenizer)


@pytest.fixture(scope="session")
def server(tiny_run: Path) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a background thread."""
    from live_server import live_server

    from toxdistill.serve.app import create_app
    from toxdistill.serve.models import close_models, load_models

    models = load_models(tiny_run, batch_wait_ms=2.0)
    try:
        with live_server(create_app(models, run_name="tiny-run")) as url:
            yield url
    finally:
        close_models(models)


@pytest.fixture(scope="module")
def served_models(tiny_run):
    """The tiny run's odd and even students loaded for serving, without micro-batching, once per test module."""
    from toxdistill.serve.models import close_models, load_models

    ms = load_models(tiny_run, "odd,even", batch_wait_ms=None)
    yield ms
    close_models(ms)


@pytest.fixture(scope="session")
def real_data_env() -> dict[str, str]:
    """The environment for a subprocess run on the real Davidson CSV; skips when the file is absent."""
    if not DAVIDSON.is_file():
        pytest.skip(f"real data not found at {DAVIDSON}")
    return {**os.environ, "TOXDISTILL_DATA": str(DAVIDSON)}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


FAMILIES = ("bert", "roberta", "mpnet", "deberta-v2", "electra", "distilbert")


def tiny_family(family: str, n_layers: int = 4, hidden: int = 32, seed: int = 0, id2label: dict | None = None):
    """A random sequence classifier of one encoder family, sized to train in a second.

    The vocabulary fits the packaged BERT tokenizer (30,522 ids), and pad id 0 is its [PAD], so every family
    reads that tokenizer's batches the way it reads its own.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    id2label = id2label or dict(enumerate(LABELS))
    common = {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    common["pad_token_id"] = 0
    if family == "distilbert":
        kw = {
            "dim": hidden,
            "n_layers": n_layers,
            "n_heads": 2,
            "hidden_dim": 2 * hidden,
            "max_position_embeddings": 130,
        }
    else:
        kw = {
            "hidden_size": hidden,
            "num_hidden_layers": n_layers,
            "num_attention_heads": 2,
            "intermediate_size": 2 * hidden,
            "max_position_embeddings": 130,  # RoBERTa and MPNet count positions from pad id + 1
        }
    if family == "electra":
        kw["embedding_size"] = hidden // 2  # ELECTRA's own embeddings_project between embeddings and encoder
    if family == "deberta-v2":
        kw.update(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16, type_vocab_size=0)
        kw.update(position_biased_input=False, norm_rel_ebd="layer_norm", pooler_hidden_size=hidden)
    cfg = AutoConfig.for_model(family, vocab_size=30522, **kw, **common)
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.eval()
    return model
