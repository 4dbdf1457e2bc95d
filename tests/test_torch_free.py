"""Serving and scoring an ONNX export without torch: the tokenizer read by ``tokenizers`` alone, and
``toxdistill serve`` / ``predict`` / the Predictor run in subprocesses where torch (and the rest that the
``serve-onnx`` extra leaves out) cannot be imported."""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from toxdistill.errors import ToxdistillError
from toxdistill.inference.tokenizer import JsonTokenizer

from conftest import REPO, SAMPLE_TEXTS

pytest.importorskip("onnxruntime")
tomllib = pytest.importorskip("tomllib")  # Python 3.11+

# Left out of toxdistill[serve-onnx] (pyarrow is the parquet extra, which pandas imports when it is there).
# Set to None in sys.modules, they behave as if not installed: `import` raises ImportError and
# importlib.util.find_spec answers None.
ABSENT = ("torch", "transformers", "sklearn", "scipy", "matplotlib", "peft", "accelerate", "pyarrow")
PRELUDE = f"""
import atexit, sys
_at_start = set(sys.modules)  # what site (.pth files) loaded before any code of ours
for _name in {ABSENT!r}:
    sys.modules[_name] = None
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the test prelude failed to hide torch")

def _imported():
    import os
    out = os.environ.get("TOXDISTILL_TEST_MODULES")
    if out:
        with open(out, "w") as f:
            mods = {{m.split(".")[0] for m, mod in list(sys.modules.items()) if mod is not None and m not in _at_start}}
            f.write("\\n".join(sorted(mods)))

atexit.register(_imported)
"""
CLI = PRELUDE + "from toxdistill.cli import main\nsys.exit(main(sys.argv[1:]))\n"
KEY = "lean-key-5c1d0e2f9a8b7c6d"
MARKER = "zebra7431 marker text"
TEXTS = [*SAMPLE_TEXTS, "Ünïcödé café naïve 日本語 😀 #tag", "", "  spaced   out  ", "x" * 300]


def _env(tmp_path: Path, name: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOXDISTILL_TEST_MODULES": str(tmp_path / f"{name}.mods")}
    env.pop("TOXDISTILL_API_KEYS", None)
    return env


@pytest.fixture(scope="module")
def export(tiny_export) -> Path:
    return tiny_export("onnx-fp32")  # the default target


# ---------------------------------------------------------------- the tokenizer
@pytest.mark.parametrize("side", ["right", "left"])
def test_json_tokenizer_matches_transformers(export, tmp_path, side):
    from transformers import AutoTokenizer

    folder = export
    if side == "left":  # a folder whose tokenizer pads and truncates on the left
        folder = tmp_path / "left"
        hf = AutoTokenizer.from_pretrained(export)
        hf.padding_side = hf.truncation_side = "left"
        hf.save_pretrained(folder)
    hf = AutoTokenizer.from_pretrained(folder)
    ours = JsonTokenizer.load(folder)
    assert ours is not None
    assert ours.model_input_names == hf.model_input_names and ours.vocab_size == hf.vocab_size
    for kw in ({"truncation": False, "add_special_tokens": True}, {"truncation": True, "max_length": 8}):
        want, got = hf(TEXTS, **kw)["input_ids"], ours(TEXTS, **kw)["input_ids"]
        assert got == want, kw
    want = hf.pad({"input_ids": want}, return_tensors="np")
    got = ours.pad({"input_ids": got})
    for k in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(got[k], want[k])
        assert got[k].dtype == np.int64


def test_json_tokenizer_ignores_truncation_saved_in_the_file(export, tmp_path):
    folder = tmp_path / "saved-trunc"
    folder.mkdir()
    spec = json.loads((export / "tokenizer.json").read_text())
    spec["truncation"] = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "tokenizer_config.json").write_text((export / "tokenizer_config.json").read_text())
    ids = JsonTokenizer.load(folder)(["one two three four five six"])["input_ids"][0]
    assert len(ids) == 8  # [CLS] six words [SEP]: not cut to the file's 4


def test_json_tokenizer_falls_back_or_fails_in_one_line(export, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    assert JsonTokenizer.load(empty) is None  # no tokenizer.json: the caller uses transformers
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ToxdistillError, match="cannot load a tokenizer from"):
        JsonTokenizer.load(tmp_path / "bad")
    nopad = tmp_path / "nopad"
    nopad.mkdir()
    (nopad / "tokenizer.json").write_text((export / "tokenizer.json").read_text())
    assert JsonTokenizer.load(nopad) is None  # no pad token to batch with: transformers decides


def test_an_export_is_scored_through_the_json_tokenizer(export):
    from toxdistill.inference.predict import Predictor

    pred = Predictor.load(export)
    assert pred.backend_name == "onnx" and isinstance(pred.tokenizer, JsonTokenizer)


# ---------------------------------------------------------------- without torch, in subprocesses
def _lean_dists(also: tuple[str, ...] = ()) -> set[str]:
    """toxdistill[serve-onnx] (and the requirements ``also``) with everything they pull in, as installed here
    (canonical names)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve-onnx"]
    seen: set[str] = set()
    todo = [Requirement(r) for r in (*extra, *also)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for spec in map(Requirement, requires):
            if spec.marker is None or any(spec.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(spec)
    return seen


def _assert_lean(mods_file: Path, also: tuple[str, ...] = ()) -> None:
    """Every third-party module the subprocess imported belongs to the serve-onnx set (plus ``also``)."""
    from packaging.utils import canonicalize_name

    owners = importlib.metadata.packages_distributions()
    mods = set(mods_file.read_text().split())
    assert not mods & set(ABSENT)
    dists = {canonicalize_name(d) for m in mods - set(sys.stdlib_module_names) for d in owners.get(m, [])}
    extra = dists - _lean_dists(also) - {"toxdistill"}
    assert not extra, f"imported, but not in toxdistill[serve-onnx]: {sorted(extra)}"


PREDICTOR = PRELUDE + (
    "import json\nfrom toxdistill.inference.predict import Predictor\n"
    "p = Predictor.load(sys.argv[1])\n"
    "logits, cut = p.logits(json.loads(sys.argv[2]), 4)\n"
    "print(json.dumps({'logits': logits.tolist(), 'truncated': cut.tolist(), 'backend': p.backend_name}))\n"
)


def _score_without_torch(folder: Path, tmp_path: Path, name: str) -> dict:
    """``Predictor.load(folder).logits(TEXTS, 4)`` in a subprocess where torch cannot be imported."""
    r = subprocess.run(
        [sys.executable, "-c", PREDICTOR, str(folder), json.dumps(TEXTS)],
        env=_env(tmp_path, name),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_predictor_scores_an_export_without_torch(export, tiny_model_dir, tmp_path):
    from toxdistill.inference.predict import Predictor

    got = _score_without_torch(export, tmp_path, "predictor")
    assert got["backend"] == "onnx"
    ref, cut = Predictor.load(tiny_model_dir, backend="torch").logits(TEXTS, 4)  # transformers' tokenizer, torch
    np.testing.assert_allclose(np.array(got["logits"]), ref, atol=1e-4, rtol=0)
    assert got["truncated"] == cut.tolist() and any(cut)
    _assert_lean(tmp_path / "predictor.mods")


def test_predict_cli_on_an_export_without_torch(export, tiny_model_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("you are lovely\nget out of here\n\nlol\n")
    out = tmp_path / "out.csv"
    r = subprocess.run(
        [sys.executable, "-c", CLI, "predict", str(export), str(src), "-o", str(out)],
        env=_env(tmp_path, "predict"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = out.read_text().splitlines()
    assert rows[0].startswith("text,label,label_id") and len(rows) == 4
    _assert_lean(tmp_path / "predict.mods")
    # A torch folder says in one line what this install can do instead.
    r = subprocess.run(
        [sys.executable, "-c", CLI, "predict", str(tiny_model_dir), str(src), "-o", str(tmp_path / "t.csv")],
        env=_env(tmp_path, "torch-folder"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "torch or transformers is not installed" in r.stderr and "toxdistill export" in r.stderr


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def _request(port: int, method: str, path: str, body: dict | None = None, key: str | None = None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    c.request(method, path, json.dumps(body) if body is not None else None, headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_serve_an_export_without_torch_with_keys_and_quiet_logs(export, tmp_path):
    """`toxdistill -v serve` (access log on) on loopback, port 0, stopped at the end: keys work, metrics are
    scraped, and neither the key nor a classified text reaches the logs."""
    keys = tmp_path / "keys"
    keys.write_text(f"# the team's key\n{KEY}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "-v",
            "serve",
            str(export),
            "--port",
            "0",
            "--threads",
            "1",
            "--api-keys",
            str(keys),
        ],
        env=_env(tmp_path, "serve"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    log: list[str] = []
    try:
        port = None
        deadline = time.monotonic() + 90
        while port is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"server did not start: {''.join(log)}")
            log.append(line)
            found = re.search(r"serving 1 model\(s\) .* at http://localhost:(\d+)/", line)
            port = int(found.group(1)) if found else None
            if proc.poll() is not None and port is None:
                pytest.fail(f"server exited: {''.join(log)}")
        assert _request(port, "GET", "/healthz")[0] == 200
        assert _request(port, "POST", "/api/classify", {"texts": MARKER})[0] == 401
        assert _request(port, "POST", "/api/classify", {"texts": MARKER}, key="wrong-" + KEY)[0] == 401
        status, body = _request(port, "POST", "/api/classify", {"texts": [MARKER, "hello"]}, key=KEY)
        assert status == 200 and len(json.loads(body)["results"]) == 2
        status, body = _request(port, "GET", "/metrics", key=KEY)
        assert status == 200 and 'toxdistill_model_info{backend="onnx"' in body.decode()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C: uvicorn's graceful stop, then ours (and atexit)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    while not lines.empty():
        log.append(lines.get())
    text = "".join(log)
    assert "Traceback" not in text, text
    assert "API keys required (1 from" in text
    assert '"POST /api/classify HTTP/1.1" 401' in text and '"POST /api/classify HTTP/1.1" 200' in text  # -v logs
    assert KEY not in text and MARKER.split()[0] not in text
    _assert_lean(tmp_path / "serve.mods")


def test_the_documented_lean_install_is_the_extra():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve-onnx"]
    doc = (REPO / "docs" / "serving.md").read_text()
    line = next(
        x for x in doc.splitlines() if x.startswith("pip install") and "--no-deps" not in x and "onnxruntime" in x
    )
    assert sorted(re.findall(r'"([^"]+)"', line)) == sorted(extra)
    assert "pip install --no-deps" in doc


def test_predictor_scores_an_openvino_export_without_torch(tiny_export, tmp_path):
    """An OpenVINO int8 export needs the openvino runtime beside serve-onnx; not nncf, which made it."""
    pytest.importorskip("openvino")
    from toxdistill.inference.predict import Predictor

    folder = tiny_export("openvino-int8")
    got = _score_without_torch(folder, tmp_path, "openvino")
    assert got["backend"] == "openvino"
    ref, cut = Predictor.load(folder).logits(TEXTS, 4)
    np.testing.assert_allclose(np.array(got["logits"]), ref, atol=1e-5, rtol=0)
    assert got["truncated"] == cut.tolist()
    mods = set((tmp_path / "openvino.mods").read_text().split())
    assert "openvino" in mods and "nncf" not in mods
    _assert_lean(tmp_path / "openvino.mods", also=("openvino",))
