"""Shares of py-spy's samples (raw/collapsed format) by what the code was doing, idle waits left out.

    python shares.py before-threads-h11.stacks.txt.gz

Each stack is put in the category of its deepest frame that matches one; stacks whose innermost frame is a
wait (a lock, a queue, the selector) are idle and not counted.
"""
import collections
import gzip
import re
import sys

CATS = [  # (name, regex on a frame), checked leaf first
    ("model pass (ONNX Runtime)", r"onnxruntime|OnnxBackend|\(predict\.py.*__call__"),
    ("tokenizing", r"tokenizers|_encode|tokenizer\.py|batch_inputs"),
    ("cleaning texts (prepare)", r"prepare_texts|clean\.py|readers\.py:.*safe_text|normalize"),
    ("results/calibration (numpy)", r"score_results|probabilities|decide|scoring\.py|calibrat"),
    ("JSON encode of the answer", r"json/encoder|json/__init__.*dumps|render \(starlette|orjson|jsonable_encoder|serialize_response"),
    ("request body parse+validation (FastAPI/pydantic)", r"pydantic|request_body_to_args|_validate|fastapi/dependencies|json/decoder|json/__init__.*loads|schemas\.py|solve_dependencies|Request\.(body|json)|requests\.py"),
    ("API key check", r"auth\.py"),
    ("metrics middleware (prometheus)", r"serve/metrics\.py|prometheus_client"),
    ("origin/host check, security headers, body limit, admission", r"security\.py|limits\.py"),
    ("model hop (threadpool or batcher queue, futures)", r"anyio|to_thread|run_in_threadpool|models\.py|queue\.py|concurrent/futures|threading\.py|_settle|_deliver|call_soon_threadsafe"),
    ("routing/middleware plumbing (Starlette/FastAPI)", r"starlette|fastapi"),
    ("HTTP parse/write (uvicorn)", r"uvicorn/protocols|httptools|h11"),
    ("event loop (asyncio/uvloop)", r"asyncio|uvloop|selectors"),
]
IDLE = re.compile(r"^(Condition\.wait|Event\.wait|Queue\.get|wait|select|_worker)$")


def main(path: str) -> None:
    tot: collections.Counter = collections.Counter()
    busy = idle = 0
    for line in (gzip.open(path, "rt") if path.endswith(".gz") else open(path)):
        stack, c = line.rstrip().rsplit(" ", 1)
        frames = stack.split(";")
        if IDLE.match(frames[-1].split(" (")[0]) or "selectors.py" in frames[-1]:
            idle += int(c)
            continue
        cat = "other"
        for f in reversed(frames):
            hit = next((name for name, rx in CATS if re.search(rx, f)), None)
            if hit:
                cat = hit
                break
        tot[cat] += int(c)
        busy += int(c)
    for cat, c in tot.most_common():
        print(f"{100 * c / busy:5.1f}%  {cat}")
    print(f"busy samples {busy}, idle samples left out {idle}")


if __name__ == "__main__":
    main(sys.argv[1])
