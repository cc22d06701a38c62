"""Many users at once: N gradio_client sessions against a launched explorer on 127.0.0.1.

    .venv/bin/python bench/load_test.py --sessions 8 --warmup 60 --duration 300

starts the app in a subprocess (its own Gradio upload folder, uploads deleted 20 s after they arrive),
then each session, in its own thread: uploads a cloud of its own, and for the rest of the run switches
layers, heads, modes and checkpoints, uploading a new file every few rounds. It prints, per event, the
requests, failures and the p50/p95 latency; the server's resident memory (VmRSS) after warm-up, half way
and at the end; and, after the cache's deletion period, how many uploaded files are left. Exit status 1
when any request failed, memory grew beyond the bound, a file of an upload was left behind (the cached
upload, or the empty tmpXXXXXXXX file that Gradio's File component leaves per event, which the app's sweep
deletes too), or the server's log has a traceback.

Memory bound: the server's caches are bounded (16 clouds, 48 attention-map sets, 6 models), so after a
warm-up of the same load that fills them (--warmup, 60 s) its RSS may only move by allocator noise:
END - WARM <= max(MEMORY_BOUND_MB, 20% of WARM). The RSS every 30 s shows whether it levels off.

    .venv/bin/python bench/load_test.py --new-sessions 300 --max-sessions 100

measures the other axis, the number of users: sessions one after another (each connects, uploads, views
and switches checkpoint once), the server's RSS growth per new session before and after the app's cap on
the sessions whose state Gradio keeps.

Everything listens on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEMORY_BOUND_MB = 100
CACHE_SWEEP = (5, 20)  # (every N s, delete uploads older than M s): short, so cleanup is visible in a run


# --------------------------------------------------------------------------- the server (subprocess)


def serve(port: int, checkpoints: str, concurrency: int, max_sessions: int | None) -> None:
    """Run the explorer in this process (the load test starts this as a subprocess)."""
    import torch

    from pcdviz.app import MAX_SESSIONS, build_app, default_torch_threads, launch
    from pcdviz.explorer import Explorer

    torch.set_num_threads(default_torch_threads(concurrency))
    max_sessions = max_sessions or MAX_SESSIONS
    if os.environ.get("PCDVIZ_TRACEMALLOC"):  # diagnostics: SIGUSR1 writes a tracemalloc snapshot
        import signal
        import tracemalloc

        tracemalloc.start(int(os.environ.get("PCDVIZ_TRACEMALLOC_FRAMES", "1")))
        n_snap = [0]

        def snapshot(*_):
            import gc

            gc.collect()
            n_snap[0] += 1
            tracemalloc.take_snapshot().dump(str(Path(os.environ["PCDVIZ_TRACEMALLOC"]) / f"snap{n_snap[0]}.tm"))

        signal.signal(signal.SIGUSR1, snapshot)
    demo = build_app(Explorer(checkpoints), delete_cache=CACHE_SWEEP)
    if not os.environ.get("PCDVIZ_MEMRAY"):
        launch(demo, "127.0.0.1", port, concurrency=concurrency, quiet=True, max_sessions=max_sessions)
        return
    # diagnostics: native + Python allocations still live at the end, by stack (memray is not a dependency:
    # pip install memray; then `memray flamegraph --leaks FILE`)
    import signal
    import threading

    import memray

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with memray.Tracker(os.environ["PCDVIZ_MEMRAY"], native_traces=True,
                        file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS):
        launch(demo, "127.0.0.1", port, concurrency=concurrency, quiet=True, prevent_thread_lock=True,
               max_sessions=max_sessions)
        stop.wait()
        demo.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(checkpoints: str, concurrency: int, upload_dir: Path, timeout: float = 120.0,
                 max_sessions: int | None = None):
    """(process, url) of a launched app with its own upload folder; waits until it answers."""
    port = _free_port()
    log = open(upload_dir.parent / "server.log", "wb")  # a file, not a pipe nobody reads (a full pipe blocks the app)
    env = dict(os.environ, GRADIO_TEMP_DIR=str(upload_dir), GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port),
                             "--checkpoints", checkpoints, "--concurrency", str(concurrency),
                             *(["--max-sessions", str(max_sessions)] if max_sessions else [])],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited: {(upload_dir.parent / 'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "config", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not answer within the start-up time")


def _two_checkpoints(folder: str | None) -> tuple[str, list[str]]:
    """(the checkpoint folder, the first two usable checkpoints in it): the sessions switch between them."""
    from pcdviz.checkpoints import scan_checkpoints

    folder = folder or str(REPO / "checkpoints")
    return folder, [i.name for i in scan_checkpoints(folder) if not i.error][:2] or ["random-tiny (built in)"]


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


# --------------------------------------------------------------------------- one session


class Session(threading.Thread):
    """One user: own gradio_client session, own uploads, random view changes; records each request."""

    MODES = ["cls", "heads", "rollout", "query", "crop"]

    def __init__(self, idx: int, url: str, checkpoints: list[str], folder: Path, warm: threading.Barrier,
                 start_run: threading.Event, deadline: list[float]):
        super().__init__(daemon=True, name=f"session-{idx}")
        self.idx, self.url, self.checkpoints, self.folder = idx, url, checkpoints, folder
        self.warm, self.start_run, self.deadline = warm, start_run, deadline
        self.rng = random.Random(idx)
        self.records: list[tuple[str, float, bool, str]] = []   # (event, seconds, ok, why)
        self.n_uploads = 0
        self.error = ""

    def call(self, client, api_name: str, **kw):
        t0 = time.perf_counter()
        try:
            out = client.predict(api_name=api_name, **kw)
            status = out[-1] if isinstance(out, (list, tuple)) else ""
            ok = not (isinstance(status, str) and status.startswith("⚠️"))
            why = "" if ok else status[:200]
        except Exception as e:  # a failed request (HTTP error, queue full, timeout)
            out, ok, why = None, False, f"{type(e).__name__}: {str(e)[:200]}"
        self.records.append((api_name, time.perf_counter() - t0, ok, why))
        return out

    def new_file(self) -> Path:
        """A cloud only this session uploads (a different one each time: Gradio's cache keys by content)."""
        from pcdviz.data.synthetic import CATEGORIES, make_shape

        self.n_uploads += 1
        pc = make_shape(self.rng.choice(list(CATEGORIES)), seed=1000 * self.idx + self.n_uploads, n_points=2048)
        path = self.folder / f"s{self.idx}_{self.n_uploads}.xyz"
        np.savetxt(path, pc.points, fmt="%.5f")
        return path

    def upload(self, client) -> str | None:
        from gradio_client import handle_file

        out = self.call(client, "/load_upload", file=handle_file(str(self.new_file())), h5_key=None, h5_index=0,
                        checkpoint=self.ckpt)
        return out[0] if out and self.records[-1][2] else None

    def view(self, client, cid: str) -> None:
        mode = self.rng.choice(self.MODES)
        head = self.rng.choice(["mean", "max", "0", "1", "2", "3"])
        self.call(client, "/view", cloud_id=cid, checkpoint=self.ckpt, mode=mode, layer=self.rng.randrange(4),
                  head=head, query=self.rng.randrange(32), keep=self.rng.choice([1.0, 0.6]))

    def run(self) -> None:
        from gradio_client import Client

        try:
            client = Client(self.url, verbose=False, download_files=False)
            self.ckpt = self.checkpoints[0]
            cid = self.upload(client)                       # warm-up: an upload and every mode once
            for mode in self.MODES:
                self.call(client, "/view", cloud_id=cid, checkpoint=self.ckpt, mode=mode)
            self.warm.wait()
            self.start_run.wait()
            rounds = 0
            while time.time() < self.deadline[0]:
                rounds += 1
                if rounds % 6 == 0:
                    cid = self.upload(client) or cid
                elif rounds % 4 == 0 and len(self.checkpoints) > 1:
                    self.ckpt = self.rng.choice([c for c in self.checkpoints if c != self.ckpt])
                    self.call(client, "/select_checkpoint", checkpoint=self.ckpt, cloud_id=cid)
                else:
                    self.view(client, cid)
        except Exception as e:  # the session itself broke (cannot connect): reported as a failure
            self.error = f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- the run


def run_load_test(sessions: int = 8, duration: float = 180.0, checkpoints: str | None = None,
                  concurrency: int = 2, memory_bound_mb: float = MEMORY_BOUND_MB, quiet: bool = False,
                  warmup: float = 60.0) -> dict:
    """Run the load test; returns the numbers it prints (and 'ok').

    `warmup` seconds of the same load come before the "after warm-up" memory reading: the server's
    caches (16 clouds, 48 map sets with each display cloud's point -> patch index) fill in about a
    minute of 8 sessions, and that filling is bounded, not growth with the number of requests.
    """
    checkpoints, names = _two_checkpoints(checkpoints)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="pcdviz-load-") as tmp:
        tmp = Path(tmp)
        upload_dir, files = tmp / "gradio", tmp / "files"
        upload_dir.mkdir()
        files.mkdir()
        proc, url = start_server(checkpoints, concurrency, upload_dir)
        try:
            say(f"[load] app pid {proc.pid} on {url}; {sessions} sessions, {duration:.0f} s, checkpoints {names}")
            warm, go, deadline = threading.Barrier(sessions + 1), threading.Event(), [0.0]
            threads = [Session(i, url, names, files, warm, go, deadline) for i in range(sessions)]
            for t in threads:
                t.start()
            warm.wait(timeout=600)
            deadline[0] = time.time() + warmup + duration
            go.set()
            time.sleep(warmup)
            rss_warm = rss_mb(proc.pid)
            samples = [(0.0, rss_warm)]
            t0 = time.time()
            while any(t.is_alive() for t in threads):
                time.sleep(2.0)
                samples.append((time.time() - t0, rss_mb(proc.pid)))
            for t in threads:
                t.join()
            rss_end = rss_mb(proc.pid)
            wall = time.time() - t0
            # uploads are deleted by the app's cache sweep: wait one age + two sweeps, then count what is left
            time.sleep(CACHE_SWEEP[1] + 2 * CACHE_SWEEP[0] + 1)
            left = [p for p in upload_dir.rglob("*") if p.is_file()]
            empty = sum(p.stat().st_size == 0 for p in left)
            alive = proc.poll() is None
            server_errors = _server_errors(tmp / "server.log")   # read before the shutdown adds its own lines
        finally:
            stop_server(proc)
    records = [r for t in threads for r in t.records]
    by_event: dict[str, list] = {}
    for ev, sec, ok, why in records:
        by_event.setdefault(ev, []).append((sec, ok, why))
    table = {}
    for ev, rows in sorted(by_event.items()):
        times = sorted(s for s, _, _ in rows)
        table[ev] = {"requests": len(rows), "failed": sum(not ok for _, ok, _ in rows),
                     "p50_ms": 1000 * statistics.median(times),
                     "p95_ms": 1000 * times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]}
    failures = [f"{ev}: {why}" for ev, rows in by_event.items() for _, ok, why in rows if not ok]
    failures += [f"session {t.idx}: {t.error}" for t in threads if t.error]
    half = min(samples, key=lambda s: abs(s[0] - wall / 2))[1]
    bound = max(memory_bound_mb, 0.2 * rss_warm)
    result = {"sessions": sessions, "duration_s": wall, "requests": len(records), "failed": len(failures),
              "events": table, "rss_warm_mb": rss_warm, "rss_half_mb": half, "rss_end_mb": rss_end,
              "rss_peak_mb": max(s for _, s in samples), "memory_bound_mb": bound,
              "uploads": sum(t.n_uploads for t in threads), "uploads_left": len(left), "empty_temp_files": empty,
              "server_alive": alive, "server_errors": len(server_errors),
              "server_error_kinds": sorted(set(server_errors))[:5],
              "rss_every_30s": [(round(t), round(m)) for t, m in samples[::15]],   # (seconds, MB): does it level off?
              "failures": failures[:20], "left": [str(p.relative_to(upload_dir)) for p in left[:5]]}
    result["ok"] = (not failures and rss_end - rss_warm <= bound and not left and alive and not server_errors)
    say(format_result(result))
    return result


def run_session_churn(n: int = 300, checkpoints: str | None = None, max_sessions: int | None = None,
                      every: int = 25, quiet: bool = False) -> dict:
    """n sessions one after another, each: connect, upload a cloud, a view, a checkpoint switch. Returns (and
    prints every `every` sessions) the server's RSS and its growth per session over those `every`."""
    from gradio_client import Client, handle_file

    from pcdviz.app import MAX_SESSIONS

    checkpoints, names = _two_checkpoints(checkpoints)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="pcdviz-churn-") as tmp:
        tmp = Path(tmp)
        (tmp / "gradio").mkdir()
        cloud = tmp / "cloud.xyz"
        np.savetxt(cloud, np.random.default_rng(0).normal(size=(2048, 3)), fmt="%.5f")
        proc, url = start_server(checkpoints, 2, tmp / "gradio", max_sessions=max_sessions)
        say(f"[churn] app pid {proc.pid} on {url}; {n} sessions one after another, the app keeps "
            f"{max_sessions or MAX_SESSIONS}")
        rows, t0 = [], time.time()
        try:
            for i in range(1, n + 1):
                c = Client(url, verbose=False, download_files=False)
                cid = c.predict(file=handle_file(str(cloud)), h5_key=None, h5_index=0, api_name="/load_upload")[0]
                c.predict(cloud_id=cid, checkpoint=names[0], mode="heads", api_name="/view")
                c.predict(cloud_id=cid, checkpoint=names[-1], api_name="/select_checkpoint")
                if i % every == 0:
                    rows.append((i, rss_mb(proc.pid)))
                    grow = f"{(rows[-1][1] - rows[-2][1]) / every * 1024:+.0f} KB" if len(rows) > 1 else "-"
                    say(f"[churn] {i} sessions: RSS {rows[-1][1]:.0f} MB; per session over the last {every}: "
                        f"{grow} ({time.time() - t0:.0f} s)")
        finally:
            stop_server(proc)
    rss, half = dict(rows), n // 2 // every * every
    per = {f"{a}-{b}": (rss[b] - rss[a]) / (b - a) * 1024 for a, b in ((every, half), (half, n // every * every))
           if a in rss and b in rss and b > a}
    say("[churn] RSS growth per new session: " + ", ".join(f"sessions {k}: {v:+.0f} KB" for k, v in per.items()))
    return {"sessions": n, "max_sessions": max_sessions or MAX_SESSIONS, "rss_mb": rows, "kb_per_session": per}


def _server_errors(log: Path) -> list[str]:
    """The last line of every traceback in the server's log: an exception the server swallowed (a failed
    background task, a thread that died) breaks no request but still counts against the run."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors, in_tb = [], False
    for line, nxt in zip(lines, lines[1:] + [""]):
        in_tb = in_tb or line.startswith("Traceback (most recent call last)")
        if in_tb and line and not line.startswith((" ", "Traceback")) and not nxt.startswith(" "):
            errors.append(line[:200])
            in_tb = False
    return errors


def format_result(r: dict) -> str:
    lines = [f"[load] {r['sessions']} sessions for {r['duration_s']:.0f} s: {r['requests']} requests, "
             f"{r['failed']} failed, {r['uploads']} uploads",
             "| event | requests | failed | p50 ms | p95 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for ev, row in r["events"].items():
        lines.append(f"| `{ev}` | {row['requests']} | {row['failed']} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} |")
    lines.append(f"[load] server RSS: {r['rss_warm_mb']:.0f} MB after warm-up, {r['rss_half_mb']:.0f} MB half way, "
                 f"{r['rss_end_mb']:.0f} MB at the end (peak {r['rss_peak_mb']:.0f} MB); growth "
                 f"{r['rss_end_mb'] - r['rss_warm_mb']:+.0f} MB, bound {r['memory_bound_mb']:.0f} MB")
    lines.append("[load] RSS every 30 s (s: MB): " + ", ".join(f"{t}: {m}" for t, m in r.get("rss_every_30s", [])))
    lines.append(f"[load] uploaded files left after the cache sweep: {r['uploads_left']} (of them "
                 f"{r['empty_temp_files']} empty temp files of Gradio's File component); server alive: "
                 f"{r['server_alive']}; tracebacks in the server's log: {r['server_errors']}; "
                 f"{'PASS' if r['ok'] else 'FAIL'}")
    lines += [f"[load] server error: {e}" for e in r.get("server_error_kinds", [])]
    lines += [f"[load] failure: {f}" for f in r["failures"]]
    lines += [f"[load] left: {f}" for f in r.get("left", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of load after warm-up")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of load before the memory reference")
    ap.add_argument("--checkpoints", default=None, help="checkpoint folder (default: the shipped ./checkpoints)")
    ap.add_argument("--concurrency", type=int, default=2, help="events the app computes at once")
    ap.add_argument("--memory-bound-mb", type=float, default=MEMORY_BOUND_MB)
    ap.add_argument("--new-sessions", type=int, default=0,
                    help="instead: this many sessions one after another, RSS per new session")
    ap.add_argument("--max-sessions", type=int, default=None, help="with --new-sessions: sessions the app keeps (default: the app's)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=7860, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.port, args.checkpoints, args.concurrency, args.max_sessions)
        return 0
    if args.new_sessions:
        r = run_session_churn(args.new_sessions, args.checkpoints, args.max_sessions)
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=1))
        return 0
    r = run_load_test(args.sessions, args.duration, args.checkpoints, args.concurrency, args.memory_bound_mb,
                      warmup=args.warmup)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
