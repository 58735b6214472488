#!/usr/bin/env python3
"""Cluster benchmark: N shoal and N Serf agents side by side, one network namespace each.

One command (root; `apt-get install -y serf iptables iproute2`; `bash packaging/build-dist.sh`,
which builds the static musl binary, or the glibc one without the musl target):

    sudo benches/cluster_vs_serf.py                  # N = 10, then N = 50 (about 20 min)
    sudo benches/cluster_vs_serf.py --nodes 10 --kills 6 --fault-secs 30
    sudo benches/cluster_vs_serf.py --nodes 10 --kills 0 --leaves 0 --fault-secs 0 \
        --idle-secs 0 --gray-secs 160 --app-kills 20      # issue 21's targets only

For each N it creates a private bridge in a namespace of its own (`shoalbench-PID-br`, PID
the bench's process id, so that runs side by side keep apart) and 2N host namespaces
(`shoalbench-PID-shI` for shoal agent I, `shoalbench-PID-seI` for Serf agent I), each with one
veth on that bridge, loopback, its own iptables and a permanent neighbour entry for every
peer of its system; nothing is added to the host's namespace except raised neighbour-table
thresholds (the ARP table is shared by every namespace; restored at the end unless another
run is under way). Every namespace, agent and temporary file is removed at the end, also on
Ctrl-C, SIGTERM or an error (and leftovers of interrupted runs, whose process is gone, are
removed at the start). At 200 hosts (docs/results/2026-12-09-agents200.md): `--start-gap
0.2` (400 agents started at once overloaded 2 cores); the agents' RSS summed 5.4 GB idle
and 6.4 GB after 20 % loss.

Both systems run their LAN profile with encryption on (`shoal keygen` / `serf keygen`), and
every fault hits host I of both systems at the same moment, so each row compares the two
under the same conditions in the same run:

- join: time until every agent sees N alive;
- crash seen down: `kill -9` of one agent (both systems' agent I at once, I rotating), time
  until each other agent reports it down (shoal: SWIM's `down`, whatever the guard serves;
  Serf: `EventMemberFailed`), median and p90 over every (kill, observer) pair;
- graceful leave seen: SIGINT (both leave gracefully on it), time until each other agent
  reports `left` / `EventMemberLeave`;
- false downs: live members reported down (count of (observer, member) transitions into
  down, during a fault and a tail after it) under uniform egress loss on every host, under
  bursty correlated loss (a random fraction of hosts drops a share of everything, in and out,
  for bursts of a few seconds, then a quiet gap, again and again), with one agent paused
  (SIGSTOP for seconds at a time) and with one agent CPU-starved (stopped most of every
  short period: it runs only a tenth of each second, like a process on an overloaded
  host). For the paused and starved agents, downs of the affected agent itself are shown
  apart (it did stop answering; downs of everyone else are the false ones);
- gray failures (issue 21; `--gray-secs 160`): 80 % loss both ways on host N-1 (`--gray-loss`),
  then, on host N-2, all ingress dropped `--flip-off` s and let through `--flip-on` s in
  turn; from every healthy agent's served view (shoal's watch stream, every change of the
  `status` field; Serf's member events): when every healthy agent had removed the faulty
  host, how many still had it out at the end, presence changes per observer, downs of it
  declared, healthy members any healthy agent stopped serving or SWIM declared down;
- crash seen down by one app (`--app-kills K`): agent 0's served view only, both systems'
  agent I killed at once, I rotating; median each, and the ratio of the medians with a
  paired bootstrap 95 % interval over the kills;
- idle bytes/s (the veth's transmitted bytes, /proc/PID/net/dev), CPU (% of one core) and
  RSS per agent (VmRSS, and its anonymous part RssAnon: VmRSS also counts the pages of the
  program's code and shared libraries it has touched), while the cluster is idle and formed.

shoal's false downs are SWIM's; beside them, `served N` is how many of those its served view
(what applications read) showed as `down`: the guard holds members when too many go down at
once.

How each system reports: shoal's watch stream (`GET /v1/watch` on the agent's Unix socket,
NDJSON: SWIM's state is the `truth` field, or the status when they agree); Serf's own
log (`serf: EventMember...` lines, which Serf prints when memberlist tells it, before its
event handlers' 1 s coalescing). Both are timestamped when the bench reads them.

Every wait is bounded; the bench is not a test and makes no assertion: it prints a table,
and the raw figures as JSON (`--json FILE`).
"""
import argparse
import bisect
import datetime
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PREFIX = os.environ.get("SHOAL_BENCH_PREFIX", "shoalbench")
# This run's namespaces carry its process id: several engineers run the bench on one
# machine, and a run must neither delete another's namespaces nor be deleted by it.
RUN = f"{PREFIX}-{os.getpid()}"
BR_NS = f"{RUN}-br"
PORT = 7946
SYSTEMS = ("shoal", "serf")
NEIGH = ("gc_thresh1", "gc_thresh2", "gc_thresh3")
# shoal's served statuses apps route to (`ServedStatus::is_serving`).
SERVING = ("alive", "suspect", "held", "restarting")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(*args, check=True, timeout=30):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def run_many(cmds, width=16, timeout=30):
    """Runs commands with at most `width` at once; returns how many failed."""
    failed, pending = 0, list(cmds)
    running = []
    while pending or running:
        while pending and len(running) < width:
            running.append(subprocess.Popen(pending.pop(0), stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
        p = running.pop(0)
        try:
            failed += p.wait(timeout=timeout) != 0
        except subprocess.TimeoutExpired:
            p.kill()
            failed += 1
    return failed


def nsenter(ns):
    """The command prefix that runs a program in namespace `ns`'s network: `nsenter`, not
    `ip netns exec`, which also makes a mount namespace and remounts /sys (3x slower per
    process under load: 63 against 19 ms at a load average of 24)."""
    return ["nsenter", f"--net=/run/netns/{ns}"]


def wait_until(pred, timeout, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------- network namespaces


class Net:
    """The bridge namespace and one namespace per agent; everything removed by `teardown`."""

    def __init__(self, n):
        self.n = n
        self.saved_neigh = {}

    @staticmethod
    def ns(system, i):
        return f"{RUN}-{'sh' if system == 'shoal' else 'se'}{i}"

    @staticmethod
    def addr(system, i):
        base = 0 if system == "shoal" else 64
        return f"10.213.{base + i // 250}.{i % 250 + 1}"

    @staticmethod
    def leftovers():
        """This run's namespaces, and those of runs whose process is gone (interrupted)."""
        out = run("ip", "netns", "list", check=False).stdout
        found = []
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            pid = name[len(PREFIX) + 1:].split("-", 1)[0]
            if name.startswith(PREFIX + "-") and pid.isdigit() and (
                    name.startswith(RUN + "-") or not os.path.exists(f"/proc/{pid}")):
                found.append(name)
        return found

    @staticmethod
    def others_running():
        """Whether another live run of the bench has namespaces (it needs the raised
        neighbour-table thresholds too)."""
        out = run("ip", "netns", "list", check=False).stdout
        mine = set(Net.leftovers())
        return any(line.split()[0].startswith(PREFIX + "-") and line.split()[0] not in mine
                   for line in out.splitlines() if line.split())

    @staticmethod
    def remove_leftovers():
        """Kills whatever still runs in this bench's namespaces and deletes them (in
        parallel: 401 namespaces at N = 200)."""
        spaces = Net.leftovers()
        if not spaces:
            return
        pids = {}

        def find(ns):
            pids[ns] = run("ip", "netns", "pids", ns, check=False).stdout.split()

        threads = [threading.Thread(target=find, args=(ns,)) for ns in spaces]
        for k in range(0, len(threads), 16):
            for th in threads[k:k + 16]:
                th.start()
            for th in threads[k:k + 16]:
                th.join()
        for ns in spaces:
            for pid in pids.get(ns, ()):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        run_many([["ip", "netns", "del", ns] for ns in spaces], timeout=60)

    def raise_neighbour_thresholds(self):
        # Every agent holds an ARP entry for each peer of its system; the table is shared.
        need = 2 * self.n * self.n + 256
        want = {"gc_thresh1": need, "gc_thresh2": 2 * need, "gc_thresh3": 4 * need}
        for k in NEIGH:
            path = f"/proc/sys/net/ipv4/neigh/default/{k}"
            with open(path) as f:
                cur = int(f.read())
            if cur < want[k]:
                self.saved_neigh[k] = cur
        # Raise from the top down so that thresh1 <= thresh2 <= thresh3 holds throughout.
        for k in reversed(NEIGH):
            if k in self.saved_neigh:
                with open(f"/proc/sys/net/ipv4/neigh/default/{k}", "w") as f:
                    f.write(str(want[k]))
        if self.saved_neigh:
            log(f"neighbour table thresholds raised to {want} (restored at the end)")

    @staticmethod
    def mac(system, i):
        """eth0's address in host I's namespace, fixed so that every peer's neighbour entry
        can be written before any agent starts."""
        return f"02:5b:{0 if system == 'shoal' else 1:02x}:00:{i // 256:02x}:{i % 256:02x}"

    def batch(self, lines, *ns):
        """Runs `ip [-n NS] -batch` over `lines`: one process for hundreds of commands."""
        with tempfile.NamedTemporaryFile("w", prefix=f"{PREFIX}-ip-", suffix=".batch") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            run("ip", *(("-n", ns[0]) if ns else ()), "-batch", f.name, timeout=300)

    def setup(self):
        """The bridge and 2N host namespaces, in a handful of batched `ip` runs (one `ip`
        per command would be 2,400 processes at N = 200), plus a permanent
        neighbour entry in each host for every peer of its own system: without them, each
        of the N * (N - 1) first contacts per system is an ARP broadcast that the bridge
        floods to all 2N ports (N^3: about 16 million copies at N = 200, seconds of both
        cores while the agents join), and every entry gone stale costs a probe later."""
        self.raise_neighbour_thresholds()
        t0 = time.monotonic()
        hosts = [(s, i) for s in SYSTEMS for i in range(self.n)]
        self.batch([f"netns add {BR_NS}"] + [f"netns add {self.ns(s, i)}" for s, i in hosts])
        lines = ["link add br0 type bridge", "link set br0 up"]
        for s, i in hosts:
            ns = self.ns(s, i)
            veth = "v" + ns[len(RUN) + 1:]
            lines.append(f"link add {veth} type veth peer name eth0 address {self.mac(s, i)} "
                         f"netns {ns}")
            lines.append(f"link set {veth} master br0 up")
        self.batch(lines, BR_NS)
        files = []
        for s, i in hosts:
            lines = [f"addr add {self.addr(s, i)}/16 dev eth0", "link set eth0 up",
                     "link set lo up"]
            lines += [f"neigh replace {self.addr(s, j)} lladdr {self.mac(s, j)} dev eth0 "
                      f"nud permanent" for j in range(self.n) if j != i]
            f = tempfile.NamedTemporaryFile("w", prefix=f"{PREFIX}-ip-", suffix=".batch")
            f.write("\n".join(lines) + "\n")
            f.flush()
            files.append(f)
        try:
            failed = run_many([["ip", "-n", self.ns(s, i), "-batch", f.name]
                               for (s, i), f in zip(hosts, files)], timeout=120)
        finally:
            for f in files:
                f.close()
        if failed:
            raise RuntimeError(f"{failed} host namespaces could not be configured")
        log(f"  {len(hosts)} namespaces set up in {time.monotonic() - t0:.1f} s")

    def teardown(self):
        self.remove_leftovers()
        if self.saved_neigh and self.others_running():
            log("another run of the bench is under way: neighbour table thresholds kept")
            self.saved_neigh = {}
        need = 2 * self.n * self.n + 256
        for k in NEIGH:
            if k in self.saved_neigh:
                path = f"/proc/sys/net/ipv4/neigh/default/{k}"
                with open(path) as f:
                    cur = int(f.read())
                # Another run may have raised it further since: leave its value alone.
                if cur > {"gc_thresh1": need, "gc_thresh2": 2 * need,
                          "gc_thresh3": 4 * need}[k]:
                    continue
                with open(path, "w") as f:
                    f.write(str(self.saved_neigh[k]))
        self.saved_neigh = {}


# ---------------------------------------------------------------- what agents report


class Views:
    """What every agent reports, as events (t, system, observer, member, state) and views.

    state is one of alive / suspect / down / left (Serf's failed is down)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.times = []                                # events' times, ascending
        self.view = {s: {} for s in SYSTEMS}          # system -> observer -> member -> state
        self.served = {}                               # shoal observer -> member -> served
        self.held_why = {}                             # (shoal observer, member) -> cause

    def snapshot(self, system, obs, members, served=None):
        with self.lock:
            self.view[system][obs] = dict(members)
            if served is not None:
                self.served[obs] = dict(served)

    def serves(self, system, obs, member):
        """Whether `obs` serves `member` to its apps: shoal's served status (alive, suspect,
        held, restarting), Serf's member list (alive: Serf serves every member it has not
        seen fail or leave)."""
        with self.lock:
            if system == "shoal":
                return self.served.get(obs, {}).get(member) in SERVING
            return self.view[system].get(obs, {}).get(member) == "alive"

    def event(self, system, obs, member, state, served=None):
        with self.lock:
            t = time.time()
            v = self.view[system].setdefault(obs, {})
            prev = v.get(member)
            v[member] = state
            prev_served = None
            if served is not None:
                sv = self.served.setdefault(obs, {})
                prev_served = sv.get(member)
                sv[member] = served
            t = max(t, self.times[-1]) if self.times else t
            self.events.append((t, system, obs, member, state, prev, served, prev_served))
            self.times.append(t)

    def forget(self, system, obs):
        with self.lock:
            self.view[system].pop(obs, None)
            if system == "shoal":
                self.served.pop(obs, None)

    def sees(self, system, obs, member):
        with self.lock:
            return self.view[system].get(obs, {}).get(member)

    def all_alive(self, system, observers, members):
        with self.lock:
            for o in observers:
                v = self.view[system].get(o)
                if v is None or any(v.get(m) != "alive" for m in members):
                    return False
            return True

    def since(self, t0, t1=None):
        with self.lock:
            # By bisection: at N = 200 the log holds hundreds of thousands of events, and
            # a scan of all of them 20 times a second took a core from the agents.
            lo = bisect.bisect_left(self.times, t0)
            hi = len(self.times) if t1 is None else bisect.bisect_right(self.times, t1)
            return self.events[lo:hi]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.unix_path)
        self.sock = s


def shoal_state(m):
    truth = m.get("truth") or m.get("status")
    return {"held": "down"}.get(truth, truth)


class Agent:
    def __init__(self, bench, system, i):
        self.b, self.system, self.i = bench, system, i
        self.ns, self.addr = Net.ns(system, i), Net.addr(system, i)
        self.name = f"{'h' if system == 'shoal' else 's'}{i}"
        self.proc = None
        self.dir = os.path.join(bench.tmp, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "api.sock")
        self.generation = 0
        self.reported = False

    def seed(self):
        return f"{Net.addr(self.system, 0)}:{PORT}"

    def start(self):
        self.generation += 1
        self.reported = False
        logf = open(os.path.join(self.dir, f"agent.{self.generation}.log"), "w")
        base = nsenter(self.ns)
        if self.system == "shoal":
            args = base + [self.b.shoal, "agent", "--name", self.name,
                           "--bind", f"{self.addr}:{PORT}", "--api", f"unix:{self.sock}",
                           "--data-dir", self.dir, "--profile", "lan", "--log-level", "warn"]
            if self.i != 0:
                args += ["--join", self.seed()]
            env = dict(os.environ, SHOAL_ENCRYPT=self.b.shoal_key)
            self.proc = subprocess.Popen(args, stdout=logf, stderr=logf, env=env,
                                         start_new_session=True)
        else:
            args = base + ["serf", "agent", f"-node={self.name}", f"-bind={self.addr}:{PORT}",
                           "-rpc-addr=127.0.0.1:7373", f"-encrypt={self.b.serf_key}",
                           "-profile=lan", "-log-level=info"]
            if self.i != 0:
                args.append(f"-join={self.seed()}")
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=logf,
                                         start_new_session=True)
        threading.Thread(target=self.watch, args=(self.proc, logf), daemon=True).start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def report_death(self):
        """Logs, once, an exit the bench did not cause (its code and its log's last lines:
        the temporary directory goes at the end)."""
        if self.proc is None or self.proc.poll() is None or self.reported:
            return False
        self.reported = True
        tail = ""
        try:
            with open(os.path.join(self.dir, f"agent.{self.generation}.log"),
                      errors="replace") as f:
                tail = " | ".join(line.strip() for line in f.readlines()[-6:])
        except OSError:
            pass
        log(f"  {self.name} exited by itself with code {self.proc.returncode}: {tail}")
        self.b.res.setdefault("deaths", []).append(
            {"agent": self.name, "code": self.proc.returncode, "log": tail})
        return True

    def send(self, sig):
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGKILL, timeout=10):
        if self.proc is None:
            return
        self.send(signal.SIGCONT)
        self.send(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.b.views.forget(self.system, self.name)

    def watch(self, proc, logf):
        if self.system == "serf":
            self.watch_serf(proc, logf)
        else:
            self.watch_shoal(proc)

    SERF_EVENT = re.compile(r"serf: EventMember(Join|Leave|Failed|Reap): (\S+)")
    SERF_STATE = {"Join": "alive", "Leave": "left", "Failed": "down", "Reap": "reaped"}

    def watch_serf(self, proc, logf):
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            logf.write(line)
            m = self.SERF_EVENT.search(line)
            if m:
                self.b.views.event("serf", self.name, m.group(2), self.SERF_STATE[m.group(1)])
        logf.close()

    def watch_shoal(self, proc):
        while proc.poll() is None and not self.b.stopping:
            try:
                conn = UnixHTTP(self.sock)
                conn.request("GET", "/v1/watch")
                resp = conn.getresponse()
                if resp.status != 200:
                    raise OSError(f"watch: HTTP {resp.status}")
                conn.sock.settimeout(None)
                for raw in iter(resp.readline, b""):
                    line = json.loads(raw)
                    if line.get("type") == "snapshot":
                        self.b.views.snapshot("shoal", self.name, {
                            m["name"]: shoal_state(m) for m in line["members"]}, served={
                            m["name"]: m["status"] for m in line["members"]})
                    elif line.get("type") == "member":
                        m = line["member"]
                        if m["status"] == "held":
                            self.b.views.held_why[(self.name, m["name"])] = (
                                m.get("cause") or {}).get("text", "")
                        self.b.views.event("shoal", self.name, m["name"], shoal_state(m),
                                           served=m["status"])
            except (OSError, ValueError, http.client.HTTPException):
                time.sleep(0.1)

    # /proc figures
    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def tx_bytes(self):
        with open(f"/proc/{self.proc.pid}/net/dev") as f:
            for line in f:
                if line.strip().startswith("eth0:"):
                    return int(line.split(":", 1)[1].split()[8])
        return 0


# ---------------------------------------------------------------- the bench


class Bench:
    def __init__(self, a, n, tmp, shoal_key, serf_key):
        self.a, self.n, self.tmp = a, n, tmp
        self.shoal, self.shoal_key, self.serf_key = a.shoal, shoal_key, serf_key
        self.views = Views()
        self.stopping = False
        self.agents = {s: [Agent(self, s, i) for i in range(n)] for s in SYSTEMS}
        self.rng = random.Random(a.seed)
        self.res = {s: {} for s in SYSTEMS}

    def names(self, system, exclude=()):
        return [a.name for a in self.agents[system] if a.i not in exclude]

    def observers(self, system, exclude=()):
        return [a.name for a in self.agents[system] if a.alive() and a.i not in exclude]

    def converge(self, system, timeout):
        return wait_until(lambda: self.views.all_alive(
            system, self.observers(system), self.names(system)), timeout)

    def converge_both(self, timeout=60):
        for s in SYSTEMS:
            for ag in self.agents[s]:
                ag.report_death()
        t0 = time.monotonic()
        ok = {}
        for s in SYSTEMS:
            ok[s] = self.converge(s, timeout)
            if time.monotonic() - t0 > 10:
                log(f"  {s}: every agent saw every member alive after "
                    f"{time.monotonic() - t0:.0f} s of waiting")
        for s, good in ok.items():
            if not good:
                log(f"  {s}: not every agent sees every member alive after {timeout} s")
        return ok

    def start_all(self):
        t0 = time.time()
        for s in SYSTEMS:
            self.agents[s][0].start()
        time.sleep(1.0)
        for i in range(1, self.n):
            for s in SYSTEMS:
                self.agents[s][i].start()
            time.sleep(self.a.start_gap)
        started = time.time() - t0
        # Both systems are watched together: waiting for one and then the other gave the
        # second at least the first's time (equal join times at 10 and 50 hosts on 7 Dec).
        pending = set(SYSTEMS)
        end = time.monotonic() + 120
        while pending:
            for s in sorted(pending):
                if self.views.all_alive(s, self.observers(s), self.names(s)):
                    self.res[s]["join_s"] = round(time.time() - t0, 2)
                    pending.discard(s)
            if time.monotonic() > end:
                break
            time.sleep(0.1)
        for s in pending:
            self.res[s]["join_s"] = None
        self.res["start_s"] = round(started, 2)
        for s in SYSTEMS:   # what joining cost each agent, from its start until now
            self.res[s]["join_cpu_s"] = round(statistics.mean(
                a.cpu_s() for a in self.agents[s] if a.alive()), 3)
        log(f"  joined: shoal {self.res['shoal']['join_s']} s, serf {self.res['serf']['join_s']} s"
            f" (the last agent started after {started:.1f} s); CPU per agent so far: shoal "
            f"{self.res['shoal']['join_cpu_s']} s, serf {self.res['serf']['join_cpu_s']} s")

    def idle(self):
        time.sleep(self.a.idle_after)
        secs = self.a.idle_secs
        def sample(s):
            out = {}
            for a in self.agents[s]:
                try:
                    out[a.name] = (a.cpu_s(), a.tx_bytes())
                except OSError:        # exited: left out, and logged below
                    a.report_death()
            return out

        before = {s: sample(s) for s in SYSTEMS}
        t0 = time.monotonic()
        time.sleep(secs)
        dt = time.monotonic() - t0
        for s in SYSTEMS:
            after = sample(s)
            both = [(before[s][k], after[k]) for k in after if k in before[s]]
            cpu = [(c1 - c0) / dt * 100 for (c0, _), (c1, _) in both]
            tx = [(b1 - b0) / dt for (_, b0), (_, b1) in both]
            self.res[s]["idle_bytes_s"] = round(statistics.mean(tx), 1)
            self.res[s]["idle_cpu_pct"] = round(statistics.mean(cpu), 3)
            live = [a for a in self.agents[s] if a.alive()]
            self.res[s]["rss_mb"] = round(statistics.median(a.rss_mb() for a in live), 1)
            self.res[s]["anon_mb"] = round(statistics.median(
                a.rss_mb("RssAnon") for a in live), 1)
            self.res[s]["rss_total_mb"] = round(sum(a.rss_mb() for a in live))
        log(f"  idle: " + ", ".join(
            f"{s} {self.res[s]['idle_bytes_s']} B/s {self.res[s]['idle_cpu_pct']} % "
            f"{self.res[s]['rss_mb']} MB (all agents {self.res[s]['rss_total_mb']} MB)"
            for s in SYSTEMS))

    def victims(self, count):
        # Host 0 is the seed every restarted agent joins through; it is never the victim.
        return [1 + (k % (self.n - 1)) for k in range(count)]

    def seen(self, t0, victim_name, state, system, timeout):
        """Seconds until each live observer reports `victim_name` in `state`."""
        obs = [o for o in self.observers(system) if o != victim_name]
        first = {}

        def done():
            for e in self.views.since(t0):
                if e[1] == system and e[3] == victim_name and e[4] == state and e[2] not in first:
                    first[e[2]] = e[0] - t0
            return all(o in first for o in obs)

        wait_until(done, timeout, step=0.05)
        return [round(first[o], 3) for o in obs if o in first], sum(o not in first for o in obs)

    def kill_rounds(self, kind, count):
        sig, state = (signal.SIGKILL, "down") if kind == "crash" else (signal.SIGINT, "left")
        out = {s: {"samples": [], "missing": 0, "per_kill_median": []} for s in SYSTEMS}
        for v in self.victims(count):
            self.converge_both(60)
            time.sleep(self.a.settle)
            t0 = time.time()
            for s in SYSTEMS:
                self.agents[s][v].send(sig)
            results = {}
            threads = []
            for s in SYSTEMS:
                def go(s=s):
                    results[s] = self.seen(t0, self.agents[s][v].name, state, s,
                                           self.a.detect_timeout)
                th = threading.Thread(target=go)
                th.start()
                threads.append(th)
            for th in threads:
                th.join()
            for s in SYSTEMS:
                samples, missing = results[s]
                out[s]["samples"] += samples
                out[s]["missing"] += missing
                if samples:
                    out[s]["per_kill_median"].append(round(statistics.median(samples), 3))
                self.agents[s][v].stop(signal.SIGKILL if kind == "crash" else signal.SIGINT)
            log(f"  {kind} h{v}/s{v}: " + ", ".join(
                f"{s} median {out[s]['per_kill_median'][-1] if out[s]['per_kill_median'] else None}"
                f" s" for s in SYSTEMS))
            for s in SYSTEMS:
                self.agents[s][v].start()
        self.converge_both(60)
        for s in SYSTEMS:
            xs = out[s]["samples"]
            self.res[s][kind] = {
                "median_s": round(statistics.median(xs), 3) if xs else None,
                "p90_s": round(pct(xs, 0.9), 3) if xs else None,
                "max_s": max(xs) if xs else None,
                "pairs": len(xs), "missing": out[s]["missing"],
                "per_kill_median_s": out[s]["per_kill_median"],
            }

    # ------------------------------------------------------------ faults

    def ipt(self, system, i, op, rule):
        return nsenter(Net.ns(system, i)) + ["iptables", op] + rule

    def loss_rules(self, p, both_ways):
        rules = [["OUTPUT", "-o", "eth0", "-m", "statistic", "--mode", "random",
                  "--probability", f"{p:.3f}", "-j", "DROP"]]
        if both_ways:
            rules.append(["INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random",
                          "--probability", f"{p:.3f}", "-j", "DROP"])
        return rules

    def set_loss(self, hosts, p, both_ways, on):
        cmds = []
        for i in hosts:
            for rule in self.loss_rules(p, both_ways):
                for s in SYSTEMS:   # interleaved: both systems' host i change together
                    cmds.append(self.ipt(s, i, "-I" if on else "-D", rule))
        failed = run_many(cmds)
        if failed:
            log(f"  {failed} of {len(cmds)} iptables changes failed")
        return failed

    def count_downs(self, t0, t1, affected=()):
        """False downs in [t0, t1]: transitions of a live member into down, per observer."""
        out = {s: {"others": 0, "affected": 0} for s in SYSTEMS}
        served = {"others": 0, "affected": 0}
        aff_names = {self.agents[s][i].name for s in SYSTEMS for i in affected}
        for (t, s, obs, member, state, prev, sv, prev_sv) in self.views.since(t0, t1):
            key = "affected" if member in aff_names else "others"
            if state == "down" and prev != "down":
                out[s][key] += 1
            if s == "shoal" and sv == "down" and prev_sv != "down":
                served[key] += 1
        out["shoal"]["served"] = served
        return out

    def fault_phase(self, name, body, affected=()):
        self.converge_both(60)
        time.sleep(self.a.settle)
        t0 = time.time()
        body()
        t1 = time.time()
        time.sleep(self.a.tail_secs)
        counts = self.count_downs(t0, time.time(), affected)
        for s in SYSTEMS:
            self.res[s].setdefault("false_downs", {})[name] = counts[s]
        log(f"  {name} ({t1 - t0:.0f} s + {self.a.tail_secs} s tail): " + ", ".join(
            f"{s} {counts[s]}" for s in SYSTEMS))

    def uniform(self):
        hosts = range(self.n)
        self.set_loss(hosts, self.a.loss, False, True)
        try:
            time.sleep(self.a.fault_secs)
        finally:
            self.set_loss(hosts, self.a.loss, False, False)

    def bursty(self):
        end = time.monotonic() + self.a.fault_secs
        k = max(1, round(self.a.burst_fraction * self.n))
        self.res["bursts"] = []
        while time.monotonic() < end:
            hosts = self.rng.sample(range(self.n), k)
            on = self.rng.uniform(*self.a.burst_on)
            off = self.rng.uniform(*self.a.burst_off)
            self.set_loss(hosts, self.a.burst_loss, True, True)
            try:
                time.sleep(on)
            finally:
                self.set_loss(hosts, self.a.burst_loss, True, False)
            self.res["bursts"].append(round(on, 2))
            time.sleep(min(off, max(0.0, end - time.monotonic())))

    def stop_cycle(self, host, stopped_s, running_s):
        agents = [self.agents[s][host] for s in SYSTEMS]
        end = time.monotonic() + self.a.fault_secs
        try:
            while time.monotonic() < end:
                for a in agents:
                    a.send(signal.SIGSTOP)
                time.sleep(stopped_s)
                for a in agents:
                    a.send(signal.SIGCONT)
                time.sleep(running_s)
        finally:
            for a in agents:
                a.send(signal.SIGCONT)

    # ------------------------------------------------------------ gray failures (issue 21)

    def present_after(self, system, e):
        """Whether the event `e` leaves its member served by its observer."""
        if system == "shoal":
            return e[6] in SERVING
        return e[4] == "alive"

    def gray_figures(self, system, host, t0, t1, earlier=()):
        """What every healthy agent's served view did in [t0, t1] with the fault on `host`:
        per observer, the times it stopped or started serving the faulty member (from the
        watch stream / Serf's log: every change, not samples), when it first removed it, and
        every healthy member any healthy agent stopped serving. Hosts faulted by an earlier
        phase (`earlier`) are neither observers nor healthy members: damping and the gray
        rule keep them out of every view for minutes after their fault, by design."""
        faulty = self.agents[system][host].name
        healthy = [ag.name for ag in self.agents[system]
                   if ag.i != host and ag.i not in earlier]
        present = {o: True for o in healthy}   # converged before the fault: all served
        changes = {o: 0 for o in healthy}
        first_out = {}
        downs = 0
        healthy_down, healthy_down_episodes = set(), 0
        healthy_swim_down = set()
        out_now = {}                           # (observer, member) -> not served now
        for e in self.views.since(t0, t1):
            _, s, obs, member, state, prev, _, _ = e
            if s != system or obs not in present:
                continue
            if member == faulty:
                p = self.present_after(system, e)
                if p != present[obs]:
                    present[obs] = p
                    changes[obs] += 1
                    if not p and obs not in first_out:
                        first_out[obs] = e[0] - t0
                if state == "down" and prev != "down":
                    downs += 1
            elif member in healthy:
                p = self.present_after(system, e)
                if not p and not out_now.get((obs, member)):
                    healthy_down.add(member)
                    healthy_down_episodes += 1
                out_now[(obs, member)] = not p
                if state == "down" and prev != "down":
                    healthy_swim_down.add(member)
        removed_by_all = len(first_out) == len(healthy)
        return {
            "observers": len(healthy),
            "removed_by": len(first_out),
            "all_removed_s": round(max(first_out.values()), 1) if removed_by_all else None,
            "first_removed_s": round(min(first_out.values()), 1) if first_out else None,
            "removed_s_by_observer": {o: round(t, 1) for o, t in sorted(first_out.items())},
            "out_at_end": sum(not p for p in present.values()),
            "changes_max": max(changes.values()),
            "changes_mean": round(statistics.mean(changes.values()), 2),
            "changes_total": sum(changes.values()),
            "downs": downs,
            "healthy_down": sorted(healthy_down),
            "healthy_down_episodes": healthy_down_episodes,
            "healthy_swim_down": sorted(healthy_swim_down),
        }

    def gray_phase(self, name, host, body, earlier=()):
        self.converge_both(60)
        time.sleep(self.a.settle)
        t0 = time.time()
        try:
            body()
        finally:
            t1 = time.time()
        for s in SYSTEMS:
            self.res[s].setdefault("gray", {})[name] = g = self.gray_figures(s, host, t0, t1,
                                                                       earlier)
            log(f"  {name} {s}: removed by {g['removed_by']}/{g['observers']} "
                f"(all after {g['all_removed_s']} s), out at the end {g['out_at_end']}, "
                f"changes per observer max {g['changes_max']} mean {g['changes_mean']} "
                f"({g['changes_total']} in all), downs {g['downs']}, healthy not served "
                f"{g['healthy_down']} ({g['healthy_down_episodes']} episodes), healthy "
                f"declared down {g['healthy_swim_down']}")
        # Let the faulty host back into every view (damping, Serf's rejoin) before the next
        # phase; the next phase faults another host anyway.
        time.sleep(self.a.tail_secs)

    def gray_loss(self, host):
        self.set_loss([host], self.a.gray_loss, True, True)
        try:
            time.sleep(self.a.gray_secs)
        finally:
            self.set_loss([host], self.a.gray_loss, True, False)

    def flip_flop(self, host):
        rule = ["INPUT", "-i", "eth0", "-j", "DROP"]
        end = time.monotonic() + self.a.gray_secs
        while time.monotonic() < end:
            run_many([self.ipt(s, host, "-I", rule) for s in SYSTEMS])
            try:
                time.sleep(min(self.a.flip_off, max(0.0, end - time.monotonic())))
            finally:
                run_many([self.ipt(s, host, "-D", rule) for s in SYSTEMS])
            time.sleep(min(self.a.flip_on, max(0.0, end - time.monotonic())))

    def app_kill_rounds(self, count):
        """Crash seen down as one app sees it: agent 0's served view only (shoal's served
        status, which the guard and damping shape; Serf's member list), both systems' agent I
        killed at once, I rotating over 1..N-1."""
        pairs = []
        obs = {s: self.agents[s][0].name for s in SYSTEMS}
        for v in self.victims(count):
            self.converge_both(60)
            # A victim killed again soon after its restart may still be damped (two lives
            # within about two minutes are a crash loop): wait until agent 0 serves it.
            if not wait_until(lambda: all(self.views.serves(s, obs[s], self.agents[s][v].name)
                                          for s in SYSTEMS), 120):
                log(f"  agent 0 does not serve h{v}/s{v} after 120 s")
            time.sleep(self.a.settle)
            t0 = time.time()
            for s in SYSTEMS:
                self.agents[s][v].send(signal.SIGKILL)
            seen = {}

            def done():
                for s in SYSTEMS:
                    if s not in seen and not self.views.serves(s, obs[s],
                                                               self.agents[s][v].name):
                        seen[s] = time.time() - t0
                return len(seen) == len(SYSTEMS)

            wait_until(done, self.a.detect_timeout, step=0.02)
            pairs.append({s: round(seen[s], 3) if s in seen else None for s in SYSTEMS})
            # What agent 0 served for the victim on the way (shoal: suspect, held, down),
            # seconds after the kill: where an app-seen crash spends its time.
            trail = [(round(e[0] - t0, 2), e[6]) for e in self.views.since(t0)
                     if e[1] == "shoal" and e[2] == obs["shoal"]
                     and e[3] == self.agents["shoal"][v].name and e[6] != e[7]]
            pairs[-1]["shoal_trail"] = trail
            if any(st == "held" for _, st in trail):
                pairs[-1]["shoal_held_why"] = self.views.held_why.get(
                    (obs["shoal"], self.agents["shoal"][v].name))
                log(f"    held: {pairs[-1]['shoal_held_why']}")
            log(f"  app-seen crash h{v}/s{v}: " + ", ".join(
                f"{s} {pairs[-1][s]} s" for s in SYSTEMS) + f" (h0 served: {trail})")
            for s in SYSTEMS:
                self.agents[s][v].stop(signal.SIGKILL)
                self.agents[s][v].start()
        self.converge_both(60)
        both = [p for p in pairs if p["shoal"] is not None and p["serf"] is not None]
        res = {"pairs": pairs, "missing": len(pairs) - len(both)}
        if both:
            med = {s: statistics.median(p[s] for p in both) for s in SYSTEMS}
            # Paired bootstrap over the kills: the ratio of the medians, 95 % interval.
            rng = random.Random(self.a.seed)
            ratios = []
            for _ in range(10000):
                smp = [rng.choice(both) for _ in both]
                ratios.append(statistics.median(p["shoal"] for p in smp)
                              / statistics.median(p["serf"] for p in smp))
            res.update({
                "median_s": {s: round(med[s], 3) for s in SYSTEMS},
                "ratio": round(med["shoal"] / med["serf"], 3),
                "ratio_95": [round(pct(ratios, 0.025), 3), round(pct(ratios, 0.975), 3)],
            })
        self.res["app_crash"] = res

    def run(self):
        a = self.a
        self.start_all()
        if a.idle_secs > 0:
            self.idle()
        if a.kills:
            log(f"  {a.kills} crashes")
            self.kill_rounds("crash", a.kills)
        if a.leaves:
            log(f"  {a.leaves} graceful leaves")
            self.kill_rounds("leave", a.leaves)
        if a.fault_secs > 0:
            if "uniform" in a.faults:
                self.fault_phase("uniform", self.uniform)
            if "bursty" in a.faults:
                self.fault_phase("bursty", self.bursty)
            paused, starved = 1 % self.n, 2 % self.n
            if "paused" in a.faults:
                self.fault_phase("paused", lambda: self.stop_cycle(
                    paused, a.pause_stopped, a.pause_running), affected=(paused,))
            period = a.starve_period_ms / 1000
            run_s = period * a.starve_share
            if "starved" in a.faults:
                self.fault_phase("starved", lambda: self.stop_cycle(
                    starved, period - run_s, run_s), affected=(starved,))
        if a.gray_secs > 0:
            lossy, flapping = self.n - 1, self.n - 2
            self.gray_phase("gray_loss", lossy, lambda: self.gray_loss(lossy))
            self.gray_phase("flip_flop", flapping, lambda: self.flip_flop(flapping),
                            earlier=(lossy,))
        if a.app_kills:
            log(f"  {a.app_kills} crashes seen by one app (agent 0's served view)")
            self.app_kill_rounds(a.app_kills)
        for s in SYSTEMS:
            self.res[s]["rss_mb_end"] = round(statistics.median(
                x.rss_mb() for x in self.agents[s] if x.alive()), 1)
        return self.res

    def stop(self):
        self.stopping = True
        for s in SYSTEMS:
            for ag in self.agents[s]:
                if ag.proc is not None and ag.proc.poll() is None:
                    ag.send(signal.SIGCONT)
                    ag.proc.kill()
        for s in SYSTEMS:
            for ag in self.agents[s]:
                if ag.proc is not None:
                    try:
                        ag.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass


# ---------------------------------------------------------------- report


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, "
            f"load average {load[0]:.2f} at the start")


def ratio(x, y):
    if x is None or y is None:
        return "-"
    if y == 0:
        return "-" if x == 0 else "inf"
    return f"{x / y:.2f}x"


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v}{unit}"


def table(n, res, a):
    sh, se = res["shoal"], res["serf"]
    rows = []

    def row(label, x, y, unit="", r=True):
        rows.append(f"| {label} | {fmt(y, unit)} | {fmt(x, unit)} | "
                    f"{ratio(x, y) if r else '-'} |")

    rows.append(f"| N = {n} agents each | Serf | shoal | shoal/Serf |")
    rows.append("| --- | --- | --- | --- |")
    row(f"join: every agent sees N alive (all N started within {fmt(res.get('start_s'))} s, "
        f"the two systems interleaved)", sh.get("join_s"), se.get("join_s"), " s")
    if res.get("start_s") is not None:
        after = {k: round(v["join_s"] - res["start_s"], 2) if v.get("join_s") is not None
                 else None for k, v in (("shoal", sh), ("serf", se))}
        row("... after the last agent started", after["shoal"], after["serf"], " s")
    for kind, label in (("crash", "crash (`kill -9`) seen down"),
                        ("leave", "graceful leave (SIGINT) seen")):
        if kind in sh:
            k = f"{sh[kind]['pairs'] + sh[kind]['missing']} pairs"
            row(f"{label}, median ({k})", sh[kind]["median_s"], se[kind]["median_s"], " s")
            row(f"{label}, p90", sh[kind]["p90_s"], se[kind]["p90_s"], " s")
            row(f"{label}, max", sh[kind]["max_s"], se[kind]["max_s"], " s")
            if sh[kind]["missing"] or se[kind]["missing"]:
                row(f"{label}, not seen within {a.detect_timeout:.0f} s",
                    sh[kind]["missing"], se[kind]["missing"], "", r=False)
    fd_sh, fd_se = sh.get("false_downs", {}), se.get("false_downs", {})
    span = f"{a.fault_secs:.0f} s (+{a.tail_secs:g} s after)"
    labels = {
        "uniform": f"false downs: {a.loss:.0%} egress loss on every host, {span}",
        "bursty": (f"false downs: bursty loss ({a.burst_loss:.0%} in+out on "
                   f"{a.burst_fraction:.0%} of hosts at once, bursts "
                   f"{a.burst_on[0]:g}-{a.burst_on[1]:g} s, gaps "
                   f"{a.burst_off[0]:g}-{a.burst_off[1]:g} s), {span}"),
        "paused": (f"false downs: one agent paused ({a.pause_stopped:g} s stopped, "
                   f"{a.pause_running:g} s running), {span}"),
        "starved": (f"false downs: one agent CPU-starved (runs {a.starve_share:.0%} of every "
                    f"{a.starve_period_ms:.0f} ms), {span}"),
    }

    def fd_row(label, k, who):
        x, y = fd_sh[k][who], fd_se[k][who]
        rows.append(f"| {label} | {y} | {x} (served {fd_sh[k]['served'][who]}) | {ratio(x, y)} |")

    for k, label in labels.items():
        if k in fd_sh:
            fd_row(label, k, "others")
            if k in ("paused", "starved"):
                fd_row(f"... the {k} agent itself seen down", k, "affected")
    row("idle traffic per agent", sh.get("idle_bytes_s"), se.get("idle_bytes_s"), " B/s")
    row("CPU per agent from its start until both systems had joined",
        sh.get("join_cpu_s"), se.get("join_cpu_s"), " s")
    row("idle CPU per agent (% of a core)", sh.get("idle_cpu_pct"), se.get("idle_cpu_pct"), " %")
    row("RSS per agent, idle (median)", sh.get("rss_mb"), se.get("rss_mb"), " MB")
    row("RSS per agent, after the faults", sh.get("rss_mb_end"), se.get("rss_mb_end"), " MB")
    row("... of the idle RSS, anonymous (heap, stacks; the rest is code and libraries)",
        sh.get("anon_mb"), se.get("anon_mb"), " MB")
    return "\n".join(rows) + gray_table(res, a)


def gray_table(res, a):
    """Issue 21's targets, shoal beside Serf (empty when those phases did not run)."""
    sh, se = res["shoal"].get("gray", {}), res["serf"].get("gray", {})
    rows = []
    labels = {
        "gray_loss": f"{a.gray_loss:.0%} loss both ways on 1 host, {a.gray_secs:.0f} s",
        "flip_flop": (f"ingress off {a.flip_off:g} s / on {a.flip_on:g} s on 1 host, "
                      f"{a.gray_secs:.0f} s"),
    }
    for k, label in labels.items():
        if k not in sh:
            continue
        rows.append(f"| {label}: every healthy agent removed it after | "
                    f"{fmt(se[k]['all_removed_s'], ' s')} ({se[k]['removed_by']} of "
                    f"{se[k]['observers']}) | {fmt(sh[k]['all_removed_s'], ' s')} "
                    f"({sh[k]['removed_by']} of {sh[k]['observers']}) |")
        rows.append(f"| ... not served at the end of the fault, observers | "
                    f"{se[k]['out_at_end']} | {sh[k]['out_at_end']} |")
        rows.append(f"| ... presence changes per observer, max (mean; all) | "
                    f"{se[k]['changes_max']} ({se[k]['changes_mean']}; "
                    f"{se[k]['changes_total']}) | {sh[k]['changes_max']} "
                    f"({sh[k]['changes_mean']}; {sh[k]['changes_total']}) |")
        rows.append(f"| ... downs of it declared (observer transitions) | {se[k]['downs']} | "
                    f"{sh[k]['downs']} |")
        rows.append(f"| ... healthy members not served by a healthy agent (episodes) | "
                    f"{len(se[k]['healthy_down'])} ({se[k]['healthy_down_episodes']}) | "
                    f"{len(sh[k]['healthy_down'])} ({sh[k]['healthy_down_episodes']}) |")
        rows.append(f"| ... healthy members declared down (SWIM) | "
                    f"{len(se[k]['healthy_swim_down'])} | "
                    f"{len(sh[k]['healthy_swim_down'])} |")
    ac = res.get("app_crash")
    if ac and "median_s" in ac:
        m = ac["median_s"]
        lo, hi = ac["ratio_95"]
        rows.append(f"| crash seen down by one app (agent 0's served view), median over "
                    f"{len(ac['pairs']) - ac['missing']} kills | {m['serf']} s | "
                    f"{m['shoal']} s: **{ac['ratio']:.2f}x** (95 % interval "
                    f"{lo:.2f}-{hi:.2f}) |")
    if not rows:
        return ""
    head = ["", "", "| gray failures and one app's view (issue 21) | Serf | shoal |",
            "| --- | --- | --- |"]
    return "\n".join(head + rows)


def parse_range(s):
    lo, hi = (float(x) for x in s.split("-"))
    return (lo, hi)


def dist_binary():
    """Where `packaging/build-dist.sh` puts the dist binary: the static musl build
    (target/x86_64-unknown-linux-musl/dist/shoal) or the glibc one (target/dist/shoal), under
    $CARGO_TARGET_DIR or the repository's target/; the newer of the two when both exist."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tdir = os.path.join(root, os.environ.get("CARGO_TARGET_DIR") or "target")
    found = [p for p in (os.path.join(tdir, "x86_64-unknown-linux-musl", "dist", "shoal"),
                         os.path.join(tdir, "dist", "shoal")) if os.access(p, os.X_OK)]
    if not found:
        return os.path.join(tdir, "dist", "shoal")
    return max(found, key=os.path.getmtime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="10,50", help="cluster sizes, comma-separated [10,50]")
    ap.add_argument("--kills", type=int, default=None,
                    help="crashes per size [20 at N<=20, else 12: single kills vary by "
                         "seconds (when the first probe reaches the dead agent), so fewer "
                         "make the median of both systems swing]")
    ap.add_argument("--leaves", type=int, default=4, help="graceful leaves per size [4]")
    ap.add_argument("--idle-secs", type=float, default=60,
                    help="idle measurement [60 s: two of each system's 30 s periodic "
                         "exchanges, shoal's announce and Serf's push-pull]")
    ap.add_argument("--idle-after", type=float, default=3,
                    help="wait this long after the join before the idle window [3 s]")
    ap.add_argument("--fault-secs", type=float, default=45,
                    help="length of each fault phase, 0 to skip them [45 s]")
    ap.add_argument("--faults", type=lambda v: set(v.split(",")),
                    default={"uniform", "bursty", "paused", "starved"},
                    help="which fault phases run, comma-separated "
                         "[uniform,bursty,paused,starved]")
    ap.add_argument("--tail-secs", type=float, default=8,
                    help="downs counted this long after a fault ends [8 s]")
    ap.add_argument("--start-gap", type=float, default=0.02,
                    help="seconds between starting agent I of both systems and agent I+1 "
                         "[0.02; at 200 hosts on 2 loaded cores, 0.2: 400 agents starting "
                         "at once drove the load average past 300 and Serf declared live "
                         "members failed]")
    ap.add_argument("--settle", type=float, default=2, help="calm before each round [2 s]")
    ap.add_argument("--detect-timeout", type=float, default=30)
    ap.add_argument("--loss", type=float, default=0.2, help="uniform egress loss [0.2]")
    ap.add_argument("--burst-loss", type=float, default=0.8, help="loss in a burst [0.8]")
    ap.add_argument("--burst-fraction", type=float, default=0.3,
                    help="share of hosts in each burst [0.3]")
    ap.add_argument("--burst-on", type=parse_range, default=(1.0, 4.0), help="burst length [1-4 s]")
    ap.add_argument("--burst-off", type=parse_range, default=(1.0, 4.0), help="gap [1-4 s]")
    ap.add_argument("--pause-stopped", type=float, default=10.0)
    ap.add_argument("--pause-running", type=float, default=5.0)
    ap.add_argument("--starve-period-ms", type=float, default=1000)
    ap.add_argument("--starve-share", type=float, default=0.1,
                    help="share of each period a starved agent runs [0.1]")
    ap.add_argument("--gray-secs", type=float, default=0,
                    help="length of each gray-failure phase (issue 21: loss both ways on "
                         "host N-1, then ingress on/off on host N-2; every healthy agent's "
                         "served view from its stream), 0 to skip them [0; the issue: 160]")
    ap.add_argument("--gray-loss", type=float, default=0.8,
                    help="loss both ways on the lossy host [0.8]")
    ap.add_argument("--flip-off", type=float, default=20.0,
                    help="flip-flop: ingress dropped this long [20 s]")
    ap.add_argument("--flip-on", type=float, default=20.0,
                    help="flip-flop: then let through this long [20 s]")
    ap.add_argument("--app-kills", type=int, default=0,
                    help="crashes timed on one app's view (agent 0's served view), both "
                         "systems' agent I killed at once; median and ratio with a paired "
                         "bootstrap 95 %% interval [0]")
    ap.add_argument("--seed", type=int, default=13, help="fault schedule seed")
    ap.add_argument("--shoal", default=None,
                    help="the shoal binary [the newest dist build: musl, else glibc]")
    ap.add_argument("--json", help="write the raw figures here")
    a = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, iptables)")
    for tool in ("serf", "iptables", "ip", "nsenter"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install -y serf iptables iproute2 util-linux")
    a.shoal = os.path.abspath(a.shoal or dist_binary())
    if not os.access(a.shoal, os.X_OK):
        sys.exit(f"{a.shoal}: not found (bash packaging/build-dist.sh)")
    log(f"shoal binary: {a.shoal}")
    sizes = [int(x) for x in a.nodes.split(",")]
    if any(n < 3 for n in sizes):
        sys.exit("--nodes: at least 3")

    def on_term(*_):
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a shell starting the bench in the background ignores it.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started = time.time()
    desc = machine()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    serf_version = run("serf", "version", check=False).stdout.split("\n")[0].strip()
    rev = run("git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short",
              "HEAD", check=False).stdout.strip() or "?"
    shoal_key = run(a.shoal, "keygen").stdout.strip()
    serf_key = run("serf", "keygen").stdout.strip()
    out, tables = {"date": date, "machine": desc, "serf": serf_version, "shoal": rev}, []
    Net.remove_leftovers()
    kills_arg = a.kills
    try:
        for n in sizes:
            a.kills = kills_arg if kills_arg is not None else (20 if n <= 20 else 12)
            t_n = time.time()
            log(f"N = {n}: setting up {2 * n} namespaces")
            net = Net(n)
            tmp = tempfile.mkdtemp(prefix=f"{PREFIX}-")
            bench = Bench(a, n, tmp, shoal_key, serf_key)
            try:
                net.setup()
                res = bench.run()
            finally:
                bench.stop()
                net.teardown()
                shutil.rmtree(tmp, ignore_errors=True)
            res["wall_s"] = round(time.time() - t_n)
            out[str(n)] = res
            tables.append(table(n, res, a))
            log(f"N = {n} done in {res['wall_s']} s")
            print(tables[-1], flush=True)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        Net.remove_leftovers()
        sys.exit(130)
    finally:
        Net.remove_leftovers()
    out["wall_s"] = round(time.time() - started)
    out["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print(f"{date}; {desc}; Serf {serf_version}, shoal {rev}; whole run {out['wall_s']} s; "
          f"load average {out['load_end'][0]:.2f} at the end")
    print()
    print("\n\n".join(tables))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
