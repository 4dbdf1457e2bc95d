"""Serving and scoring an ONNX export without torch: ``pip install 'toxdistill[serve]'`` (the base dependencies
and the serve extra, read from pyproject.toml) pulls in no training package, the tokenizer is read by
``tokenizers`` alone, ``toxdistill serve`` / ``predict`` / the Predictor run in subprocesses where torch (and the
rest of the train extra) cannot be imported, and the training commands refuse there in one line."""

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
from toxdistill.extras import TRAIN_INSTALL, TRAIN_MODULES
from toxdistill.inference.tokenizer import JsonTokenizer

from conftest import REPO, SAMPLE_TEXTS

pytest.importorskip("onnxruntime")
tomllib = pytest.importorskip("tomllib")  # Python 3.11+

# Left out of toxdistill[serve]: the train extra's modules, and pyarrow (the parquet extra, which pandas imports
# when it is there). Set to None in sys.modules, they behave as if not installed: `import` raises ImportError and
# importlib.util.find_spec answers None.
ABSENT = (*TRAIN_MODULES, "pyarrow")
# The distributions that a serving install must not pull in, under their canonical names.
TRAINING_DISTS = {"torch", "transformers", "peft", "accelerate", "safetensors", "scikit-learn", "scipy", "matplotlib"}
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
def _extra(name: str) -> list[str]:
    """The requirements of ``toxdistill[name]`` in pyproject.toml, an extra naming toxdistill's own extras
    (``toxdistill[a,b]``) replaced by theirs; ``name=""`` is the base dependencies."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["optional-dependencies"][name] if name else project["dependencies"]
    out: list[str] = []
    for r in reqs:
        req = Requirement(r)
        if req.name == "toxdistill":
            out.extend(x for e in sorted(req.extras) for x in _extra(e))
        else:
            out.append(r)
    return out


def _lean_dists(also: tuple[str, ...] = ()) -> set[str]:
    """``pip install 'toxdistill[serve]'`` (and the requirements ``also``) with everything they pull in, as
    installed here (canonical names)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r) for r in (*_extra(""), *_extra("serve"), *also)]
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


# uvicorn imports the packages of its `standard` extra wherever they are installed (watchfiles for its reloader,
# websockets), used or not; a serving install does without them.
OPTIONAL_IMPORTS = ("uvicorn[standard]",)


def _assert_lean(mods_file: Path, also: tuple[str, ...] = ()) -> None:
    """Every third-party module the subprocess imported belongs to the toxdistill[serve] set (plus ``also``). A
    module that several distributions share (a namespace package such as opentelemetry) needs one of them in it."""
    from packaging.utils import canonicalize_name

    owners = importlib.metadata.packages_distributions()
    mods = set(mods_file.read_text().split())
    assert not mods & set(ABSENT)
    lean = _lean_dists((*also, *OPTIONAL_IMPORTS)) | {"toxdistill"}
    extra = {
        m
        for m in mods - set(sys.stdlib_module_names)
        if owners.get(m) and not {canonicalize_name(d) for d in owners[m]} & lean
    }
    assert not extra, f"imported, but not in toxdistill[serve]: {sorted(extra)}"


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


def test_the_serve_install_pulls_in_no_training_package():
    lean = _lean_dists()
    assert {"onnxruntime", "tokenizers", "fastapi", "uvicorn", "numpy"} <= lean
    assert not lean & TRAINING_DISTS, sorted(lean & TRAINING_DISTS)
    assert _extra("serve-onnx") == _extra("serve")  # the earlier name installs the same


def test_the_train_extra_brings_what_the_training_commands_check_for():
    """extras.TRAIN_MODULES (what `toxdistill run` and the others check before they start) come from the train
    extra, and the set-up script, CI's, and the `all` extra install it beside the server."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    train = {canonicalize_name(Requirement(r).name) for r in _extra("train")}
    assert train >= TRAINING_DISTS
    owners = importlib.metadata.packages_distributions()
    for module in TRAIN_MODULES:
        assert {canonicalize_name(d) for d in owners.get(module, [])} & train, module
    assert set(_extra("all")) >= {*_extra("train"), *_extra("serve"), *_extra("onnx")}
    setup = re.search(r'-e "\.\[([^\]]+)\]"', (REPO / "scripts" / "setup.sh").read_text())
    assert setup is not None and {"train", "serve", "onnx"} <= set(setup.group(1).split(","))


TRAINING_COMMANDS = (
    PRELUDE
    + """
import contextlib, io, json
from toxdistill.cli import main
out = {}
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    out[argv[0]] = [code, err.getvalue()]
print(json.dumps(out))
"""
)


def test_training_commands_refuse_in_one_line_without_torch(tmp_path):
    """Every command that needs the train extra names it in one line on a serving install, before it reads
    anything (the paths do not exist)."""
    from toxdistill.cli import _COMMANDS

    needs = [c.NAME for c in _COMMANDS if getattr(c, "NEEDS_TRAIN", False)]
    assert {"run", "check", "evaluate", "export", "bench", "frontier"} <= set(needs)
    assert not {"serve", "predict"} & set(needs)
    missing = str(tmp_path / "nothing")
    argv = [["run", "--data", missing]] + [
        [n, missing] + (["--data", missing] if n == "evaluate" else []) for n in needs if n != "run"
    ]
    r = subprocess.run(
        [sys.executable, "-c", TRAINING_COMMANDS, json.dumps(argv)],
        env=_env(tmp_path, "commands"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    for name, (code, err) in json.loads(r.stdout).items():
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert err.startswith(f"toxdistill: error: toxdistill {name} needs torch") and TRAIN_INSTALL in err, err


def test_the_documented_lean_install_is_the_extra():
    doc = (REPO / "docs" / "serving.md").read_text()
    section = doc[doc.index("## A lean install") :]
    section = section[: section.index("\n## ")]
    assert "pip install 'toxdistill[serve]'" in section and "--no-deps" not in section
    assert TRAIN_INSTALL in section


def test_predictor_scores_an_openvino_export_without_torch(tiny_export, tmp_path):
    """An OpenVINO int8 export needs the openvino runtime beside toxdistill[serve]; not nncf, which made it."""
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
