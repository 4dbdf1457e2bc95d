import re

import pytest
import torch

from toxdistill.errors import ToxdistillError
from toxdistill.models.students import build_student, hidden_pairs, resolve_layers

from conftest import tiny_bert


@pytest.mark.parametrize(
    "spec,n,expected",
    [
        ("odd", 6, [1, 3, 5]),
        ("even", 6, [2, 4, 6]),
        ("odd", 12, [1, 3, 5, 7, 9, 11]),
        ("even", 12, [2, 4, 6, 8, 10, 12]),
        ([1, 6], 6, [1, 6]),
        ([4, 2], 6, [4, 2]),
        ("spread:1", 6, [6]),
        ("spread:2", 6, [3, 6]),
        ("spread:3", 6, [2, 4, 6]),
        ("spread:4", 6, [2, 3, 5, 6]),  # halves round up: 1.5 → 2, 4.5 → 5
        ("spread:6", 6, [1, 2, 3, 4, 5, 6]),
        ("spread:2", 12, [6, 12]),
        ("spread:3", 12, [4, 8, 12]),
        ("spread:4", 12, [3, 6, 9, 12]),
        ("spread:2", 5, [3, 5]),  # an odd-sized model has spread students too
        ("bottom:1", 6, [1]),
        ("bottom:3", 6, [1, 2, 3]),
        ("top:1", 6, [6]),
        ("top:3", 12, [10, 11, 12]),
    ],
)
def test_resolve_layers(spec, n, expected):
    assert resolve_layers(spec, n) == expected


@pytest.mark.parametrize(
    "spec,n,msg",
    [
        ("odd", 5, "even number"),
        ("even", 7, "even number"),
        ([], 6, "empty"),
        ([0], 6, "out of range"),
        ([7], 6, "out of range"),
        ([2, 2], 6, "repeats"),
        ("middle", 6, "unknown layer set"),
        ("spread:7", 6, "layer set 'spread:7' asks for 7 layers; the teacher has 6"),
        ("bottom:13", 12, "asks for 13 layers; the teacher has 12"),
        ("top:0", 6, "asks for 0 layers"),
        ("spread:-1", 6, "asks for -1 layers"),
    ],
)
def test_resolve_layers_errors(spec, n, msg):
    with pytest.raises(ToxdistillError, match=re.escape(msg)):
        resolve_layers(spec, n)


@pytest.mark.parametrize("n", range(1, 25))
def test_spread_is_distinct_increasing_and_ends_at_the_top(n):
    for k in range(1, n + 1):
        layers = resolve_layers(f"spread:{k}", n)
        assert len(layers) == k and layers[-1] == n and layers == sorted(set(layers)) and layers[0] >= 1
    if n % 2 == 0:
        assert resolve_layers(f"spread:{n // 2}", n) == resolve_layers("even", n)


def test_a_cut_pretrained_student_is_named_in_the_message():
    with pytest.raises(ToxdistillError, match="the student packaged:x has 6"):
        resolve_layers("spread:7", 6, owner="student packaged:x")


def test_hidden_pairs_follow_the_copied_layers_or_the_relative_depth():
    assert hidden_pairs(3, 6, [1, 3, 5]) == [(0, 0), (1, 1), (2, 3), (3, 5)]
    assert hidden_pairs(2, 6, [6, 2]) == [(0, 0), (1, 6), (2, 2)]
    assert hidden_pairs(3, 12) == [(0, 0), (1, 4), (2, 8), (3, 12)]  # a student of another family
    assert hidden_pairs(6, 12) == [(0, 0), *((j, 2 * j) for j in range(1, 7))]
    assert hidden_pairs(4, 2) == [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2)]  # deeper than its teacher: repeats
    with pytest.raises(ValueError):
        hidden_pairs(3, 6, [1, 2])


def test_run_refuses_a_depth_beyond_the_teacher_in_one_line_before_training(tmp_path, capsys):
    from toxdistill.cli import main

    data = tmp_path / "ok.csv"
    data.write_text("tweet,class\n" + "\n".join(f"text {i},{i % 3}" for i in range(30)) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("baseline: false\nstages: [{name: s1, kind: distill, layers: 'spread:7'}]\n")
    code = main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "runs"), "--data", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "stage 's1': layer set 'spread:7' asks for 7 layers; the teacher has 6" in err[0]
    assert not (tmp_path / "runs" / "davidson-minilm" / "models").exists()  # nothing trained


@pytest.mark.parametrize("n_layers,spec", [(6, "odd"), (6, "even"), (12, "even"), (12, "odd")])
def test_student_copies_chosen_layers_and_shares_no_storage(n_layers, spec):
    teacher = tiny_bert(n_layers=n_layers)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    layers = resolve_layers(spec, n_layers)
    student = build_student(teacher, spec)

    assert student.config.num_hidden_layers == len(layers) == n_layers // 2
    assert teacher.config.num_hidden_layers == n_layers  # the teacher's config is untouched
    t_ptrs = {p.data_ptr() for p in teacher.state_dict().values()}
    assert not t_ptrs & {p.data_ptr() for p in student.state_dict().values()}

    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    for i, src in enumerate(layers):
        for key in [k for k in s_sd if f"encoder.layer.{i}." in k]:
            t_key = key.replace(f"encoder.layer.{i}.", f"encoder.layer.{src - 1}.")
            assert torch.equal(s_sd[key], t_sd[t_key]), key
    for key in [k for k in s_sd if "encoder.layer." not in k]:  # embeddings, pooler, classifier
        assert torch.equal(s_sd[key], t_sd[key]), key

    with torch.no_grad():  # training the student leaves the teacher alone
        for p in student.parameters():
            p.add_(1.0)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_student_runs_forward_and_matches_a_full_copy_when_all_layers_kept():
    teacher = tiny_bert(n_layers=4)
    clone = build_student(teacher, [1, 2, 3, 4])
    x = torch.randint(100, 2000, (2, 7))
    with torch.no_grad():
        assert torch.allclose(clone(input_ids=x).logits, teacher(input_ids=x).logits, atol=1e-6)
