"""Turn a benchmark run's results into ``docs/benchmarks.md`` and ``docs/benchmarks.png``.

Ratios are computed here, from the raw seconds measured side by side in one run; each target
of issues 5 and 14 gets a line saying whether it was met, and if not by how much, next to the
measured explanation (CPU accounting of the run, py-spy profile, the API's rate floor).
"""

from __future__ import annotations

import json
from pathlib import Path

MiB = 1024 * 1024


def _mib_s(r: dict, tool: str) -> float:
    return r["bytes"] / r["seconds"][tool] / MiB


def targets(res: dict) -> list[dict]:
    out = []

    def add(name, value, goal, met, unit="x", note=""):
        out.append({"target": name, "measured": value, "goal": goal, "met": met, "unit": unit,
                    "note": note})

    s1, s2, quiet = res.get("seq1"), res.get("seq4"), res.get("cpu") or {}
    if s1:
        v = s1["seconds"]["direct"] / s1["seconds"]["synfs"]
        add("1: sequential 1 GiB vs direct boto3", v, 0.8, v >= 0.8)
        v = s1["seconds"]["rclone"] / s1["seconds"]["synfs"]
        add("1: sequential 1 GiB vs rclone mount", v, 2.0, v >= 2.0)
    if s2:
        v = s2["seconds"]["direct"] / s2["seconds"]["synfs"]
        add("2: four files at once vs direct boto3", v, 0.9, v >= 0.9)
    # issue 14: the lower of the medians and the quiet re-run; CPU per GiB of that re-run
    for key, name, r in (("seq1", "one 1 GiB file", s1), ("seq4", "four files at once", s2)):
        q = quiet.get(key)
        if not r or not q:
            continue
        med = r["seconds"]["direct"] / r["seconds"]["synfs"]
        rerun = q["direct"]["wall_s"] / q["synfs"]["wall_s"]
        v = min(med, rerun)
        add(f"14: {name} vs direct boto3", v, 0.85, v >= 0.85,
            note=f"medians {med:.2f}x, quiet re-run {rerun:.2f}x; rclone "
                 f"{r['seconds']['direct'] / r['seconds']['rclone']:.2f}x")
    q = quiet.get("seq1")
    if q:
        c = cpu_per_gib(q)
        daemon, client = c["synfs"].get("synfs daemon"), c["direct"].get("direct boto3 client")
        if daemon and client:
            add("14: daemon CPU s/GiB vs the direct client's (1 GiB file)", daemon / client, 1.0,
                daemon <= client, unit="le",
                note=f"{daemon:.2f} vs {client:.2f} CPU s/GiB")
        a, b = c["synfs"].get("SeaweedFS (weed)"), c["direct"].get("SeaweedFS (weed)")
        if a and b:
            add("14: S3 server CPU s/GiB serving synfs vs serving direct", a / b, 1.1,
                a <= 1.1 * b, unit="le", note=f"{a:.2f} vs {b:.2f} CPU s/GiB")
    meta = res.get("metadata")
    if meta:
        sc = (meta.get("synapseclient") or {}).get("seconds")
        for name, r in meta["commands"].items():
            if r.get("cold_s") and sc:
                v = sc / r["cold_s"]
                add(f"5: cold `{name}` vs synapseclient", v, 3.0, v >= 3.0)
            if r.get("remount_s") and sc:
                v = sc / r["remount_s"]
                add(f"5: `{name}` after a remount (metadata store) vs synapseclient", v, 3.0,
                    v >= 3.0)
            if r.get("warm_s") is not None:
                add(f"5: warm `{name}`", r["warm_s"], 0.2, r["warm_s"] < 0.2, unit="s")
        view = meta.get("view") or {}
        snap, vls = view.get("snapshot") or {}, view.get("ls -lR") or {}
        if snap.get("seconds") and not snap.get("error") and sc:
            v = sc / snap["seconds"]
            add("5: snapshot of the tree from a file view vs synapseclient", v, 20.0, v >= 20.0,
                note=f"{snap['seconds']:.1f} s, {snap.get('calls')} REST calls")
        if vls.get("cold_s") and not vls.get("error") and sc:
            v = sc / vls["cold_s"]
            add("5: cold `ls -lR` of a fresh `--view` mount vs synapseclient", v, 10.0,
                v >= 10.0, note=f"{vls['cold_s']:.1f} s, mount included, "
                                f"{vls.get('calls')} REST calls")
    many = res.get("many")
    if many and many.get("peak_rss"):
        limit = _size(many["max_memory"]) + 100 * MiB
        add(f"6: peak RSS, 32 files at once, --max-memory {many['max_memory']}",
            many["peak_rss"] / MiB, limit / MiB, many["peak_rss"] <= limit, unit="MiB")
    return out


def cpu_per_gib(q: dict) -> dict:
    """CPU seconds per GiB of each process, for the synfs read and the direct read."""
    return {tool: {k: v / q["gib"] for k, v in q[tool]["processes"].items()}
            for tool in ("synfs", "direct")}


def _size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def _fmt(t: dict) -> str:
    if t["unit"] == "x":
        return f"{t['measured']:.3g}x (goal >= {t['goal']:g}x)"
    if t["unit"] == "s":
        return f"{t['measured']:.3f} s (goal < {t['goal']:g} s)"
    if t["unit"] == "le":
        return f"{t['measured']:.3g}x (goal <= {t['goal']:g}x)"
    return f"{t['measured']:.0f} MiB (goal <= {t['goal']:.0f} MiB)"


def _gap(t: dict) -> str:
    if t["met"]:
        return "met"
    if t["unit"] == "x":
        return f"missed by {(1 - t['measured'] / t['goal']) * 100:.1f}%"
    if t["unit"] == "le":
        return f"missed by {(t['measured'] / t['goal'] - 1) * 100:.1f}%"
    return f"missed by {t['measured'] - t['goal']:.3g} {t['unit']}"


def markdown(res: dict, notes: str = "", cluster_json: Path = Path("/nonexistent")) -> str:
    m = res["meta"]
    lines = [
        "# synfs benchmarks", "",
        f"Generated by `./scripts/bench.sh` on {m['date']} ({m['host']}; load average "
        f"{m['load_before']} before, {m['load_after']} after; the whole run took "
        f"{m['duration_s'] / 60:.1f} min). One emulator + SeaweedFS, every tool measured "
        "side by side in this one run; medians of "
        f"{m['reps']} cold-cache repetitions for scenarios 1-2 (after one untimed read of "
        "their files by each mount) and 3. Raw numbers: "
        "`docs/benchmarks.json`.", "",
        "![benchmarks](benchmarks.png)", "", "## Targets", "",
        "| target | measured | |", "|---|---|---|"]
    for t in res["targets"]:
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {t['target']} | {_fmt(t)}{note} | {_gap(t)} |")
    lines += ["", "## Results", ""]
    for key, title in (("seq1", "1. Sequential read of a 1 GiB file, one stream"),
                       ("seq4", "2. Four 256 MiB files read at once")):
        r = res.get(key)
        if not r:
            continue
        lines += [f"### {title}", "", "| tool | MiB/s | vs direct | daemon peak RSS |",
                  "|---|---|---|---|"]
        for tool in ("synfs", "direct", "rclone"):
            rss = r["peak_rss"].get(tool)
            lines.append(f"| {_tool(tool)} | {_mib_s(r, tool):.0f} | "
                         f"{r['seconds']['direct'] / r['seconds'][tool]:.2f}x | "
                         f"{'-' if not rss else f'{rss / MiB:.0f} MiB'} |")
        lines.append("")
    r = res.get("random")
    if r:
        reps = len((r.get("all_iops") or {}).get("synfs") or [1])
        lines += ["### 3. Random 256 KiB reads over the 1 GiB file (fio psync, O_DIRECT, QD1, "
                  f"{r['runtime_s']} s; median of {reps} interleaved runs)", "",
                  "| tool | IOPS | vs direct | MiB/s | daemon peak RSS |",
                  "|---|---|---|---|---|"]
        for tool in ("synfs", "direct", "rclone"):
            rss = r["peak_rss"].get(tool)
            name = "direct boto3 (one 256 KiB ranged GET at a time)" if tool == "direct" \
                else _tool(tool)
            lines.append(f"| {name} | {r['iops'][tool]:.0f} | "
                         f"{r['iops'][tool] / r['iops']['direct']:.2f}x | {r['mib_s'][tool]:.1f} | "
                         f"{'-' if not rss else f'{rss / MiB:.0f} MiB'} |")
        lines.append("")
    r = res.get("copy")
    if r:
        s = r["seconds"]
        note = (" (run while scenario 5's 50 ms latency and throttling were on: the fresh-mount"
                " number includes them)") if r.get("during_metadata") else ""
        lines += [f"### 4. `cp -r` of {r['files']} files of 64 KiB{note}", "",
                  "| tool | seconds | files/s |", "|---|---|---|",
                  f"| synfs, fresh mount (metadata included: {r['rest_calls'].get('synfs_cold')}"
                  f" REST calls) | {s['synfs_cold']:.2f} | {r['files'] / s['synfs_cold']:.0f} |",
                  f"| synfs, metadata cached, page cache dropped | {s['synfs']:.2f} | "
                  f"{r['files'] / s['synfs']:.0f} |",
                  f"| rclone mount, fresh | {s['rclone_cold']:.2f} | "
                  f"{r['files'] / s['rclone_cold']:.0f} |",
                  f"| rclone mount, again | {s['rclone']:.2f} | {r['files'] / s['rclone']:.0f} |",
                  f"| direct boto3, one GET per file in turn | {s['direct']:.2f} | "
                  f"{r['files'] / s['direct']:.0f} |", ""]
    meta = res.get("metadata")
    if meta:
        sc = meta.get("synapseclient") or {}
        lines += [f"### 5. Metadata: {meta['files']} files in 50 folders, 50 ms latency, "
                  "throttling on", "",
                  "| run | cold s | cold REST calls | warm s | warm REST calls | after a remount s "
                  "| after a remount REST calls | peak RSS |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in meta["commands"].items():
            if r.get("error"):
                lines.append(f"| synfs `{name}` | failed: {r['error']} | | | | | | |")
                continue
            remount = (f"{r['remount_s']:.1f} | {r.get('remount_calls')}"
                       if r.get("remount_s") is not None else "- | -")
            lines.append(f"| synfs `{name}` | {r['cold_s']:.1f} | {r['cold_calls']} | "
                         f"{r['warm_s']:.3f} | {r['warm_calls']} | {remount} | "
                         f"{(r.get('peak_rss') or 0) / MiB:.0f} MiB |")
        sc_s = f"{sc['seconds']:.1f}" if sc.get("seconds") else f"> {sc.get('timeout_s')}"
        lines += [f"| synapseclient walk + sizes | {sc_s} | {sc.get('requests', '?')} "
                  f"({sc.get('throttled', '?')} answered 429) | - | - | - | - | - |", ""]
        lines += view_lines(meta.get("view") or {}, sc.get("seconds"))
    r = res.get("many")
    if r:
        lines += ["### 6. Peak RSS of the daemon", "",
                  f"32 files of {r['bytes'] // r['files'] // MiB} MiB read at once with "
                  f"`--max-memory {r['max_memory']}`: {r['bytes'] / r['seconds'] / MiB:.0f} "
                  f"MiB/s, daemon peak RSS (VmHWM) {r['peak_rss'] / MiB:.0f} MiB. Peak RSS of "
                  "the other scenarios is in their tables.", ""]
    cpu = res.get("cpu")
    if cpu and any(cpu.get(k) for k in ("seq1", "seq4")):
        lines += ["## Where the CPU went (scenarios 1 and 2 read once more by each, on a quiet "
                  "machine after the other scenarios)", "",
                  "CPU seconds per GiB read, from `/proc/<pid>/stat` (user + system) of each "
                  "process; the direct client's are its own process time. synfs reads through a "
                  "new mount warmed by one read of each scenario (the direct client's process "
                  "had read both in scenarios 1-2), so both sides are at their steady state; "
                  "the page-fault row shows what memory the daemon still touched fresh.", "",
                  "| process | 1 file: synfs read | 1 file: direct read | 4 files: synfs read "
                  "| 4 files: direct read |", "|---|---|---|---|---|"]
        per = {k: cpu_per_gib(cpu[k]) for k in ("seq1", "seq4") if cpu.get(k)}
        names = dict.fromkeys(n for c in per.values() for t in c.values() for n in t)
        for name in names:
            cells = []
            for key in ("seq1", "seq4"):
                for tool in ("synfs", "direct"):
                    v = per.get(key, {}).get(tool, {}).get(name)
                    cells.append("-" if v is None else f"{v:.2f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        cells, walls, busy = [], [], []
        for key in ("seq1", "seq4"):
            for tool in ("synfs", "direct"):
                q = cpu.get(key)
                if not q:
                    cells += ["-"]
                    walls += ["-"]
                    busy += ["-"]
                    continue
                cells.append(f"{sum(q[tool]['processes'].values()) / q['gib']:.2f}")
                walls.append(f"{q['gib'] * 1024 / q[tool]['wall_s']:.0f} MiB/s")
                busy.append(f"{q[tool]['busy']:.0%}")
        lines += ["| **total** | " + " | ".join(cells) + " |",
                  "| throughput | " + " | ".join(walls) + " |",
                  f"| machine busy ({cpu['cores']} cores) | " + " | ".join(busy) + " |"]
        faults = [f"{q['synfs']['daemon_minflt'] / q['gib']:,.0f}"
                  if (q := cpu.get(key)) and "daemon_minflt" in q["synfs"] else "-"
                  for key in ("seq1", "seq4")]
        lines += [f"| synfs daemon: minor page faults per GiB | {faults[0]} "
                  f"| - | {faults[1]} | - |", ""]
    if res.get("profile"):
        lines += ["## py-spy profile of the daemon (scenario 1)", "",
                  "`py-spy record --gil`: samples of the thread holding the GIL, i.e. where the "
                  "daemon's Python-level CPU goes (pyfuse3's C code shows up as "
                  "`async_wrapper`; time blocked in `recv` or in the kernel is not in it: see "
                  "the CPU table). Self time, top 15:", "", "```"]
        lines += [f"{pct:5.1f}%  {frame}" for pct, frame in res["profile"]["self"][:15]]
        lines += ["```", "", "Including callees, synfs and its I/O paths:", "", "```"]
        lines += [f"{pct:5.1f}%  {frame}" for pct, frame in res["profile"]["inclusive"][:15]]
        lines += ["```", ""]
    lines += cluster_lines(cluster_json)
    if notes:
        lines += ["## Analysis", "", notes.strip(), ""]
    return "\n".join(lines)


def view_lines(view: dict, sc_s: float | None) -> list[str]:
    """Scenario 5's file-view runs (same tree, same faults, same run), as a small table."""
    if not view.get("snapshot") and not view.get("ls -lR"):
        return []
    out = [f"From a file view of the same tree (syn{str(view.get('id', '?')).removeprefix('syn')}"
           ", created by the bench, scoped to the tree's root), in the same run:", "",
           "| run | seconds | REST calls | vs synapseclient |", "|---|---|---|---|"]
    for key, name in (("snapshot", "`synfs snapshot ROOT --view VIEW`"),
                      ("ls -lR", "cold `ls -lR` of a fresh `synfs mount --view VIEW` "
                                 "(mount command included)")):
        r = view.get(key) or {}
        secs = r.get("seconds", r.get("cold_s"))
        if r.get("error") or not secs:
            out.append(f"| {name} | failed: {r.get('error') or 'not run'} | | |")
            continue
        ratio = f"{sc_s / secs:.1f}x faster" if sc_s else "-"
        extra = f" (mount {r['mount_s']:.1f} s, `ls` {r['ls_s']:.1f} s)" if "mount_s" in r else ""
        out.append(f"| {name} | {secs:.1f}{extra} | {r.get('calls')} | {ratio} |")
    return out + [""]


def cluster_lines(path: Path) -> list[str]:
    """A short section pointing at scenario 7's own report (``bench/cluster.py``), with its
    headline figures read from ``benchmarks-cluster.json`` when it is there."""
    if not path.exists():
        return []
    try:
        c = json.loads(path.read_text())
    except ValueError:
        return []
    out = ["## 7. A simulated cluster (its own run)", "",
           f"`python -m bench.cluster`, reported in [benchmarks-cluster.md]"
           f"(benchmarks-cluster.md) (measured {c.get('date', '?')}): {c.get('nodes')} "
           f"daemons at once, each copying the same {c.get('files')} files cold under "
           "production throttling.", ""]
    snap, live = c.get("snapshot_cluster") or {}, c.get("live_cluster") or {}
    facts = []
    if snap.get("finished"):
        facts.append(f"snapshot mounts: {snap.get('total_answered', snap['total_calls'])} REST "
                     f"calls served for all nodes ({snap['total_calls']} requests sent, 429 "
                     f"retries included), {snap['seconds']:.1f} s")
    if live:
        done = live.get("finished")
        served = live.get("total_answered") if done else \
            f"{live.get('projected_total_answered')} (projected)"
        sent = live.get("total_calls") if done else live.get("projected_total_calls")
        secs = f"{live['seconds']:.0f}" if done else f"{live.get('projected_seconds')} (projected)"
        facts.append(f"live mounts: {served} REST calls served ({sent} requests sent), {secs} s")
    ex = (c.get("extrapolation") or {})
    for kind in ("snapshot", "live"):
        if kind in ex:
            facts.append(f"1,000 {kind} nodes: {ex[kind]['calls']:,} calls = "
                         f"{ex[kind]['minutes_of_quota']:,} minutes of one user's quota")
    out += [f"- {f}" for f in facts]
    for t in c.get("targets") or []:
        out.append(f"- target {t['target']}: {t['measured']} -> "
                   f"{'met' if t['met'] else 'missed'}")
    return out + [""]


def _tool(tool: str) -> str:
    return {"synfs": "synfs", "direct": "direct boto3 (16 MiB ranges; 8 threads, 16 for 4 files)",
            "rclone": "rclone mount (Debian 1.60)"}[tool]


def chart(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    colors = {"synfs": "#1f77b4", "direct": "#2ca02c", "rclone": "#ff7f0e",
              "synapseclient": "#7f7f7f"}
    ax = axes[0]
    groups = [k for k in ("seq1", "seq4") if res.get(k)]
    for gi, key in enumerate(groups):
        for ti, tool in enumerate(("synfs", "direct", "rclone")):
            ax.bar(gi + ti * 0.27, _mib_s(res[key], tool), 0.25, color=colors[tool],
                   label=tool if gi == 0 else None)
    ax.set_xticks([i + 0.27 for i in range(len(groups))],
                  ["1 GiB, one stream", "4 files at once"][:len(groups)])
    ax.set_ylabel("MiB/s")
    ax.set_title("Sequential reads")
    ax.legend()
    if res.get("random"):
        tools = ("synfs", "direct", "rclone")
        axes[1].bar(tools, [res["random"]["iops"][t] for t in tools],
                    color=[colors[t] for t in tools])
        axes[1].set_title("Random 256 KiB reads (IOPS)")
    if res.get("copy"):
        s = res["copy"]["seconds"]
        names = ["synfs\ncold", "synfs\nmeta cached", "rclone\ncold", "direct"]
        vals = [s["synfs_cold"], s["synfs"], s["rclone_cold"], s["direct"]]
        axes[2].bar(names, vals, color=[colors["synfs"], colors["synfs"], colors["rclone"],
                                        colors["direct"]])
        axes[2].set_title("cp -r 1,000 x 64 KiB (s, lower is better)")
    meta = res.get("metadata")
    if meta:
        names, vals, cols = [], [], []
        for name, r in meta["commands"].items():
            if r.get("cold_s"):
                names += [f"{name}\ncold", f"{name}\nwarm"]
                vals += [r["cold_s"], max(r["warm_s"], 0.01)]
                cols += [colors["synfs"]] * 2
                if r.get("remount_s"):
                    names.append(f"{name}\nremount")
                    vals.append(r["remount_s"])
                    cols.append(colors["synfs"])
        view = meta.get("view") or {}
        for key, label in (("snapshot", "snapshot\n--view"), ("ls -lR", "ls -lR\n--view")):
            r = view.get(key) or {}
            secs = r.get("seconds", r.get("cold_s"))
            if secs and not r.get("error"):
                names.append(label)
                vals.append(secs)
                cols.append(colors["synfs"])
        sc = (meta.get("synapseclient") or {}).get("seconds")
        if sc:
            names.append("synapse-\nclient")
            vals.append(sc)
            cols.append(colors["synapseclient"])
        axes[3].bar(names, vals, color=cols)
        axes[3].set_yscale("log")
        axes[3].set_title("5,000 files: seconds (log, lower is better)")
        axes[3].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(res: dict, docs: Path, notes: str = "") -> None:
    res["targets"] = targets(res)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.json").write_text(json.dumps(res, indent=1, default=str))
    try:
        chart(res, docs / "benchmarks.png")
    except ImportError as exc:        # matplotlib comes with the `bench` extra (bench.sh)
        print(f"bench: no chart ({exc})")
    (docs / "benchmarks.md").write_text(markdown(res, notes, docs / "benchmarks-cluster.json"))
