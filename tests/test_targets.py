"""Export targets: one type, one canonical string, one parse; an engine added to the registry alone reaches the
command line's choices, the bench's candidates, the folder names and the configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from toxdistill import targets
from toxdistill.cli import build_parser
from toxdistill.errors import ToxdistillError
from toxdistill.targets import (
    Engine,
    Target,
    all_targets,
    check_bench_rows,
    check_frontier_target,
    parse_target,
    target_names,
    target_of_record,
)

# The strings users read in the docs and type on the command line.
CANONICAL = ["onnx-fp32", "onnx-int8", "onnx-int8-fused", "openvino-fp32", "openvino-bf16", "openvino-int8"]


def test_the_documented_strings_are_targets_and_round_trip():
    for name in CANONICAL:
        t = parse_target(name)
        assert str(t) == t.name == name and parse_target(t) is t
    assert parse_target("onnx-int8-fused") == Target("onnx", "int8", fused=True)
    assert parse_target(" openvino-bf16 ") == Target("openvino", "bf16")
    # Every target's string parses back to the same target, and no two share a string.
    assert [parse_target(n) for n in target_names()] == all_targets()
    assert len(set(target_names())) == len(target_names())
    assert target_names() == [*CANONICAL[:2], "onnx-fp32-fused", *CANONICAL[2:]]


@pytest.mark.parametrize(
    "bad",
    ["onnx-bf16", "openvino-fp32-fused", "onnx", "onnx-int8-fused-x", "onnx-int8-unfused", "tensorrt-fp16", "", "-"],
)
def test_a_bad_string_is_one_line_naming_every_valid_one(bad):
    with pytest.raises(ToxdistillError) as e:
        parse_target(bad)
    msg = str(e.value)
    assert "\n" not in msg and f"unknown target {bad.strip()!r}" in msg
    assert all(name in msg for name in target_names())


def test_a_target_is_checked_when_made_not_only_when_parsed():
    with pytest.raises(ToxdistillError, match="unknown target 'onnx-bf16'"):
        Target("onnx", "bf16")
    with pytest.raises(ToxdistillError, match="unknown target 'openvino-int8-fused'"):
        Target("openvino", "int8", fused=True)


def test_what_a_target_says_about_its_export():
    # Folder names as they have always been on disk: ONNX fp32 leaves its precision out.
    suffixes = {n: parse_target(n).folder_suffix for n in target_names()}
    assert suffixes == {
        "onnx-fp32": "-onnx",
        "onnx-int8": "-onnx-int8",
        "onnx-fp32-fused": "-onnx-fused",
        "onnx-int8-fused": "-onnx-int8-fused",
        "openvino-fp32": "-openvino-fp32",
        "openvino-bf16": "-openvino-bf16",
        "openvino-int8": "-openvino-int8",
    }
    assert [parse_target(n).graph_file for n in ("onnx-fp32", "onnx-int8-fused", "openvino-bf16")] == [
        "model.onnx",
        "model.int8.onnx",
        "model.xml",
    ]
    # The parity block that gates it, under the names export records already hold.
    assert [parse_target(n).parity_block for n in ("onnx-fp32", "onnx-int8-fused", "openvino-int8")] == [
        "fp32",
        "int8",
        "openvino-int8",
    ]
    assert parse_target("openvino-int8").requires == ("onnxruntime", "openvino", "nncf")


def test_the_target_of_an_export_record():
    assert target_of_record({"engine": "onnxruntime", "precision": "int8", "fusion": {"fused_ops": {}}}) == Target(
        "onnx", "int8", fused=True
    )
    assert target_of_record({"engine": "openvino", "precision": "bf16"}) == Target("openvino", "bf16")
    # A record written before precision was recorded: int8 by its quantization.
    assert target_of_record({"engine": "onnxruntime", "quantization": {"method": "dynamic"}}).precision == "int8"
    assert target_of_record({}) == Target("onnx", "fp32")


def test_bench_rows_and_frontier_choices():
    assert check_bench_rows(["torch-naive", " onnx-int8", "openvino-bf16"]) == (
        "torch-naive",
        "onnx-int8",
        "openvino-bf16",
    )
    with pytest.raises(ToxdistillError, match="unknown bench target 'torch'.*torch-naive, torch-sorted, onnx-fp32"):
        check_bench_rows(["torch"])
    assert check_frontier_target("auto") == "auto" and check_frontier_target("openvino-int8") == "openvino-int8"
    with pytest.raises(ValueError, match="valid: auto, onnx-fp32"):
        check_frontier_target("onnx-int4")


# ---------------------------------------------------------------- a made-up engine, registered in one place
MADE_UP = Engine(
    name="tensorcore",
    precisions=("fp32", "int4"),
    files={"fp32": "model.tc", "int4": "model.int4.tc"},
    record_engine="tensorcore-runtime",
    record_format="tc-graph",
    install="pip install tensorcore",
    fuses=True,
)


@pytest.fixture
def made_up_engine(monkeypatch):
    monkeypatch.setitem(targets.ENGINES, MADE_UP.name, MADE_UP)
    return MADE_UP


def test_a_registered_engine_parses_and_names_its_folders(made_up_engine, tmp_path):
    from toxdistill.export.naming import default_output

    t = parse_target("tensorcore-int4-fused")
    assert t == Target("tensorcore", "int4", fused=True) and t.spec is MADE_UP
    assert {"tensorcore-fp32", "tensorcore-int4", "tensorcore-fp32-fused", "tensorcore-int4-fused"} <= set(
        target_names()
    )
    with pytest.raises(ToxdistillError, match="unknown target 'tensorcore-bf16'.*tensorcore-int4"):
        parse_target("tensorcore-bf16")
    model = tmp_path / "m"
    assert default_output(model, t) == tmp_path / "m-tensorcore-int4-fused"
    assert default_output(model, parse_target("tensorcore-fp32")) == tmp_path / "m-tensorcore-fp32"
    assert t.graph_file == "model.int4.tc" and t.parity_block == "tensorcore-int4"
    assert target_of_record({"engine": "tensorcore-runtime", "precision": "int4", "fusion": {"x": 1}}) == t


def test_a_registered_engine_is_among_the_command_lines_choices(made_up_engine):
    parser = build_parser()
    assert parser.parse_args(["export", "m", "--target", "tensorcore-int4"]).target == "tensorcore-int4"
    assert parser.parse_args(["frontier", "r", "--target", "tensorcore-fp32-fused"]).target == "tensorcore-fp32-fused"
    sub = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    assert "tensorcore-int4-fused" in sub["bench"].format_help().replace("\n", "").replace(" ", "")
    assert "tensorcore-int4" in sub["export"].format_help()


def test_a_registered_engine_is_a_bench_and_auto_candidate(made_up_engine, monkeypatch):
    from toxdistill.benchmark import auto, bench

    monkeypatch.setattr(auto, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(auto, "missing_module", lambda target: None)  # every engine installed, this one too
    names = [t.name for t in auto.available_candidates()]
    # The fused fp32 graph is measured only on request, as ONNX Runtime's.
    assert names[-3:] == ["tensorcore-fp32", "tensorcore-int4", "tensorcore-int4-fused"]
    rows = bench.rows_to_bench(None)
    assert rows[-3:] == ("tensorcore-fp32", "tensorcore-int4", "tensorcore-int4-fused")
    assert bench.rows_to_bench(("torch-sorted", " tensorcore-int4")) == ("torch-sorted", "tensorcore-int4")


def test_a_registered_engine_that_is_not_installed_is_left_out_with_its_install_line(monkeypatch):
    from toxdistill.benchmark import auto

    missing = dataclasses.replace(MADE_UP, requires=("no_such_module_for_toxdistill_tests",))
    monkeypatch.setitem(targets.ENGINES, missing.name, missing)
    monkeypatch.setattr(auto, "cpu_has_bf16", lambda: True)
    notes: list[str] = []
    assert not [t for t in auto.runnable(targets.default_targets(), notes.append) if t.engine == "tensorcore"]
    assert [n for n in notes if "tensorcore" in n] == [
        "note: no_such_module_for_toxdistill_tests is not installed, so the tensorcore targets are left out "
        "(pip install tensorcore)"
    ]


def test_a_registered_engine_is_a_frontier_target_in_the_configuration(made_up_engine, tmp_path: Path):
    from toxdistill.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("frontier: {target: tensorcore-int4}\n")
    assert load_config(cfg).frontier.target == "tensorcore-int4"
