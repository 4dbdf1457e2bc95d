import pytest
import torch

from toxdistill.errors import ToxdistillError
from toxdistill.models.students import build_student, resolve_layers

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
    ],
)
def test_resolve_layers_errors(spec, n, msg):
    with pytest.raises(ToxdistillError, match=msg):
        resolve_layers(spec, n)


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
