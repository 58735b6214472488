#!/usr/bin/env python3
"""Failure and leave detection, shoal vs HashiCorp Serf, side by side in one run.

Starts N agents of each (default 10) on loopback, each on its own address (127.0.1.x for
shoal, 127.0.2.x for serf), both with their LAN profile, waits until every agent sees N
alive members (join convergence), then repeatedly kills one agent with SIGKILL and measures
how long until a chosen peer reports it failed (`down` / `failed`), restarting it between
rounds. Prints medians side by side. Needs `serf` on PATH (apt-get install serf) and a built
shoal binary (`cargo build --release`).

Usage: benches/detect_vs_serf.py [--nodes 10] [--rounds 5] [--shoal target/release/shoal]
Everything binds to 127.0.0.0/8 only; every wait is bounded.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def now():
    return time.monotonic()


def wait_until(pred, timeout, step=0.02):
    end = now() + timeout
    while now() < end:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


class Serf:
    name = "serf"

    def __init__(self, n, tmp):
        self.n, self.tmp, self.procs = n, tmp, {}

    def addr(self, i):
        return f"127.0.2.{i + 1}"

    def start(self, i):
        args = ["serf", "agent", f"-node=s{i}", f"-bind={self.addr(i)}:7946",
                f"-rpc-addr={self.addr(i)}:7373", "-log-level=err", "-profile=lan"]
        if i != 0:
            args.append(f"-join={self.addr(0)}:7946")
        log = open(os.path.join(self.tmp, f"serf{i}.log"), "w")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log)

    def members(self, viewer):
        out = subprocess.run(["serf", "members", f"-rpc-addr={self.addr(viewer)}:7373",
                              "-format=json"], capture_output=True, timeout=5, check=True)
        return {m["name"]: m["status"] for m in json.loads(out.stdout)["members"]}

    def node_name(self, i):
        return f"s{i}"

    def failed_word(self):
        return "failed"


class Shoal:
    name = "shoal"

    def __init__(self, n, tmp, binary):
        self.n, self.tmp, self.bin, self.procs = n, tmp, binary, {}

    def addr(self, i):
        return f"127.0.1.{i + 1}"

    def sock(self, i):
        return os.path.join(self.tmp, f"shoal{i}", "shoal.sock")

    def start(self, i):
        d = os.path.join(self.tmp, f"shoal{i}")
        os.makedirs(d, exist_ok=True)
        args = [self.bin, "agent", "--name", f"h{i}", "--bind", f"{self.addr(i)}:7946",
                "--api", f"unix:{self.sock(i)}", "--data-dir", d, "--profile", "lan"]
        if i != 0:
            args += ["--join", f"{self.addr(0)}:7946"]
        log = open(os.path.join(self.tmp, f"shoal{i}.log"), "w")
        env = dict(os.environ, RUST_LOG="warn")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log, env=env)

    def members(self, viewer):
        out = subprocess.run([self.bin, "members", "--api", f"unix:{self.sock(viewer)}",
                              "--format", "json"], capture_output=True, timeout=5, check=True)
        return {m["name"]: m["status"] for m in json.loads(out.stdout)}

    def node_name(self, i):
        return f"h{i}"

    def failed_word(self):
        return "down"


def measure(sys_, n, rounds):
    res = {"join_s": None, "detect_s": []}
    t0 = now()
    for i in range(n):
        sys_.start(i)
        if i == 0:
            time.sleep(0.3)
    ok = wait_until(lambda: all(
        sum(1 for s in sys_.members(v).values() if s == "alive") == n for v in range(n)), 60)
    res["join_s"] = round(now() - t0, 3) if ok else None
    victim, viewer = n - 1, 0
    for r in range(rounds):
        # Let the cluster settle (the restarted victim must be alive everywhere).
        wait_until(lambda: sys_.members(viewer).get(sys_.node_name(victim)) == "alive", 60)
        time.sleep(2)
        sys_.procs[victim].send_signal(signal.SIGKILL)
        sys_.procs[victim].wait()
        t = now()
        seen = wait_until(lambda: sys_.members(viewer).get(sys_.node_name(victim))
                          == sys_.failed_word(), 60, step=0.05)
        if seen:
            res["detect_s"].append(round(now() - t, 3))
        sys_.start(victim)
    return res


def stop_all(sys_):
    for p in sys_.procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in sys_.procs.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shoal", default="target/release/shoal")
    a = ap.parse_args()
    if not shutil.which("serf"):
        sys.exit("serf not found: apt-get install serf")
    tmp = tempfile.mkdtemp(prefix="shoal-vs-serf-")
    out = {}
    for sys_ in (Shoal(a.nodes, tmp, a.shoal), Serf(a.nodes, tmp)):
        try:
            out[sys_.name] = measure(sys_, a.nodes, a.rounds)
        finally:
            stop_all(sys_)
    print(f"{'':28}{'shoal':>12}{'serf':>12}")
    print(f"{'join converge (s)':28}{out['shoal']['join_s']!s:>12}{out['serf']['join_s']!s:>12}")
    for k in ("shoal", "serf"):
        d = out[k]["detect_s"]
        out[k]["detect_median_s"] = statistics.median(d) if d else None
    print(f"{'kill -> seen down, median (s)':28}{out['shoal']['detect_median_s']!s:>12}"
          f"{out['serf']['detect_median_s']!s:>12}")
    print(f"{'samples':28}{out['shoal']['detect_s']!s:>12}  {out['serf']['detect_s']!s}")
    print(json.dumps(out))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
