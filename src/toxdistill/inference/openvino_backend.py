"""OpenVINO, the second CPU engine beside ONNX Runtime (the extra ``openvino``).

It runs the fp32 ONNX export, or the OpenVINO IR (``model.xml`` + ``model.bin``) that ``toxdistill export
--target openvino-<precision>`` writes, at one of three precisions:

* ``fp32``: ``INFERENCE_PRECISION_HINT=f32``. Set on purpose: on a CPU with bf16 (AVX512_BF16, AMX) OpenVINO
  runs an fp32 graph in bf16 unless told otherwise.
* ``bf16``: the same graph with the hint ``bf16``, where the CPU lists BF16 among its
  ``OPTIMIZATION_CAPABILITIES``; elsewhere a one-line notice and fp32, never an error.
* ``int8``: an IR quantized by NNCF (static quantization: activation ranges calibrated on training texts).
  The ops NNCF leaves in floating point run at the engine's default precision (bf16 where the CPU has it);
  the export's parity check measures the result as it runs.

Importing this module imports nothing heavy; ``openvino`` is imported when a backend is built.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.console import Say
from toxdistill.errors import ToxdistillError
from toxdistill.targets import ENGINES

log = logging.getLogger(__name__)

OPENVINO = ENGINES["openvino"]
INSTALL = OPENVINO.install
IR_FILE = OPENVINO.files["fp32"]  # its weights are model.bin beside it, as openvino.save_model writes them
_HINTS = {"fp32": "f32", "bf16": "bf16"}  # int8: no hint, the engine's default for the float ops


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def import_openvino() -> Any:
    """The ``openvino`` module, or the one line that says how to install it."""
    try:
        import openvino
    except ImportError:
        raise ToxdistillError("OpenVINO is not installed", INSTALL) from None
    return openvino


def _warn(msg: str) -> None:
    log.warning("%s", msg)


def cpu_has_bf16(core: Any | None = None) -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 here (BF16 among the device's optimization capabilities)."""
    if core is None:
        core = import_openvino().Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a plugin that cannot say has no bf16 we could rely on
        return False


def check_precision(precision: str) -> None:
    if precision not in OPENVINO.precisions:
        raise ToxdistillError(f"unknown OpenVINO precision {precision!r}", f"use {', '.join(OPENVINO.precisions)}")


def runnable_precision(precision: str, core: Any | None = None, say: Say = _warn) -> str:
    """``precision``, or fp32 with a one-line notice when bf16 is asked for on a CPU without it."""
    check_precision(precision)
    if precision == "bf16" and not cpu_has_bf16(core):
        say("note: this CPU has no bf16 support that OpenVINO can use; running in fp32 instead")
        return "fp32"
    return precision


def compile_config(precision: str, threads: int | None) -> dict[str, Any]:
    """compile_model properties: one stream for one batch at a time (the Predictor's way), the precision hint,
    and no CPU pinning.

    OpenVINO pins its inference threads to cores by default, and every process picks the same first cores: two
    server workers (or Ray replicas) of one thread each both ran on core 0 while core 1 idled. Unpinned, two
    processes of one thread scored 8,420-9,516 texts/s against 5,849-7,065 pinned, and one process of two
    threads the same either way (the shipped 1-layer CNN in int8, AVX-512 EPYC; docs/benchmarks.md, "Serving under
    load")."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    if precision in _HINTS:
        config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def padded_rows(n: int) -> int:
    """The batch size OpenVINO runs ``n`` rows at: ``n`` up to 4, else the next multiple of 4 (at most 3 rows
    more), so the server's passes of 1-64 texts come in 19 sizes."""
    return n if n <= 4 else -(-n // 4) * 4


class OpenVinoBackend:
    """One compiled model and one infer request; calls are serialised, as a request serves one call at a time."""

    name = "openvino"
    # OpenVINO compiles and keeps kernels for every input shape it meets. A server's micro-batches of 1-32 real
    # tweets took one process from 267 to 784 MB in 4,500 batches, still growing; padded to a multiple of 8
    # tokens, it stayed at 375 MB at the same speed (2,522-2,791 against 2,630-2,738 texts/s; 16 was slower,
    # 2,043-2,135). The shipped 1-layer CNN in int8, one thread, AVX-512 EPYC.
    pad_multiple = 8

    def __init__(self, model_file: Path, precision: str = "fp32", threads: int | None = None, say: Say = _warn):
        ov = import_openvino()
        core = ov.Core()
        self.precision = runnable_precision(precision, core, say)
        self.requested_precision = precision
        try:
            compiled = core.compile_model(str(model_file), "CPU", compile_config(self.precision, threads))
        except Exception as e:  # noqa: BLE001 - any read or compile failure is a user-facing bad folder
            msg = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
            raise ToxdistillError(f"cannot load {model_file}: {msg}", "re-export the model") from None
        self.model_file = Path(model_file)
        self.compiled = compiled
        self.inputs = {name for port in compiled.inputs for name in port.get_names()}
        # What the float ops run at (bf16 for int8 graphs on a bf16 CPU): the export record reports it.
        self.inference_precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._request = compiled.create_infer_request()
        self._output = compiled.output(0)
        self._lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for the batch's rows. Its rows are made up to ``padded_rows`` with copies of the last one (real
        tokens, whose answers are dropped): the number of rows is a shape too. A server weighing its passes at
        their measured cost makes passes of every size from 1 to 64 texts: one process grew from 535 to 574 MB in
        4,500 of them, still growing (every shape up to 64 rows and 64 tokens took it to 1 GB), and two workers
        held 0.97-1.12 GB. In multiples of 4 rows, the process held 396-408 MB and the workers 0.77-0.83 GB, at
        the same speed behind the server (3,471-3,788 against 3,271-3,920 single-text requests/s, three suites
        each; the shipped CNN in int8, AVX-512 EPYC; docs/serving.md, "Load")."""
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items() if k in self.inputs}
        n = len(next(iter(feed.values())))
        rows = padded_rows(n)
        if rows > n:
            feed = {k: np.concatenate([v, np.repeat(v[-1:], rows - n, axis=0)]) for k, v in feed.items()}
        with self._lock:
            out = self._request.infer(feed)
            # A copy: the request reuses its output buffer on the next call.
            return np.array(out[self._output][:n], dtype=np.float32)


def find_openvino_file(model_dir: Path, meta: dict | None = None) -> Path | None:
    """The graph an OpenVINO backend reads from a folder: the file its export record names, else the IR."""
    named = ((meta or {}).get("export") or {}).get("file")
    if named and (Path(model_dir) / named).is_file():
        return Path(model_dir) / named
    ir = Path(model_dir) / IR_FILE
    return ir if ir.is_file() else None
