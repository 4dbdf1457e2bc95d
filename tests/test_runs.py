"""A run folder records its format version (RUN/run.json); a folder of a version this toxdistill cannot read is
refused in one line by every command that opens it."""

import json

import pytest

from toxdistill.cli import main
from toxdistill.errors import ToxdistillError
from toxdistill.files import FORMAT_VERSION, RUN_FILE
from toxdistill.runs import check_run_format, find_models, write_run_format

from conftest import make_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    return make_tiny_run(tmp_path_factory.mktemp("fmt"), tokenizer, names=("teacher",))


def _one_line(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_a_run_folder_records_its_format_and_is_read(tiny):
    assert json.loads((tiny / RUN_FILE).read_text()) == {"format_version": FORMAT_VERSION}
    check_run_format(tiny)
    assert set(find_models(tiny)) == {"teacher"}
    check_run_format(tiny.parent / "not-made-yet")  # nothing there yet: the run writes its format when it starts


def test_a_newer_or_unrecorded_format_is_refused(tiny, tmp_path):
    newer = tmp_path / "newer"
    (newer / "models").mkdir(parents=True)
    (newer / RUN_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ToxdistillError, match=f"format version {FORMAT_VERSION + 1}; this toxdistill reads") as e:
        check_run_format(newer)
    assert "upgrade toxdistill" in str(e.value)
    (tiny / RUN_FILE).unlink()
    try:
        for path in (tiny, tiny / "models", tiny / "models" / "teacher"):  # every way of naming the run's models
            with pytest.raises(ToxdistillError, match="records no format version"):
                find_models(path)
    finally:
        write_run_format(tiny)
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / RUN_FILE).write_text("[1]")
    with pytest.raises(ToxdistillError, match="no format version this toxdistill knows"):
        check_run_format(tmp_path / "garbled")


def test_commands_refuse_an_unknown_format_in_one_line(tiny, tmp_path, capsys):
    (tiny / RUN_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    try:
        code = main(["check", str(tiny)])
        _one_line(code, capsys.readouterr().err, "this toxdistill reads version")
    finally:
        write_run_format(tiny)
    # `run` into an older folder (results but no run.json): the fix names a new folder or --force all.
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    (old / "split.json").write_text("{}")
    code = main(["run", "--output-dir", str(tmp_path / "runs"), "--name", "old"])
    _one_line(code, capsys.readouterr().err, "records no format version")
    assert not (old / RUN_FILE).exists()
