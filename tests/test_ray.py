"""``toxdistill predict --runner ray`` on a local Ray instance: the same output file as ``--runner local``, byte for
byte (Parquet: the same table), every row exactly once (also when a worker is killed), and one-line errors that
leave nothing behind."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toxdistill.cli import main
from toxdistill.errors import ToxdistillError
from toxdistill.inference.ray_scoring import ScoringActor, predict_ray
from toxdistill.inference.score_file import ScoreOptions

from conftest import SAMPLE_TEXTS

TEXTS = [f"{t} {k}" for k in range(5) for t in SAMPLE_TEXTS]  # 30 rows, texts of very different lengths


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module: starting one costs seconds, every test reuses it."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'toxdistill[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'toxdistill[ray]'")
    # The test module's own actor class (DyingActor) travels by value: workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        object_store_memory=256 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def shards(tmp_path):
    """Three shards (an id column in input order and the text), written in row groups of 4 rows."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "shards"
    folder.mkdir()
    df = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS, "source": "x"})
    for k, part in enumerate((df.iloc[:7], df.iloc[7:19], df.iloc[19:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part-{k}.parquet", row_group_size=4)
    return folder


def _run(argv, capsys):
    code = main([str(a) for a in argv] + ["--progress", "off"])
    return code, capsys.readouterr().err


def _assert_same_scores(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    """A folder's shards against the local file: same rows in row-id order, same columns after ``row_id``,
    same values (probabilities to float tolerance: the runners' batches differ here)."""
    assert got.columns[0] == "row_id" and got["row_id"].tolist() == list(range(len(ref)))
    got = got.drop(columns="row_id").reset_index(drop=True)
    assert list(got.columns) == list(ref.columns)
    probs = [c for c in ref.columns if c.startswith(("p_", "pred_p_"))]
    assert len(probs) == 3
    pd.testing.assert_frame_equal(got.drop(columns=probs), ref.drop(columns=probs), check_dtype=False)
    np.testing.assert_allclose(got[probs].to_numpy(float), ref[probs].to_numpy(float), atol=1e-6)


# Both runners score each text alone on one thread: the same numbers whatever rows Ray puts in one call.
SAME = ["--batch-size", 1, "--threads", 1, "--chunk-size", 4]
# Where a reader or a writer is tested: one actor starts in half the time of two on 2 cores. Rows split between
# actors, and an actor that dies, are tested with two (the Parquet shards and the killed worker).
ONE_ACTOR = ["--actors", 1]


def _assert_same_file(ray_out: Path, local: Path) -> None:
    """The runners' output files: the same bytes; Parquet files the same table (columns, types and values)."""
    if local.suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        got, ref = pq.read_table(ray_out), pq.read_table(local)
        assert got.schema.equals(ref.schema) and got.equals(ref)
    else:
        assert ray_out.read_bytes() == local.read_bytes()


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_parquet_shards_to_a_folder_equal_local_predict(ray_local, tiny_model_dir, shards, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    local = tmp_path / "local.parquet"
    assert _run(["predict", tiny_model_dir, shards, "-o", local], capsys)[0] == 0
    out = tmp_path / "scored"
    out.mkdir()
    (out / "stale.parquet").write_bytes(b"an earlier output, replaced whole")
    code, err = _run(
        ["predict", tiny_model_dir, shards, "-o", out, "--runner", "ray", "--actors", 2, "--chunk-size", 3], capsys
    )
    assert code == 0, err
    assert "wrote 30 predictions" in err and "2 actors" in err
    files = sorted(out.glob("*.parquet"))
    assert files and "stale.parquet" not in [f.name for f in files]
    got = pd.concat([pq.read_table(f).to_pandas() for f in files]).sort_values("row_id")
    # The row id is the input position: deterministic, whatever Ray scheduled or retried.
    assert got["row_id"].tolist() == got["id"].tolist()
    _assert_same_scores(got, pq.read_table(local).to_pandas())
    assert not _leftovers(tmp_path)


def test_csv_file_to_csv_file_equals_local_predict(ray_local, tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "in.csv"
    gold = ["neither", "offensive", "hate speech"] * 10
    # Cells kept as written ("007", "NA", empty), and a gold 'label' column: both runners add pred_ columns.
    notes = ["", "NA", "x"] * 10
    pd.DataFrame({"id": [f"{i:03d}" for i in range(30)], "tweet": TEXTS, "label": gold, "note": notes}).to_csv(
        src, index=False
    )
    local, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert _run(["predict", tiny_model_dir, src, "-o", local, *SAME], capsys)[0] == 0
    # The work folder of a Ray predict of this output that was killed (SIGKILL: no clean-up ran); its process is gone.
    killed = tmp_path / f".ray.csv.{_dead_pid()}-0123abcd.tmp"
    (killed / "input").mkdir(parents=True)
    code, err = _run(["predict", tiny_model_dir, src, "-o", ray_out, "--runner", "ray", *ONE_ACTOR, *SAME], capsys)
    assert code == 0, err
    _assert_same_file(ray_out, local)
    got = pd.read_csv(ray_out, dtype={"id": str}, keep_default_na=False)
    assert list(got.columns)[:4] == ["id", "tweet", "label", "note"] and "row_id" not in got
    assert {"pred_label", "pred_p_offensive"} <= set(got.columns)
    assert got["id"].tolist()[:3] == ["000", "001", "002"] and got["note"].tolist() == notes
    assert not _leftovers(tmp_path)


class DyingActor(ScoringActor):
    """Kills its own worker process on the first batch it ever sees (the marker file says it happened)."""

    marker = ""

    def __call__(self, table):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(table)


def test_a_killed_worker_loses_and_duplicates_no_row(ray_local, tiny_model_dir, shards, tmp_path, capsys):
    local = tmp_path / "local.jsonl"
    assert _run(["predict", tiny_model_dir, shards, "-o", local, *SAME], capsys)[0] == 0
    DyingActor.marker = str(tmp_path / "died")
    out = tmp_path / "ray.jsonl"
    opts = ScoreOptions(chunk_size=4, batch_size=1, threads=1)
    s = predict_ray(tiny_model_dir, str(shards), str(out), opts, actors=2, actor_class=DyingActor)
    assert Path(DyingActor.marker).is_file()  # a worker really died mid-job
    assert s.rows == 30
    _assert_same_file(out, local)  # each row once, in input order, with its own scores
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == list(range(30))
    assert not _leftovers(tmp_path)


class FailingActor(ScoringActor):
    def __call__(self, table):
        raise ToxdistillError("a worker refused its batch", "fix the batch")


def test_an_error_in_a_worker_is_one_line_and_keeps_the_old_output(ray_local, tiny_model_dir, shards, tmp_path):
    out = tmp_path / "ray.csv"
    out.write_text("previous results\n")
    with pytest.raises(ToxdistillError) as e:
        predict_ray(tiny_model_dir, str(shards), str(out), actors=1, actor_class=FailingActor)
    assert str(e.value) == "a worker refused its batch — fix the batch"
    assert out.read_text() == "previous results\n" and not _leftovers(tmp_path)


def test_row_id_check_and_merge_without_ray(tmp_path):
    """The driver's safety net on its own: shards whose ids interleave give their scores in id order, beside
    the input's rows as the reader gives them again; a duplicate, a missing id or an input that changed (more or
    fewer rows than were scored) is refused."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from toxdistill.inference.ray_scoring import check_row_ids, merge, scores_in_order
    from toxdistill.inference.scored_output import ScoredWriter

    def shard(name: str, *groups: list[int]) -> Path:
        path = tmp_path / name
        with pq.ParquetWriter(path, pa.schema([("row_id", pa.int64()), ("label", pa.string())])) as w:
            for ids in groups:  # one row group each
                w.write_table(pa.table({"row_id": ids, "label": [f"l{i}" for i in ids]}))
        return path

    files = [shard("a.parquet", [3, 4, 0, 1], [7]), shard("b.parquet", [2, 5, 6])]
    ranges = check_row_ids(files, 8)
    assert [(r.first, r.length) for r in ranges] == [(0, 2), (2, 1), (3, 2), (5, 2), (7, 1)]

    def write(rows: int, out: Path) -> None:
        texts = [f"t{i}" for i in range(rows)]
        chunks = iter([(texts[:3], texts[:3]), (texts[3:], texts[3:])])  # chunks cut elsewhere than the ranges
        with ScoredWriter(out, "csv", ["x"]) as w:
            merge(scores_in_order(files, ranges), "txt", chunks, w)
            w.publish()

    write(8, tmp_path / "all.csv")
    got = pd.read_csv(tmp_path / "all.csv")
    assert got["text"].tolist() == [f"t{i}" for i in range(8)] and got["label"].tolist() == [f"l{i}" for i in range(8)]
    for rows in (7, 9):
        with pytest.raises(ToxdistillError, match="the input changed"):
            write(rows, tmp_path / f"{rows}.csv")
        assert not (tmp_path / f"{rows}.csv").exists()
    with pytest.raises(ToxdistillError, match="twice"):
        check_row_ids([*files, shard("c.parquet", [5])], 8)
    with pytest.raises(ToxdistillError, match="lost 1 of 9"):
        check_row_ids(files, 9)


def test_jsonl_from_stdin_to_parquet_equals_local_predict(ray_local, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The one writer: the same input and options give the same table locally and on Ray. Every Ray job starts
    its actors, a quarter of a minute on 2 cores, so each reader and each writer runs once in this module: Parquet
    shards to a folder and to JSONL, CSV to CSV (the tests above), and here JSONL, read from stdin, to Parquet."""
    import io

    src = tmp_path / "in.jsonl"
    rows = []
    for i, t in enumerate(TEXTS):  # objects that vary: fields only some rows have, nested values, a gold label
        row: dict = {"id": i, "text": f"RT @u{i}: {t} &amp; http://t.co/{i} 😂", "user": {"name": f"u{i}", "n": i}}
        if i % 3 == 0:
            row["note"] = f"é{i}"
        if i % 2:
            row["label"] = "neither"
        rows.append(json.dumps(row, ensure_ascii=i % 2 == 0))
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes()), encoding="utf-8"))
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    assert _run(["predict", tiny_model_dir, src, "-o", local, *SAME], capsys)[0] == 0
    code, err = _run(["predict", tiny_model_dir, "-", "-o", ray_out, "--runner", "ray", *ONE_ACTOR, *SAME], capsys)
    assert code == 0 and "wrote 30 predictions" in err, err
    _assert_same_file(ray_out, local)
    assert not _leftovers(tmp_path)


def _bad_input(tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    if kind == "empty-folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty", []
    if kind == "broken-parquet":
        (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
        return tmp_path / "broken.parquet", []
    if kind == "no-text-column":
        pq.write_table(pa.table({"body": ["hello"]}), tmp_path / "notext.parquet")
        return tmp_path / "notext.parquet", []
    if kind == "shards-of-two-schemas":
        (tmp_path / "mixed").mkdir()
        pq.write_table(pa.table({"text": ["a"]}), tmp_path / "mixed" / "a.parquet")
        pq.write_table(pa.table({"text": ["b"], "extra": [1]}), tmp_path / "mixed" / "b.parquet")
        return tmp_path / "mixed", []
    if kind == "csv-missing-column":
        (tmp_path / "nocol.csv").write_text("id,body\n1,hello\n")
        return tmp_path / "nocol.csv", []
    if kind == "csv-broken-late":  # fails while staging, after the first chunks were written
        (tmp_path / "late.csv").write_text("text\n" + "".join(f"row {i}\n" for i in range(6)) + '"unclosed\n')
        return tmp_path / "late.csv", ["--chunk-size", "2"]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("empty-folder", "holds no .parquet files"),
        ("broken-parquet", "is not a readable Parquet file"),
        ("no-text-column", "has no 'text', 'tweet' or 'comment' column"),
        ("shards-of-two-schemas", "has other columns or types"),
        ("csv-missing-column", "has no 'text', 'tweet' or 'comment' column"),
        ("csv-broken-late", "is not valid CSV"),
    ],
)
@pytest.mark.parametrize("out_name", ["old.csv", "old-folder"])
def test_bad_input_is_one_line_and_writes_nothing(ray_local, tiny_model_dir, tmp_path, capsys, kind, needle, out_name):
    src, extra = _bad_input(tmp_path, kind)
    out = tmp_path / out_name
    if out_name.endswith(".csv"):
        out.write_text("previous results\n")
    else:
        out.mkdir()
        (out / "part-0.parquet").write_bytes(b"previous shard")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _run(["predict", tiny_model_dir, src, "-o", out, "--runner", "ray", *extra], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("toxdistill: error:") and needle in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file or folder is left
    if out_name.endswith(".csv"):
        assert out.read_text() == "previous results\n"
    else:
        assert [p.name for p in out.iterdir()] == ["part-0.parquet"]


def test_output_that_would_delete_other_files_is_refused(ray_local, tiny_model_dir, shards, tmp_path, capsys):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "todo.txt").write_text("mine")
    for out, needle in (
        (keep, "holds other files"),
        (shards, "is or holds the input"),
        (tmp_path, "is or holds the input"),
    ):
        code, err = _run(["predict", tiny_model_dir, shards, "-o", out, "--runner", "ray"], capsys)
        assert code == 2 and needle in err, err
    assert (keep / "todo.txt").read_text() == "mine" and len(list(shards.iterdir())) == 3


def test_an_address_nothing_answers_on_fails_at_once(ray_local, tiny_model_dir, shards, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, needle in ((f"127.0.0.1:{port}", "cannot reach a Ray cluster"), ("nonsense", "is not HOST:PORT")):
        code, err = _run(
            ["predict", tiny_model_dir, shards, "-o", tmp_path / "o.csv", "--runner", "ray", "--address", address],
            capsys,
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o.csv").exists() and not _leftovers(tmp_path)


def test_without_ray_the_error_names_the_install(tiny_model_dir, tmp_path, capsys, monkeypatch):
    src = tmp_path / "t.txt"
    src.write_text("hello\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    code, err = _run(["predict", tiny_model_dir, src, "-o", tmp_path / "o.csv", "--runner", "ray"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "pip install 'toxdistill[ray]'" in lines[0], err
    assert not (tmp_path / "o.csv").exists()
    # The Ray flags mean nothing to the local runner: said, not ignored.
    code, err = _run(["predict", tiny_model_dir, src, "-o", tmp_path / "o.csv", "--actors", "2"], capsys)
    assert code == 2 and "--runner ray" in err


def test_the_front_end_applies_on_ray_as_locally(ray_local, tiny_model_dir, tmp_path, capsys):
    """A model folder whose cleaning has the front-end on: Ray's actors undo disguised spelling as local predict
    does (tests/test_frontend.py shows local predict equals the model on the front-end's output)."""
    import shutil

    from test_frontend import ALL_ON, DISGUISED

    from toxdistill.data.dataset import write_frontend_files

    folder = tmp_path / "tiny-front"
    shutil.copytree(tiny_model_dir, folder)
    meta = json.loads((folder / "toxdistill.json").read_text())
    meta["clean"] = ALL_ON.model_dump()
    (folder / "toxdistill.json").write_text(json.dumps(meta))
    write_frontend_files(folder, ALL_ON)
    src, local, ray_out = tmp_path / "in.csv", tmp_path / "local.csv", tmp_path / "ray.csv"
    pd.DataFrame({"tweet": list(DISGUISED)}).to_csv(src, index=False)
    assert _run(["predict", folder, src, "-o", local, *SAME], capsys)[0] == 0
    code, err = _run(["predict", folder, src, "-o", ray_out, "--runner", "ray", *ONE_ACTOR, *SAME], capsys)
    assert code == 0, err
    _assert_same_file(ray_out, local)
