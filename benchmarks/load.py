"""Load test: N simulated users at once against the running Gradio app, through gradio_client, on loopback.

Starts `app.py --no-prepare` on a free 127.0.0.1 port, measures one user alone (the baseline, same run),
then N users submitting at the same moment, each asking a different Portuguese question to one column
(`/responder_base` by default). Bounded in count (N users x R rounds) and time (--timeout per request).
Reports: answered / errors, latency p50/p95 (submit to last token), generation tokens/s per user (from
the column's own stats line), and the ratios against the single user.

    python benchmarks/load.py [--users 8] [--rounds 1] [--column base] [--max-tokens 48]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.runtime import hardware  # noqa: E402

QUESTIONS = [
    "Qual é a capital do Brasil?", "Quem escreveu Dom Casmurro?", "O que é a fotossíntese?",
    "Qual é o maior rio do Brasil?", "Em que ano foi proclamada a República no Brasil?",
    "Quais são os biomas brasileiros?", "Quem foi Oswaldo Cruz?", "Onde fica a Universidade de Coimbra?",
    "O que é o Pantanal?", "Quem foi Santos-Dumont?", "Qual é a capital de Angola?", "O que foi a Lei Áurea?",
    "Quem foi Carmen Miranda?", "Qual é a moeda de Cabo Verde?", "O que é a Caatinga?", "Quem foi Tom Jobim?",
]
STATS_RE = re.compile(r"(\d+) tokens · 1º token em ([\d.]+) s · ([\d.]+) tok/s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--no-prepare", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"o app não abriu; veja {log_path}")
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"o app não abriu em 180 s; veja {log_path}")


def one_request(url: str, column: str, question: str, max_tokens: int, timeout: float) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    job = client.submit(question, [], 0.0, max_tokens, 3, api_name=f"/responder_{column}")
    try:
        bot, stats, _sources = job.result(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300], "latency_s": time.perf_counter() - t0}
    latency = time.perf_counter() - t0
    answer = bot[-1]["content"] if bot else ""
    if isinstance(answer, list):
        answer = " ".join(str(a.get("text", a)) if isinstance(a, dict) else str(a) for a in answer)
    m = STATS_RE.search(stats or "")
    ok = bool(m) and "⚠️" not in str(answer)
    return {"ok": ok, "latency_s": latency, "tokens": int(m.group(1)) if m else 0,
            "ttft_s": float(m.group(2)) if m else None, "tok_s": float(m.group(3)) if m else None,
            "error": None if ok else f"resposta inesperada: {str(answer)[:200]} / {stats}"}


def run_users(url: str, column: str, users: int, rounds: int, max_tokens: int, timeout: float) -> dict:
    results: list[dict] = []
    lock = threading.Lock()
    barrier = threading.Barrier(users)

    def user(i: int):
        barrier.wait()  # everyone submits at the same moment
        for r in range(rounds):
            res = one_request(url, column, QUESTIONS[(i + r * users) % len(QUESTIONS)], max_tokens, timeout)
            with lock:
                results.append(dict(res, user=i, round=r))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(r["latency_s"] for r in results if r["ok"])
    toks = [r["tok_s"] for r in results if r["ok"] and r["tok_s"]]
    return {"users": users, "requests": len(results), "answered": sum(r["ok"] for r in results),
            "errors": [r["error"] for r in results if not r["ok"]], "wall_s": round(wall, 1),
            "latency_p50_s": round(statistics.median(lat), 2) if lat else None,
            "latency_p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else None,
            "tok_s_per_user": round(statistics.mean(toks), 1) if toks else None,
            "total_tokens_per_s": round(sum(r["tokens"] for r in results if r["ok"]) / wall, 1) if wall else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--column", default="base", choices=["base", "ft", "rag"])
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--timeout", type=float, default=600.0, help="limite por pedido, em segundos")
    p.add_argument("--url", default=None, help="usa um app já aberto em vez de abrir um")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    args = p.parse_args(argv)

    proc = None
    url = args.url
    if not url:
        port = free_port()
        log = Path(tempfile.gettempdir()) / f"load-app-{port}.log"
        print(f"abrindo o app em 127.0.0.1:{port} (log: {log})…", file=sys.stderr)
        proc = start_app(port, log)
        url = f"http://127.0.0.1:{port}/"
    try:
        one_request(url, args.column, "Olá!", 8, args.timeout)  # warm-up: loads the model
        print("1 usuário sozinho…", file=sys.stderr)
        single = run_users(url, args.column, 1, max(2, args.rounds), args.max_tokens, args.timeout)
        print(f"{args.users} usuários ao mesmo tempo…", file=sys.stderr)
        many = run_users(url, args.column, args.users, args.rounds, args.max_tokens, args.timeout)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    ratio = lambda a, b: round(a / b, 2) if a and b else None  # noqa: E731
    result = {"column": args.column, "max_tokens": args.max_tokens, "single": single, "concurrent": many,
              "ratios_vs_single": {"latency_p50": ratio(many["latency_p50_s"], single["latency_p50_s"]),
                                   "tok_s_per_user": ratio(many["tok_s_per_user"], single["tok_s_per_user"]),
                                   "total_tokens_per_s": ratio(many["total_tokens_per_s"], single["total_tokens_per_s"])},
                  "hardware": hardware(), "model": os.environ.get("PTLLM_DEFAULT_MODEL", "(padrão do app)")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    s, c = single, many
    print(f"\nHardware: {result['hardware']}; coluna {args.column}; {args.max_tokens} tokens no máximo\n")
    print("| usuários | pedidos | respondidos | erros | p50 s | p95 s | tok/s por usuário | tokens/s no total |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in (s, c):
        print(f"| {r['users']} | {r['requests']} | {r['answered']} | {len(r['errors'])} | {r['latency_p50_s']} | "
              f"{r['latency_p95_s']} | {r['tok_s_per_user']} | {r['total_tokens_per_s']} |")
    print(f"\nrazões (N usuários / 1 usuário): {result['ratios_vs_single']}")
    return 0 if not c["errors"] and c["answered"] == c["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
