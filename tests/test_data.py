import numpy as np
import pytest

from toxdistill.config import CleanConfig, DataConfig
from toxdistill.data.dataset import clean_text, load_dataset
from toxdistill.data.split import make_or_load_split, stratified_split
from toxdistill.errors import ToxdistillError


def test_cleaning_steps_and_switches():
    raw = "RT @bob: so &amp; so &#128514; http://t.co/abc   end"
    assert clean_text(raw, CleanConfig()) == "RT @user: so & so \U0001f602 http end"
    off = CleanConfig(unescape_html=False, normalize_mentions=False, normalize_urls=False, collapse_whitespace=False)
    assert clean_text(raw, off) == raw


def test_split_is_deterministic_and_stratified():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=1003, p=[0.06, 0.77, 0.17])
    ids = np.arange(1003) + 10
    a = stratified_split(labels, ids, 0.1, 0.1, seed=7)
    b = stratified_split(labels, ids, 0.1, 0.1, seed=7)
    c = stratified_split(labels, ids, 0.1, 0.1, seed=8)
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["test"], c["test"])
    all_ids = np.concatenate(list(a.values()))
    assert len(all_ids) == len(set(all_ids.tolist())) == 1003
    lab = dict(zip(ids.tolist(), labels.tolist()))
    for part, frac in (("test", 0.1), ("val", 0.1), ("train", 0.8)):
        for cls in range(3):
            n_cls = int((labels == cls).sum())
            got = sum(1 for i in a[part] if lab[int(i)] == cls)
            assert abs(got - n_cls * frac) <= 1, (part, cls, got, n_cls * frac)


def _csv(tmp_path, rows, header="tweet,class"):
    p = tmp_path / "d.csv"
    p.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_split_saved_and_reused(tmp_path):
    p = _csv(tmp_path, [f"text number {i},{i % 3}" for i in range(60)])
    cfg = DataConfig()
    ds = load_dataset(p, cfg)
    s1 = make_or_load_split(ds, tmp_path / "split.json", cfg, seed=1)
    s2 = make_or_load_split(ds, tmp_path / "split.json", cfg, seed=999)  # the saved split wins
    assert np.array_equal(s1.test.ids, s2.test.ids)
    assert len(s1.train) + len(s1.val) + len(s1.test) == 60


def test_empty_texts_dropped_and_counted(tmp_path, caplog):
    p = _csv(tmp_path, ["hello,1", '"   ",2', ",0", "world,2"])
    ds = load_dataset(p, DataConfig())
    assert ds.texts == ["hello", "world"]
    assert "dropped 2 rows" in caplog.text


@pytest.mark.parametrize(
    "content,header,msg",
    [
        ("", None, "empty"),
        ("hello,5", "tweet,class", "outside classes"),
        ("hello,x", "tweet,class", "outside classes"),
        ("hello,1", "text,label", "no column 'tweet'"),
        ("hello,", "tweet,class", "no label"),
    ],
)
def test_bad_data(tmp_path, content, header, msg):
    p = tmp_path / "bad.csv"
    p.write_text((header + "\n" if header else "") + content, encoding="utf-8")
    with pytest.raises(ToxdistillError, match=msg):
        load_dataset(p, DataConfig())


def test_binary_and_wrong_encoding(tmp_path):
    b = tmp_path / "b.csv"
    b.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(ToxdistillError, match="binary"):
        load_dataset(b, DataConfig())
    latin = tmp_path / "l.csv"
    latin.write_bytes("tweet,class\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(ToxdistillError, match="UTF-8"):
        load_dataset(latin, DataConfig())


def test_generic_jsonl_with_label_map(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a b", "y": "toxic"}\n{"text": "c", "y": "fine"}\n')
    cfg = DataConfig(text_col="text", label_col="y", label_names=["toxic", "fine"], label_map={"toxic": 0, "fine": 1})
    ds = load_dataset(p, cfg)
    assert ds.labels.tolist() == [0, 1]


VOTES = DataConfig(vote_cols=["h", "o", "n"])


def test_vote_shares_read_and_kept_aligned_through_subset(tmp_path):
    rows = ["a tweet,0,2,1,0", '"   ",1,0,3,0', "another,1,0,3,0", "third,2,1,1,4"]
    ds = load_dataset(_csv(tmp_path, rows, "tweet,class,h,o,n"), VOTES)
    assert ds.texts == ["a tweet", "another", "third"]  # the empty row is dropped with its votes
    np.testing.assert_allclose(ds.votes, [[2 / 3, 1 / 3, 0], [0, 1, 0], [1 / 6, 1 / 6, 4 / 6]], rtol=1e-6)
    sub = ds.subset(np.array([ds.ids[2], ds.ids[0]]))
    np.testing.assert_allclose(sub.votes, ds.votes[[2, 0]])
    assert load_dataset(_csv(tmp_path, rows, "tweet,class,h,o,n"), DataConfig()).votes is None


@pytest.mark.parametrize(
    "row,header,msg",
    [
        ("x,0,1,1,-1", "tweet,class,h,o,n", "negative or all zero"),
        ("x,0,0,0,0", "tweet,class,h,o,n", "negative or all zero"),
        ("x,0,1,y,0", "tweet,class,h,o,n", "not numbers"),
        ("x,0,inf,1,0", "tweet,class,h,o,n", "not numbers"),
        ("x,0,1,1", "tweet,class,h,o", "no column 'n'"),
    ],
)
def test_bad_vote_columns(tmp_path, row, header, msg):
    with pytest.raises(ToxdistillError, match=msg):
        load_dataset(_csv(tmp_path, [row], header), VOTES)


def test_votes_of_dropped_rows_are_not_checked(tmp_path):
    ds = load_dataset(_csv(tmp_path, ['"  ",0,,,', "kept,1,0,3,0"], "tweet,class,h,o,n"), VOTES)
    assert ds.texts == ["kept"] and ds.votes.tolist() == [[0.0, 1.0, 0.0]]
