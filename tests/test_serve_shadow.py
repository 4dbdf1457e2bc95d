"""`serve --shadow`: a reference model rescores a share of the served texts off the request path."""

from __future__ import annotations

import json
import stat
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
parser = pytest.importorskip("prometheus_client.parser")

from fastapi.testclient import TestClient  # noqa: E402

from toxdistill.cli import build_parser, main  # noqa: E402
from toxdistill.cli.serve import _load_shadow, _shadow_folder  # noqa: E402
from toxdistill.serve.app import create_app  # noqa: E402
from toxdistill.serve.models import close_models, load_models  # noqa: E402
from toxdistill.serve.shadow import DisagreementLog, Shadow  # noqa: E402

TEXTS = [
    "you are a wonderful person",
    "I hate all of you so much, get out of this country",
    "this is trash and so are you @someone http://x.example/a",
    "what a lovely day at the beach",
    "lol",
    "good bad hate love you them nice awful",
    "the a the a",
    "awful awful awful",
]


@pytest.fixture
def served(tiny_run):
    """The odd student, fresh per test: the shadow hooks onto the loaded model."""
    ms = load_models(tiny_run, "odd", batch_wait_ms=0.0)
    yield ms
    close_models(ms)


def reference(tiny_run, name: str):
    """A model loaded on its own, as ``load_shadow`` loads the reference."""
    return load_models(tiny_run, name, batch_wait_ms=None)[name]


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in parser.text_string_to_metric_families(client.get("/metrics").text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def blocking(ref):
    """``ref`` with its scoring held until ``release`` is set; ``entered`` is set once the worker is inside."""
    entered, release = threading.Event(), threading.Event()
    score = ref.score

    def held(*args, **kwargs):
        entered.set()
        release.wait(10)
        return score(*args, **kwargs)

    ref.score = held
    return entered, release


def every_path(client: TestClient) -> int:
    """Texts sent through the API's fast path, the page (an explanation), and an uploaded file."""
    for k in range(0, len(TEXTS), 3):
        assert client.post("/api/classify", json={"texts": TEXTS[k : k + 3]}).status_code == 200
    assert client.post("/", data={"text": TEXTS[1]}).status_code == 200
    upload = "\n".join(TEXTS[:4]).encode()
    assert client.post("/batch", files={"file": ("c.txt", upload, "text/plain")}).status_code == 200
    return len(TEXTS) + 1 + 4


def test_same_model_agrees_on_every_path(served, tiny_run):
    shadow = Shadow(reference(tiny_run, "odd"), rate=1.0)
    client = TestClient(create_app(served, shadow=shadow), base_url="http://localhost")
    n = every_path(client)
    assert shadow.settle()
    m = scrape(client)
    assert value(m, "toxdistill_shadow_sampled_total", model="odd") == n
    assert value(m, "toxdistill_shadow_compared_total", model="odd") == n
    assert value(m, "toxdistill_shadow_agree_total", model="odd") == n
    assert value(m, "toxdistill_shadow_tv_distance_count", model="odd") == n
    assert value(m, "toxdistill_shadow_tv_distance_sum", model="odd") < 1e-4
    served_mix = sum(
        v for (k, lab), v in m.items() if k == "toxdistill_shadow_labels_total" and ("scorer", "served") in lab
    )
    assert served_mix == n
    assert value(m, "toxdistill_shadow_dropped_total", model="odd") == 0
    assert value(m, "toxdistill_shadow_info", shadow="odd", rate="1", max_busy="0.25") == 1
    shadow.close()


def test_another_model_disagrees_and_only_an_opted_in_log_keeps_texts(served, tiny_run, tmp_path):
    quiet = Shadow(reference(tiny_run, "even"), rate=1.0)
    client = TestClient(create_app(served, shadow=quiet), base_url="http://localhost")
    every_path(client)
    assert quiet.settle()
    assert list(tmp_path.iterdir()) == []  # nothing written without a log
    quiet.close()

    served["odd"].shadow = None
    logged = Shadow(reference(tiny_run, "even"), rate=1.0, log_file=DisagreementLog(tmp_path / "d.jsonl", 1 << 20))
    client = TestClient(create_app(served, shadow=logged), base_url="http://localhost")
    n = every_path(client)
    assert logged.settle()
    m = scrape(client)
    agree = value(m, "toxdistill_shadow_agree_total", model="odd")
    assert value(m, "toxdistill_shadow_compared_total", model="odd") == n and agree < n
    f = tmp_path / "d.jsonl"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in f.read_text().splitlines()]
    assert len(lines) == n - agree == value(m, "toxdistill_shadow_logged_total")
    cleaned = set(served["odd"].prepare(TEXTS))
    for rec in lines:
        assert rec["label"] != rec["shadow_label"] and rec["model"] == "odd" and rec["shadow"] == "even"
        assert rec["text"] in cleaned and rec["time"].endswith("+00:00")
        assert set(rec["probabilities"]) == set(rec["shadow_probabilities"]) == set(served["odd"].label_names)
    logged.close()


def test_the_request_does_not_wait_for_the_shadow(served, tiny_run):
    ref = reference(tiny_run, "teacher")
    entered, release = blocking(ref)
    shadow = Shadow(ref, rate=1.0)
    client = TestClient(create_app(served, shadow=shadow), base_url="http://localhost")
    r = client.post("/api/classify", json={"texts": "lol"})
    assert r.status_code == 200 and r.json()["results"]
    assert entered.wait(10)
    assert not release.is_set()  # answered while the shadow is still held
    assert value(scrape(client), "toxdistill_shadow_compared_total", model="odd") == 0
    release.set()
    assert shadow.settle()
    assert value(scrape(client), "toxdistill_shadow_compared_total", model="odd") == 1
    shadow.close()


def test_a_full_queue_drops_and_counts(served, tiny_run):
    ref = reference(tiny_run, "teacher")
    entered, release = blocking(ref)
    shadow = Shadow(ref, rate=1.0, queue_size=2)
    client = TestClient(create_app(served, shadow=shadow), base_url="http://localhost")
    assert client.post("/api/classify", json={"texts": "first"}).status_code == 200
    assert entered.wait(10)  # the worker holds the first text; the queue is empty
    assert client.post("/api/classify", json={"texts": TEXTS[:5]}).status_code == 200
    m = scrape(client)
    assert value(m, "toxdistill_shadow_dropped_total", model="odd") == 3
    assert value(m, "toxdistill_shadow_queue") == 2
    release.set()
    assert shadow.settle()
    m = scrape(client)
    assert value(m, "toxdistill_shadow_compared_total", model="odd") == 3
    assert value(m, "toxdistill_shadow_sampled_total", model="odd") == 6
    shadow.close()


def test_sampling_is_seeded_and_near_the_rate(served, tiny_run):
    ref = reference(tiny_run, "teacher")
    picks = []
    for _ in range(2):
        shadow = Shadow(ref, rate=0.25, seed=7)
        shadow.watch(served)
        shadow.offer(served["odd"], ["t"] * 400, np.zeros((400, 3)))
        assert shadow.settle()
        picks.append(
            sum(s.value for fam in shadow.collect() for s in fam.samples if s.name == "toxdistill_shadow_sampled_total")
        )
        shadow.close()
    assert picks[0] == picks[1] and 60 < picks[0] < 140


def test_the_reference_rests_to_stay_within_its_share_of_time(served, tiny_run):
    ref = reference(tiny_run, "odd")
    rests, rested = [], threading.Event()
    shadow = Shadow(ref, rate=1.0, max_busy=0.25)
    shadow._rest = lambda s: (rests.append(s), rested.set())  # what it would wait, recorded instead of waited
    shadow.watch(served)
    shadow.offer(served["odd"], ["lol"], np.zeros((1, 3)))
    assert rested.wait(10) and rests[0] > 0  # after its pass, the worker rests
    shadow._pause(0.04)
    assert rests[-1] == pytest.approx(0.12)  # at a quarter of the time, three times the pass
    shadow.close()
    unbounded = Shadow(ref, rate=1.0, max_busy=1.0)
    unbounded._rest = rests.append
    unbounded._pause(0.04)
    assert len(rests) == 2  # no rest
    unbounded.close()


def test_log_rotates_and_stays_private(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("")
    f.chmod(0o644)
    log = DisagreementLog(f, max_bytes=300)
    for k in range(20):
        log.write({"text": f"text {k}", "pad": "x" * 40})
    log.close()
    old = tmp_path / "d.jsonl.1"
    assert old.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.jsonl.1"]
    for p in (f, old):
        assert p.stat().st_size <= 300 and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert json.loads(f.read_text().splitlines()[-1])["text"] == "text 19"


def test_flags_load_the_log_only_when_asked(tiny_run, tmp_path):
    for extra, expect in (([], False), (["--shadow-log", str(tmp_path / "d.jsonl")], True)):
        a = build_parser().parse_args(["serve", str(tiny_run), "--shadow", "teacher", *extra])
        a.shadow_folder = _shadow_folder(a)
        shadow = _load_shadow(a)
        assert shadow is not None and shadow.name == "teacher" and shadow.rate == 0.05
        assert (shadow.log_file is not None) is expect and (tmp_path / "d.jsonl").exists() is expect
        shadow.close()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shadow", "teacher", "--shadow-rate", "0"], "outside (0, 1]"),
        (["--shadow", "teacher", "--shadow-rate", "1.5"], "outside (0, 1]"),
        (["--shadow", "nope"], "neither a model of this run nor a model folder"),
        (["--shadow-rate", "0.1"], "needs --shadow MODEL"),
        (["--shadow", "teacher", "--shadow-queue", "0"], "--shadow-queue 0 must be at least 1"),
        (["--shadow", "teacher", "--shadow-max-busy", "2"], "outside (0, 1]"),
    ],
)
def test_bad_shadow_flags_are_one_line(extra, message, tiny_run, capsys):
    code = main(["serve", str(tiny_run), "--port", "0", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
