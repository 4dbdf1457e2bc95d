"""One server, wrk single-text at 32 connections: requests/s, server and wrk CPU per request; optional py-spy."""
import json, os, secrets, subprocess, sys, time, tempfile, socket
from pathlib import Path
sys.path.insert(0, "/work/wt-lean/bench")
import load  # noqa

EXPORT = "/root/toxdistill-runs/quick/export/shallow-1-onnx-int8"
src, tag, spy = sys.argv[1], sys.argv[2], sys.argv[3] == "spy"
extra = sys.argv[4:] if len(sys.argv) > 4 else []
out = Path("/tmp/lean/prof")
texts = load._texts(Path("/work/shared/data/davidson/labeled_data.csv"))
tmp = Path(tempfile.mkdtemp())
files = load._suite_files(tmp, texts, None)
key = secrets.token_urlsafe(24); (tmp / "keys").write_text(key + "\n")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
env = {**os.environ, "PYTHONPATH": f"{src}/src"}
cmd = [sys.executable, "-m", "toxdistill.cli", "serve", EXPORT, "--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--workers", "2", "--api-keys", str(tmp / "keys"), *extra]
log = open(tmp / "server.log", "w")
srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
def cpu(pids):
    t = 0
    for p in pids:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    return t / os.sysconf("SC_CLK_TCK")
try:
    load._wait_ready(port, srv, tmp / "server.log")
    kids = load._children(srv.pid)
    load._wrk(port, files["single"], files["lua"], key, 32, 3)
    res = {"tag": tag, "extra": extra}
    for step, (body, conns) in {"single": (files["single"], 32), "batch32": (files["batch"], 8)}.items():
        c0 = cpu(kids); w0 = os.times()
        r = load._wrk(port, body, files["lua"], key, conns, 10)
        c1 = cpu(kids); w1 = os.times()
        n = r["responses"] * (32 if step == "batch32" else 1)
        res[step] = {"rps": round(r["requests_per_s"], 1), "texts_per_s": round(n / r["duration_s"], 1), "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
                     "server_cpu_ms_per_text": round(1000 * (c1 - c0) / n, 4),
                     "wrk_cpu_ms_per_text": round(1000 * ((w1.children_user + w1.children_system) - (w0.children_user + w0.children_system)) / n, 4),
                     "status": r["status"]}
    if spy:
        p = subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "-r", "200", "-d", "8", "--format", "raw", "--nonblocking", "-o", str(out / f"{tag}.stacks.txt"), "-p", str(kids[0])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load._wrk(port, files["single"], files["lua"], key, 32, 9)
        p.wait(timeout=30)
finally:
    srv.terminate(); srv.wait(timeout=20)
# offline, same as load.py: 2 threads
class A: pass
a = A(); a.target = EXPORT; a.offline_threads = 2; a.threads = 1; a.offline_seconds = 6
sys.path.insert(0, f"{src}/src"); [sys.modules.pop(m) for m in list(sys.modules) if m.startswith("toxdistill")]
res["offline"] = {k: v for k, v in load._offline(a, "shallow-1-onnx-int8", texts).items() if k != "folder"}
a.offline_threads = 1
res["offline_1thread"] = {k: v for k, v in load._offline(a, "shallow-1-onnx-int8", texts).items() if k != "folder"}
print(json.dumps(res))
(out / f"{tag}.json").write_text(json.dumps(res, indent=1))
