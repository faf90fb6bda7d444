"""`sigaudit report` on a large input: throughput and peak memory (scripts/bench, section 8).

Writes a file of realistic records, as many processes on several hosts leave them (the library's
JSON records, with native frames and, for some, Python frames; a third of them as
`journalctl -o json` entries), and runs `sigaudit report` on it and on a tenth of it. The figures:
CPU seconds, throughput, and peak resident memory (the kernel's ru_maxrss of the process), which
must not grow with the input: the report streams.
"""

import json
import os
import random
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))

HOSTS = ["web-1", "web-2", "batch-7"]
CULPRITS = [("/srv/app/helper.py", 10, "<module>"), ("/srv/app/jobs.py", 212, "run"),
            ("/opt/tool/lib/spawn.py", 33, "start")]
NATIVE = [("/usr/lib/x86_64-linux-gnu/libfoo.so.1", "0x1149", "foo_init+0x19")]


def record(rng, i):
    host = HOSTS[i % len(HOSTS)]
    pid = 1000 + rng.randrange(200_000)
    kind = "echild" if i % 3 == 2 else "ignore"
    t = f"2026-11-25T{(i // 3600000) % 24:02d}:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}000Z"
    frames = [{"addr": hex(0x7f0000000000 + k * 0x1000 + i % 4096),
               "module": "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
               "offset": hex(0x2947b9 + k * 0x40), "symbol": f"_PyEval_EvalFrameDefault+{hex(k)}"}
              for k in range(14)]
    if i % 7 == 0:
        module, offset, symbol = NATIVE[0]
        script = []
        frames.insert(0, {"addr": "0x7f00deadb000", "module": module, "offset": offset,
                          "symbol": symbol})
    else:
        f, line, fn = CULPRITS[i % len(CULPRITS)]
        script = [{"language": "python", "file": "/usr/lib/python3.11/signal.py", "line": 56,
                   "function": "signal"},
                  {"language": "python", "file": f, "line": line, "function": fn}]
    rec = {"event": kind, "time": t, "pid": pid, "ppid": pid - 1, "tid": pid, "host": host,
           "exe": "/usr/bin/python3.11", "argv": ["python3", "/srv/app/main.py", "--worker"],
           "signal": "SIGCHLD", "signo": 17, "via": "waitpid" if kind == "echild" else "sigaction",
           "old": "SIG_DFL", "old_flags": [], "new": "SIG_IGN", "flags": ["SA_ONSTACK"],
           "action": "logged", "script": script, "script_truncated": False,
           "script_missing": None, "backtrace": frames, "backtrace_truncated": False}
    if kind == "echild":
        rec["errno"] = "ECHILD"
        rec["cause"] = {"event": "ignore", "time": t, "pid": pid, "via": "sigaction",
                        "signal": "SIGCHLD", "script": script[1:],
                        "native": frames[0] if not script else None}
    line = json.dumps(rec, separators=(",", ":"))
    if i % 3 == 1:
        # As journalctl -o json prints the entry.
        line = json.dumps({"__CURSOR": f"s=1;i={i:x}", "__REALTIME_TIMESTAMP": str(i),
                           "_HOSTNAME": host, "_PID": str(pid), "SYSLOG_IDENTIFIER": "sigaudit",
                           "PRIORITY": "4", "MESSAGE": f"pid {pid} (python3.11) ...",
                           "SIGAUDIT_EVENT": kind, "SIGAUDIT_RECORD": line},
                          separators=(",", ":"))
    return line + "\n"


def write_input(path, size):
    """Writes about `size` bytes of records; returns how many."""
    rng = random.Random(14)
    n = 0
    written = 0
    with open(path, "w") as f:
        batch = []
        while written < size:
            line = record(rng, n)
            batch.append(line)
            written += len(line)
            n += 1
            if len(batch) == 4096:
                f.write("".join(batch))
                batch = []
        f.write("".join(batch))
    return n


def report_once(maxrss, sigaudit, path, env):
    """(wall s, CPU s, peak RSS KiB, summary) of `sigaudit report --json PATH`, run under the
    small `maxrss` parent (see maxrss.c)."""
    out = path + ".out"
    err = path + ".err"
    t0 = time.perf_counter()
    pid = os.posix_spawn(maxrss, [maxrss, sigaudit, "report", "--json", path], env,
                         file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    with open(err) as f:
        said = f.read()
    if status != 0:
        raise RuntimeError(f"sigaudit report exited with status {status:#x}: {said}")
    peak = int(said.strip().splitlines()[-1].split("=")[1])
    with open(out) as f:
        summary = json.load(f)
    return wall, usage.ru_utime + usage.ru_stime, peak, summary


def measure(sigaudit, work, env, quick, rounds, row, note, med, spread, fmt_s):
    """Adds section 8's rows through the bench's `row`."""
    maxrss = os.path.join(work, "maxrss")
    subprocess.run(["gcc", "-O2", "-o", maxrss, os.path.join(HERE, "maxrss.c")], check=True)
    big = (20 << 20) if quick else (1 << 30)
    sizes = [big // 10, big]
    free = os.statvfs(work)
    if free.f_bavail * free.f_frsize < 2 * big:
        note(f"7. skipped: {work} has less than {2 * big >> 20} MiB free")
        return
    for size in sizes:
        path = os.path.join(work, f"records-{size >> 20}M.jsonl")
        n = write_input(path, size)
        runs = [report_once(maxrss, sigaudit, path, env) for _ in range(max(1, rounds // 3))]
        os.unlink(path)
        summary = runs[0][3]
        if summary["events"] != n:
            raise RuntimeError(f"report counted {summary['events']} events of {n}")
        cpu = [r[1] for r in runs]
        wall = [r[0] for r in runs]
        rss = [r[2] for r in runs]
        mib = size / (1 << 20)
        row(f"{mib:,.0f} MiB: {n:,} records, {len(summary['hosts'])} hosts, "
            f"{len(summary['causes'])} root causes",
            fmt_s(med(cpu)), f"{mib / med(cpu):,.0f} MiB/s CPU {spread(cpu, fmt_s)}",
            f"wall {fmt_s(med(wall))}")
        row("  peak resident memory", f"{med(rss) / 1024:,.1f} MiB",
            f"{'about ' if summary['processes_estimated'] else ''}{summary['processes']:,} "
            "processes counted")
