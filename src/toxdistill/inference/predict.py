"""One Predictor for evaluation, serving and bulk scoring.

It sorts inputs by length into batches (padding is most of the cost on tweets), returns results in
input order, truncates to the model's maximum length and says so, and applies the model's saved
calibration (temperature and class bias) and decision offsets. The backend (torch, ONNX Runtime or OpenVINO) is
picked from the folder: an export record names its engine.

An input longer than ``PIPELINE_BATCHES`` batches goes through in chunks of that many texts, taken in order of
character length: each chunk is tokenized, sorted by token length into batches and run. With ``overlap`` (the
default) a one-worker thread tokenizes chunk k+1 while the model runs chunk k (the tokenizers library and the
engines release the GIL); without it the same chunks run one after the other, so both ways give the same
batches and the same logits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from toxdistill.config import CleanConfig
from toxdistill.data.dataset import clean_text
from toxdistill.data.readers import safe_text
from toxdistill.errors import ToxdistillError
from toxdistill.extras import TRAIN_INSTALL
from toxdistill.files import MULTI_LABEL_TASK
from toxdistill.inference.calibration import Calibration, is_multi_label
from toxdistill.inference.openvino_backend import OpenVinoBackend, find_openvino_file, import_openvino
from toxdistill.inference.scoring import score_results
from toxdistill.inference.tokenizer import TOKENIZER_FILE, JsonTokenizer
from toxdistill.runs import find_clean_config, is_baseline_folder, read_meta
from toxdistill.targets import ENGINES, target_of_record

log = logging.getLogger(__name__)


class TorchBackend:
    name = "torch"

    def __init__(self, model_dir: Path, allow_pickle: bool = False):
        import torch
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        # heavy: these import torch; the ONNX path and --help stay torch-free
        from toxdistill.models.families import forward_inputs
        from toxdistill.models.teacher import check_safetensors, pickle_allowed  # registers models/cnn.py too

        allow_pickle = pickle_allowed(allow_pickle)
        check_safetensors(str(model_dir), allow_pickle)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per model is noise in every caller
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(model_dir), use_safetensors=not allow_pickle or None, trust_remote_code=False
            )
        except Exception as e:  # noqa: BLE001 - any load failure is a user-facing bad folder
            msg = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
            raise ToxdistillError(
                f"cannot load model from {model_dir}: {msg}", "check the folder is complete"
            ) from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.eval()
        self._torch = torch
        self.config = self.model.config
        self.inputs = set(forward_inputs(self.model))

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in batch.items() if k in self.inputs})
        return out.logits.float().numpy()


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None


class OnnxBackend:
    name = "onnx"

    def __init__(self, model_file: Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ToxdistillError("onnxruntime is not installed", "pip install 'toxdistill[onnx]'") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # One request runs one graph: parallel branches are rare in an encoder, extra pools only cost.
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            msg = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
            raise ToxdistillError(f"cannot load {model_file}: {msg}", "re-export the model") from None
        self.model_file = Path(model_file)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items() if k in self.inputs}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


def find_onnx_file(model_dir: Path, meta: dict | None = None) -> Path | None:
    """The folder's ONNX graph: the one its export record names, else the only ``*.onnx`` file."""
    model_dir = Path(model_dir)
    named = ((meta or {}).get("export") or {}).get("file")
    if named and (model_dir / named).is_file():
        return model_dir / named
    files = sorted(model_dir.glob("*.onnx"))
    if len(files) > 1:
        raise ToxdistillError(
            f"{model_dir} holds {len(files)} .onnx files ({', '.join(f.name for f in files)})",
            "keep one model per folder, as 'toxdistill export' writes it",
        )
    return files[0] if files else None


PHASES = ("tokenize", "batching", "model", "other", "total")
# auto: the engine an export's record names; torch: the model folder itself; else an engine of the registry.
BACKEND_NAMES = ("auto", "torch", *ENGINES)
# Long inputs are tokenized this many batches at a time (1,024 texts at batch 64): the first chunk is all the
# tokenizing that nothing can hide.
PIPELINE_BATCHES = 16


def pipeline_chunks(texts: Sequence[str], batch_size: int, sort: bool) -> list[np.ndarray]:
    """The index arrays into ``texts`` that ``Predictor.logits`` tokenizes, then sorts by token length, as one.

    One chunk (all of them, in input order) up to ``PIPELINE_BATCHES`` batches. Beyond that, with ``sort``, the
    chunks follow the texts' character lengths: each holds texts of about the same length, so sorting within
    a chunk pads about as little as one sort over the whole input would. Without ``sort``, input order.
    """
    n, step = len(texts), max(1, batch_size) * PIPELINE_BATCHES
    if n <= step:
        return [np.arange(n)]
    order = np.argsort([len(t) for t in texts], kind="stable") if sort else np.arange(n)
    return [order[a : a + step] for a in range(0, n, step)]


# A model pass's fixed cost, in padded tokens, when nothing better is known: the engine call, the padding and the
# Python around it took 100-150 us on the 1-layer int8 student with ONNX Runtime (a token of it ~15 us); 16 leans
# toward fewer, fuller passes, which bigger models and more threads use better. A server measures its own
# (``Predictor.measure_pass_cost``): it differs more than tenfold between engines and models.
PASS_COST_TOKENS = 16
# The most texts ``length_batches`` splits by cost (quadratic in them: ~2,000 steps at 64, well under a pass).
SPLIT_MAX_TEXTS = 64


def length_batches(
    lengths: Sequence[int], batch_size: int, pass_cost: float = PASS_COST_TOKENS
) -> list[tuple[int, int]]:
    """``[start, end)`` slices of texts sorted by token length (``lengths`` ascending), each a batch.

    More texts than one batch holds (or than ``SPLIT_MAX_TEXTS``): fixed ``batch_size`` slices, each already of
    about one length. One batch's worth or fewer (a served micro-batch, a small request): cut where padding the short texts to the long ones'
    length would cost more than another pass (``pass_cost`` padded tokens), the split of least padded tokens plus
    passes. A random handful of tweets padded as one batch is 1.6x its real tokens, cut this way about 1.06x.
    """
    n = len(lengths)
    if n > min(batch_size, SPLIT_MAX_TEXTS):
        return [(a, min(n, a + batch_size)) for a in range(0, n, batch_size)]
    best = [0.0] * (n + 1)  # best[j]: the cheapest cost of the first j texts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        best[j], cut[j] = min((best[i] + pass_cost + (j - i) * lengths[j - 1], i) for i in range(j))
    out, j = [], n
    while j > 0:
        out.append((cut[j], j))
        j = cut[j]
    return out[::-1]


def padded_width(width: int, step: int, max_length: int) -> int:
    """``width`` tokens rounded up to a multiple of ``step``, never past ``max_length`` (nor below ``width``)."""
    return min(-(-width // step) * step, max(width, max_length))


def chunk_batches(
    lengths: Sequence[int], batch_size: int, sort: bool, pass_cost: float = PASS_COST_TOKENS
) -> list[np.ndarray]:
    """The batches ``Predictor.logits`` runs for one chunk of texts of these token lengths, as index arrays into
    the chunk: sorted by length and cut by ``length_batches``, or in input order, ``batch_size`` at a time."""
    n = len(lengths)
    if not sort:
        return [np.arange(a, min(n, a + batch_size)) for a in range(0, n, batch_size)]
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[a:e] for a, e in length_batches([lengths[i] for i in order], batch_size, pass_cost)]


def time_shares(timings: dict[str, float]) -> dict[str, float]:
    """Each phase's share of the total time (0..1), from a ``Predictor.timings``-shaped dict."""
    total = timings.get("total") or 0.0
    return {k: (v / total if total else 0.0) for k, v in timings.items() if k != "total"}


def engine_of(meta: dict) -> str | None:
    """The backend an export's record names (its target's engine): ``openvino``, ``onnx`` for ONNX Runtime's."""
    rec = meta.get("export") or {}
    return target_of_record(rec).engine if rec else None


class Predictor:
    def __init__(self, backend, tokenizer, label_names: list[str], max_length: int, meta: dict | None = None):
        self.backend = backend
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.max_length = max_length
        self.meta = meta or {}
        self.calibration = Calibration.from_meta(self.meta)
        self._input_names = set(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
        self.model_dir: Path | None = None
        # The text cleaning the model was trained with (mentions -> @user, ...); None when unknown.
        self.clean_config: CleanConfig | None = None
        # Seconds spent per phase of ``logits`` since the last reset: where the time goes (bench, predict).
        # The phases are on the caller's thread and add up to the total: with ``overlap``, "tokenize" is the
        # time spent waiting for the tokenizer (the first chunk, and any chunk the model caught up with);
        # the tokenizer's work hidden behind the model is ``tokenize_hidden``, outside the total.
        self.timings: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.tokenize_hidden = 0.0
        self.overlap = True
        self.pass_cost_tokens: float = PASS_COST_TOKENS  # what ``length_batches`` weighs a pass at

    def reset_timings(self) -> None:
        self.timings = dict.fromkeys(PHASES, 0.0)
        self.tokenize_hidden = 0.0

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", "none")

    @property
    def pad_multiple(self) -> int:
        """The engine's batch widths are multiples of this many tokens (``padded_width``)."""
        return int(getattr(self.backend, "pad_multiple", 1))

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Raw texts cleaned the way the training data was (``data.clean`` of the run), if that is known.

        ``logits`` does not clean: evaluation passes texts that are already clean. Callers holding raw
        user text (bulk predict, serving) call this first.
        """
        return prepare_texts(texts, self.clean_config)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        backend: str = "auto",
        threads: int | None = None,
        allow_pickle: bool = False,
        precision: str | None = None,
        overlap: bool = True,
    ) -> Predictor:
        """The Predictor for a model folder or an export.

        ``backend``: ``auto`` runs an export on the engine its record names (ONNX Runtime or OpenVINO) and a
        model folder on torch. ``precision`` (OpenVINO only: fp32, bf16, int8) defaults to the export's.
        ``overlap``: tokenize the next chunk of a long input while the model runs this one.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ToxdistillError(
                f"model folder not found: {model_dir}", "give a folder written by toxdistill or save_pretrained"
            )
        if backend not in BACKEND_NAMES:
            raise ToxdistillError(f"unknown backend {backend!r}", f"use {', '.join(BACKEND_NAMES)}")
        meta = read_meta(model_dir)
        onnx_file = find_onnx_file(model_dir, meta)
        if backend == "auto":
            backend = engine_of(meta) or ("onnx" if onnx_file is not None else "torch")
        if backend == "torch" and not _torch_installed():
            # A serving install without torch (toxdistill[serve]) reads exports only: one line, no traceback.
            raise ToxdistillError(
                f"{model_dir} is a torch model folder, and torch or transformers is not installed",
                f"serve or score its ONNX export ('toxdistill export'), or {TRAIN_INSTALL}",
            )
        if threads and backend == "torch":
            import torch

            torch.set_num_threads(threads)
        if backend == "openvino":
            import_openvino()  # before the tokenizer: without the extra, the install line is all there is to say
        tokenizer = _load_tokenizer(model_dir, backend)
        be: OnnxBackend | OpenVinoBackend | TorchBackend
        if backend == "torch":
            be = torch_be = TorchBackend(model_dir, allow_pickle)
            id2label = torch_be.config.id2label
            max_pos = torch_be.config.max_position_embeddings
            problem_type = torch_be.config.problem_type
        else:
            be = _export_backend(model_dir, meta, backend, onnx_file, threads, precision)
            cfg = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
            id2label = cfg.get("id2label") or {}
            max_pos = cfg.get("max_position_embeddings", 512)
            problem_type = cfg.get("problem_type")
        if "task" not in meta and is_multi_label(meta, problem_type):
            meta = {**meta, "task": MULTI_LABEL_TASK}  # a multi-label folder saved by transformers alone
        label_names = meta.get("label_names") or [id2label[k] for k in sorted(id2label, key=int)]
        max_length = min(int(meta.get("max_length") or 512), int(max_pos or 512))
        if isinstance(be, TorchBackend) and tokenizer.vocab_size and tokenizer.vocab_size > be.config.vocab_size:
            raise ToxdistillError(
                f"{model_dir}: tokenizer vocabulary ({tokenizer.vocab_size}) is larger than the model's "
                f"({be.config.vocab_size})",
                "save the tokenizer that belongs to this model",
            )
        pred = cls(be, tokenizer, label_names, max_length, meta)
        pred.model_dir = model_dir
        pred.clean_config = find_clean_config(model_dir, meta)
        pred.overlap = overlap
        return pred

    # ------------------------------------------------------------------ core
    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids per text (truncated to ``max_length``) and a flag for the texts that were cut."""
        texts = [safe_text(t) for t in texts]  # the tokenizer rejects lone surrogates outright
        enc = self.tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
        truncated = np.array([len(x) > self.max_length for x in enc], dtype=bool)
        if truncated.any():
            cut = self.tokenizer(
                [t for t, f in zip(texts, truncated) if f], truncation=True, max_length=self.max_length
            )["input_ids"]
            it = iter(cut)
            enc = [next(it) if f else x for x, f in zip(enc, truncated)]
            log.info("truncated %d of %d texts to %d tokens", int(truncated.sum()), len(texts), self.max_length)
        return enc, truncated

    def logits(
        self, texts: Sequence[str], batch_size: int = 64, sort: bool = True, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits in input order, and the truncation flags.

        Each chunk of the input (``pipeline_chunks``) is tokenized, sorted by token length (``sort``) into
        batches and run; with ``self.overlap`` the next chunk is tokenized on a worker thread meanwhile.
        """
        n = len(texts)
        if n == 0:
            return np.zeros((0, len(self.label_names)), dtype=np.float32), np.zeros(0, dtype=bool)
        clock = time.perf_counter
        t_start = clock()
        chunks = pipeline_chunks(texts, batch_size, sort)
        out = np.empty((n, len(self.label_names)), dtype=np.float32)
        truncated = np.empty(n, dtype=bool)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="predict", unit="text")
        waited = worked = batching = model = 0.0
        pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize") if self.overlap and len(chunks) > 1 else None
        try:
            ahead = pool.submit(self._encode_timed, texts, chunks[0]) if pool else None
            for k, idx in enumerate(chunks):
                t0 = clock()
                ids, cut, spent = ahead.result() if ahead is not None else self._encode_timed(texts, idx)
                waited, worked = waited + clock() - t0, worked + spent
                if pool is not None and k + 1 < len(chunks):
                    ahead = pool.submit(self._encode_timed, texts, chunks[k + 1])
                truncated[idx] = cut
                for sel in chunk_batches([len(x) for x in ids], batch_size, sort, self.pass_cost_tokens):
                    t1 = clock()
                    batch = self.batch_inputs([ids[i] for i in sel])
                    t2 = clock()
                    out[idx[sel]] = self.backend(batch)
                    batching, model = batching + t2 - t1, model + clock() - t2
                    if bar is not None:
                        bar.update(len(sel))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()
        total = clock() - t_start
        tm = self.timings
        tm["tokenize"] += waited
        tm["batching"] += batching
        tm["model"] += model
        tm["other"] += total - waited - batching - model  # sorting, the loop, bookkeeping
        tm["total"] += total
        self.tokenize_hidden += max(0.0, worked - waited)
        return out, truncated

    def _encode_timed(self, texts: Sequence[str], idx: np.ndarray) -> tuple[list[list[int]], np.ndarray, float]:
        t = time.perf_counter()
        ids, cut = self.encode([texts[i] for i in idx])
        return ids, cut, time.perf_counter() - t

    def batch_inputs(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        """One padded batch with the inputs the model takes."""
        padded = self.tokenizer.pad({"input_ids": rows}, return_tensors="np")
        input_ids, mask = self._widen(padded["input_ids"].astype(np.int64), padded["attention_mask"].astype(np.int64))
        batch = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return {k: v for k, v in batch.items() if k in self._input_names}

    def measure_pass_cost(self, batch: int = 16, width: int = 32, reps: int = 5) -> float:
        """Time this model's fixed cost of a pass on this machine, in padded tokens, and use it from now on
        (``pass_cost_tokens``: what ``length_batches`` weighs against padding when it cuts a small batch).

        Timed the way a server's micro-batches meet the engine: a pass of one 8-token text alternates with one of
        ``batch`` texts of ``width`` tokens, so each pays for a change of input shape. From the medians, a token
        costs the difference over the difference in tokens, and a pass's fixed cost is what is left of the small
        pass. One thread on an AVX-512 EPYC: 184-221 tokens for the 1-layer CNN in OpenVINO int8, which pays
        ~0.3 ms for every new input shape; 37-40 for it in ONNX Runtime int8; 41-54 and 17-19 for a 3-layer
        transformer in the two. On random batches of 16 tweets, the CNN in OpenVINO scored 24-29% more weighed at
        256 than at 16, and the transformer in ONNX Runtime 25% less.
        """
        ids = self.encode(["you are all so kind to me today"])[0][0]
        width = max(9, min(width, self.max_length))
        small = self.batch_inputs([(ids * 8)[:8]])
        big = self.batch_inputs([(ids * (width // len(ids) + 1))[:width]] * batch)
        times: dict[int, list[float]] = {8: [], batch * width: []}
        for k in range(reps + 1):
            for tokens, inputs in ((8, small), (batch * width, big)):
                t0 = time.perf_counter()
                self.backend(inputs)
                if k:  # the first round compiles and warms up
                    times[tokens].append(time.perf_counter() - t0)
        t_small, t_big = (float(np.median(v)) for v in times.values())
        per_token = max(t_big - t_small, 1e-9) / (batch * width - 8)
        self.pass_cost_tokens = float(np.clip(t_small / per_token - 8, 1, 1024))
        return self.pass_cost_tokens

    def _widen(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch padded on to a multiple of the engine's ``pad_multiple`` tokens (never past ``max_length``),
        on the tokenizer's padding side; the mask hides the extra tokens, so the answers do not change."""
        width = ids.shape[1]
        extra = padded_width(width, self.pad_multiple, self.max_length) - width
        if extra <= 0:
            return ids, mask
        at = (
            ((0, 0), (extra, 0)) if getattr(self.tokenizer, "padding_side", "right") == "left" else ((0, 0), (0, extra))
        )
        return np.pad(ids, at, constant_values=self.tokenizer.pad_token_id), np.pad(mask, at)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (``Calibration.probabilities``)."""
        return self.calibration.probabilities(logits)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """Class ids with the tuned decision offsets; multi-label: (n, L) bools (``Calibration.decide``)."""
        return self.calibration.decide(logits)

    def classify(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """Result dicts (``scoring.score_results``) for texts that are already clean."""
        return score_results(self, *self.logits(texts, batch_size))


def _export_backend(
    model_dir: Path,
    meta: dict,
    backend: str,
    onnx_file: Path | None,
    threads: int | None,
    precision: str | None,
) -> OnnxBackend | OpenVinoBackend:
    """The engine for an export folder: ONNX Runtime on its ``.onnx`` file, or OpenVINO on its IR (or on the
    ONNX file, which OpenVINO reads too)."""
    if backend == "onnx":
        if onnx_file is None:
            raise ToxdistillError(f"{model_dir} has no .onnx file", "run 'toxdistill export' first")
        return OnnxBackend(onnx_file, threads)
    graph = find_openvino_file(model_dir, meta) or onnx_file
    if graph is None:
        raise ToxdistillError(
            f"{model_dir} has no OpenVINO IR or .onnx file", "run 'toxdistill export --target openvino-fp32' first"
        )
    rec = meta.get("export") or {}
    made_for = target_of_record(rec) if rec else None
    own = made_for.precision if made_for is not None and made_for.engine == "openvino" else None
    return OpenVinoBackend(graph, precision or own or "fp32", threads)


def _load_tokenizer(model_dir: Path, backend: str):
    """The folder's tokenizer. An export's ``tokenizer.json`` is read by ``tokenizers`` alone, so scoring an
    export imports neither transformers nor torch; a torch folder, or a tokenizer without that file, goes
    through transformers."""
    if backend != "torch":
        fast = JsonTokenizer.load(model_dir)
        if fast is not None:
            return fast
        if not _torch_installed():
            raise ToxdistillError(
                f"{model_dir} has no {TOKENIZER_FILE} with a pad token; reading its tokenizer needs transformers "
                "and torch, which are not installed",
                f"re-export the model with a fast tokenizer, or {TRAIN_INSTALL}",
            )
    # heavy: imports torch and transformers; reached only for torch folders and slow-only tokenizers
    from toxdistill.models.teacher import load_tokenizer

    return load_tokenizer(str(model_dir))


def prepare_texts(texts: Sequence[str], clean_config) -> list[str]:
    """Raw texts as a model saw its training data: cleaned with its ``data.clean`` settings when known,
    and always safe to tokenize (``safe_text``)."""
    if clean_config is None:
        return [safe_text(t) for t in texts]
    return [clean_text(t, clean_config) for t in texts]


class BaselineScorer:
    """The saved TF-IDF baseline behind the Predictor's interface: ``prepare``, ``logits``,
    ``probabilities`` and ``decide``, with the calibration fitted for it."""

    def __init__(self, folder: Path, meta: dict | None = None, max_length: int = 512):
        try:
            # heavy: scikit-learn, which a serving install for exports (toxdistill[serve]) leaves out
            from toxdistill.models.baseline import TfidfLR
        except ImportError as e:
            missing = e.name or "scikit-learn"
            raise ToxdistillError(
                f"the TF-IDF baseline in {folder} needs {missing}, not installed", "pip install scikit-learn"
            ) from None

        meta = read_meta(folder) if meta is None else meta
        try:
            self.model = TfidfLR.load(folder)
        except (OSError, ValueError, KeyError) as e:
            raise ToxdistillError(f"cannot load baseline from {folder}: {e}", "re-run its stage") from None
        self.label_names = meta.get("label_names") or list(self.model.label_names)
        self.max_length = max_length  # no token window: callers that count words (occlusion) stop here
        self.meta = meta
        self.calibration = Calibration.from_meta(meta)
        self.clean_config = find_clean_config(folder, meta)  # it was fitted on cleaned training texts
        self.backend_name = "tfidf"

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return prepare_texts(texts, self.clean_config)

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return self.model.logits(list(texts))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return self.calibration.probabilities(logits)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        return self.calibration.decide(logits)


# A baseline has no token window; callers that count words (occlusion in serve) stop here.
BASELINE_MAX_WORDS = 512


def load_scorer(
    folder: Path, threads: int | None = None, backend: str = "auto", meta: dict | None = None
) -> Predictor | BaselineScorer:
    """The one loader: a Predictor for a transformers folder or an export, the BaselineScorer for the
    TF-IDF baseline's folder."""
    if is_baseline_folder(folder):
        return BaselineScorer(folder, meta, BASELINE_MAX_WORDS)
    return Predictor.load(folder, backend=backend, threads=threads)
