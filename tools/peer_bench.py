#!/usr/bin/env python3
"""peer_bench.py - tern against bitnet.cpp in one run, interleaved.

  tools/peer_bench.py --peer DIR bench [-m FILE] [-t N] [-r 7]
      llama-bench -p 128 -n 64 -r 1 against tern bench (x86, F16 and q8
      heads), one repetition of each in turn.
  tools/peer_bench.py --peer DIR spec [-r 7]
      llama-speculative against tern run --model-draft on the shared
      tiny pair (greedy, 256 tokens, "Once upon a time"), and the verifier
      alone.

DIR holds bitnet.cpp's binaries (llama-bench, llama-speculative); this
script builds nothing. The machines drift (memory bandwidth moves 30-80
GB/s between minutes), so only figures of the same run compare: each
repetition runs every configuration once, and the summary gives the median
and min-max of each.
"""
import argparse, json, os, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERN = os.path.join(ROOT, "build", "bin", "tern")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "models")
PROMPT = "Once upon a time"


def run(cmd):
    """The finished process; exits with its last words when it failed."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"peer_bench: {cmd[0]} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    return p


def out(cmd):
    p = run(cmd)
    return p.stdout + p.stderr


def bench_configs(a):
    def peer():
        rows = json.loads(run([os.path.join(a.peer, "llama-bench"), "-m", a.model, "-t", str(a.threads),
                               "-p", "128", "-n", "64", "-r", "1", "-o", "json"]).stdout)
        return {("pp128" if r["n_prompt"] else "tg64"): r["avg_ts"] for r in rows}

    def tern(head):
        rows = json.loads(run([TERN, "bench", "-m", a.model, "-t", str(a.threads), "--backend", "x86",
                               "--head", head, "-p", "128", "-n", "64", "-r", "1", "-o", "json"]).stdout)
        return {r["test"]: r["median_ts"] for r in rows}

    return [("bitnet.cpp", peer), ("tern F16 head", lambda: tern("f16")), ("tern q8 head", lambda: tern("q8"))]


def spec_configs(a):
    verifier, draft = os.path.join(SHARED, "tiny-llama.gguf"), os.path.join(SHARED, "tiny-bitnet-i2_s.gguf")

    def peer():
        t = out([os.path.join(a.peer, "llama-speculative"), "-m", verifier, "-md", draft, "-p", PROMPT, "-n", "256",
                 "-t", str(a.threads), "-c", "2048", "--temp", "0"])
        return {"tok/s": float(re.search(r"decoded\s+\d+ tokens in\s+[\d.]+ seconds, speed:\s+([\d.]+)", t).group(1))}

    def tern(*extra):
        t = out([TERN, "run", "-m", verifier, *extra, "-p", PROMPT, "-n", "256", "-t", str(a.threads), "--temp", "0"])
        return {"tok/s": float(re.search(r"generation: \d+ tokens, [\d.]+ ms, ([\d.]+) tok/s", t).group(1))}

    return [("bitnet.cpp llama-speculative", peer), ("tern --model-draft", lambda: tern("--model-draft", draft)),
            ("tern --model-draft --head f16", lambda: tern("--model-draft", draft, "--head", "f16")),
            ("tern verifier alone", lambda: tern())]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", required=True, help="directory of bitnet.cpp's binaries")
    ap.add_argument("what", choices=["bench", "spec"])
    ap.add_argument("-m", "--model", help="bench: the model file (I2_S, bitnet-b1.58)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=7)
    a = ap.parse_args()
    if a.what == "bench" and not a.model:
        ap.error("bench needs -m FILE")
    for need in ([os.path.join(a.peer, "llama-bench" if a.what == "bench" else "llama-speculative"), TERN] +
                 ([a.model] if a.model else [])):
        if not os.path.isfile(need):
            sys.exit(f"peer_bench: {need}: no such file")
    configs = bench_configs(a) if a.what == "bench" else spec_configs(a)
    data = {name: {} for name, _ in configs}
    for rep in range(a.reps):
        for name, run in configs:
            for test, v in run().items():
                data[name].setdefault(test, []).append(v)
            print(rep, name, {k: round(v[-1], 2) for k, v in data[name].items()}, flush=True)
    for name, _ in configs:
        for test, v in data[name].items():
            print(f"{name:32s} {test:6s} median {statistics.median(v):8.2f} ({min(v):.2f}-{max(v):.2f})")


if __name__ == "__main__":
    main()
