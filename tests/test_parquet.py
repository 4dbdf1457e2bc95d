"""`toxdistill predict` reads Parquet (a file, a folder or a glob of shards) and writes Parquet, on one machine."""

from __future__ import annotations

import pandas as pd
import pytest

from toxdistill.cli import main

from conftest import SAMPLE_TEXTS

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = [t for t in SAMPLE_TEXTS for _ in range(4)]  # 24 rows


@pytest.fixture
def shards(tmp_path):
    """Three shards with an id column and a text column, the middle one written in two row groups."""
    folder = tmp_path / "shards"
    folder.mkdir()
    df = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS, "source": ["x"] * len(TEXTS)})
    for k, part in enumerate((df.iloc[:7], df.iloc[7:17], df.iloc[17:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part-{k}.parquet", row_group_size=5)
    return folder


def _run(argv, capsys):
    code = main([str(a) for a in argv] + ["--progress", "off", "--chunk-size", "4"])
    return code, capsys.readouterr().err


def test_folder_of_shards_to_parquet_keeps_every_row_once_in_order(tiny_model_dir, shards, tmp_path, capsys):
    out = tmp_path / "scored.parquet"
    code, err = _run(["predict", tiny_model_dir, shards, "-o", out], capsys)
    assert code == 0, err
    got = pq.read_table(out).to_pandas()
    assert got["id"].tolist() == list(range(len(TEXTS)))  # every input row exactly once, in input order
    assert list(got.columns)[:3] == ["id", "text", "source"] and {"label", "p_hate_speech", "truncated"} <= set(got)
    # The same texts scored from a CSV give the same predictions.
    csv_in, csv_out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(csv_in, index=False)
    assert _run(["predict", tiny_model_dir, csv_in, "-o", csv_out], capsys)[0] == 0
    ref = pd.read_csv(csv_out)
    assert got["label"].tolist() == ref["label"].tolist()
    assert got["p_offensive"].tolist() == pytest.approx(ref["p_offensive"].tolist(), abs=1e-6)


def test_glob_of_shards_to_csv(tiny_model_dir, shards, tmp_path, capsys):
    out = tmp_path / "scored.csv"
    code, err = _run(["predict", tiny_model_dir, str(shards / "part-*.parquet"), "-o", out], capsys)
    assert code == 0, err
    assert pd.read_csv(out)["id"].tolist() == list(range(len(TEXTS)))


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: d / "empty-folder", "holds no .parquet files"),
        (lambda d: d / "nothing-*.parquet", "no files match"),
        (lambda d: d / "broken.parquet", "is not a readable Parquet file"),
        (lambda d: d / "notext.parquet", "has no 'text', 'tweet' or 'comment' column"),
    ],
)
def test_bad_parquet_input_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, capsys, make, needle):
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    pq.write_table(pa.table({"body": ["hello"]}), tmp_path / "notext.parquet")
    out = tmp_path / "out.parquet"
    code, err = _run(["predict", tiny_model_dir, make(tmp_path), "-o", out], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not out.exists() and not list(tmp_path.glob(".out.parquet.*"))
