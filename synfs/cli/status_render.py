"""The text report of ``synfs status``: one block per mount, labels aligned with their values.

Owns rendering only (``synfs.cli.status`` collects the data; ``--json`` prints it unrendered).
Known parts get a purpose-made line; any other part a daemon reports (cache, uploads, open files,
lists of kept or recovered uploads added later...) is rendered generically: numbers with units,
timestamps as UTC, and each item of a list of records on a line of its own, never as a Python
dict. Failure counts shown together always add up: failures are broken down by errno from the
daemon's own per-failure count, and normal answers (ENOENT...) are listed apart.
"""

from __future__ import annotations

import datetime as dt
import time

INDENT = "  "
GAP = 2                        # spaces between the longest label and the values
MAX_ITEMS = 10                 # list items shown per list (the rest is counted)


def human_size(n) -> str:
    try:
        n = float(n)
    except (TypeError, ValueError):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_duration(seconds) -> str:
    seconds = float(max(0.0, float(seconds)))
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def when(ts) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ts)


def _is_size_key(key: str) -> bool:
    return key.endswith("bytes") or key in ("used", "size", "capacity", "limit_bytes", "max")


def _is_time_key(key: str) -> bool:
    return key in ("at", "since", "started", "updated", "when") or key.endswith("_at")


def _scalar(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and _is_size_key(key):
        return human_size(value)
    if isinstance(value, (int, float)) and _is_time_key(key):
        return when(value)
    if isinstance(value, float) and key.endswith("_s"):
        return human_duration(value)
    if value is None:
        return "-"
    return str(value)


def _label(key: str) -> str:
    for suffix in ("_s", "_bytes"):
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key.removesuffix(suffix)
    return key.replace("_", " ")


def _record(item) -> str:
    """One list item on one line: its name (or path, id) first, then ``key value`` pairs."""
    if not isinstance(item, dict):
        return str(item)
    head_key = next((k for k in ("name", "path", "id", "entity") if item.get(k)), None)
    parts = [str(item[head_key])] if head_key else []
    for key, value in item.items():
        if key == head_key:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{_label(k)} {_scalar(k, v)}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        else:
            value = _scalar(key, value)
        parts.append(f"{_label(key)} {value}")
    return parts[0] + (": " + ", ".join(parts[1:]) if len(parts) > 1 else "") if parts else "-"


def generic(value) -> list[str]:
    """Lines for a part: the first a summary (``key value`` pairs), then one line per
    record of every non-empty list."""
    if not isinstance(value, dict):
        if isinstance(value, list):
            return [f"{len(value)}"] + [f"{INDENT}{_record(v)}" for v in value[:MAX_ITEMS]]
        return [str(value)]
    summary, details = [], []
    for key, item in value.items():
        label = _label(key)
        if isinstance(item, list):
            summary.append(f"{label} {len(item)}")
            if item:
                details.append(f"{label}:")
                details += [f"{INDENT}{_record(v)}" for v in item[:MAX_ITEMS]]
                if len(item) > MAX_ITEMS:
                    details.append(f"{INDENT}... and {len(item) - MAX_ITEMS} more")
        elif isinstance(item, dict):
            inner = generic(item)
            summary.append(f"{label} ({inner[0]})")
            details += inner[1:]
        else:
            summary.append(f"{label} {_scalar(key, item)}")
    return [", ".join(summary) if summary else "none"] + details


KNOWN = {"version", "synfs", "pid", "uid", "mountpoint", "root", "endpoint", "options", "started",
         "updated", "interval_s", "errors", "credentials", "requests", "age_s", "stale",
         "source", "state", "owner_uid", "mount_options", "detail", "status_unavailable",
         "mine", "refresh_signal", "refreshed", "auth", "rate_limit", "uploads"}


def _errors(errs: dict) -> list[str]:
    failures = int(errs.get("failures", 0))
    text = f"{failures} failure{'s' if failures != 1 else ''}"
    by_failure = errs.get("failures_by_errno")
    if isinstance(by_failure, dict) and by_failure:
        text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(by_failure.items())) + ")"
    last = errs.get("last_failure")
    if last:
        text += f"; last: {last.get('error')}" + (
            f" on {last['entity']}" if last.get("entity") else "") + f" at {when(last.get('at'))}"
    lines = [text]
    counts = errs.get("by_errno") or {}
    if isinstance(by_failure, dict):       # answers that were not failures
        normal = {k: v - int(by_failure.get(k, 0)) for k, v in counts.items()}
    else:                                  # an older daemon: the usual normal answers only
        normal = {k: v for k, v in counts.items() if k in ("ENOENT", "ENODATA")}
    normal = {k: v for k, v in normal.items() if v > 0}
    if normal:
        lines.append("normal answers (not failures): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(normal.items())))
    return lines


def _kept(item: dict, done: bool = False) -> str:
    """One file an earlier (crashed) mount left: where it belongs, its size and fate
    (``done``: saved or dropped since, so no state and no staged path)."""
    where = f"{item.get('name') or item.get('id')}" + (
        f" in {item['folder']}" if item.get("folder") else "")
    where += f" (new version of {item['entity']})" if item.get("entity") else (
        " (new file)" if item.get("folder") else "")
    text = f"{where}: {human_size(item.get('size', 0))}"
    text += "" if done else f", {item.get('state', '?')}"
    if item.get("why"):
        text += f"; {item['why']}"
    if item.get("staged") and not done:
        text += f"; staged {item['staged']}"
    return text


def _uploads(up: dict) -> list[str]:
    """Saves of this mount, then what earlier crashed mounts left (``synfs.write.recovery``)."""
    shown = {"pending": lambda v: str(v), "unsaved": lambda v: str(len(v or [])),
             "failed": lambda v: str(len(v or [])), "open_for_write": lambda v: str(v),
             "staging_bytes": human_size}
    lines = [", ".join(f"{_label(k)} {fmt(up[k])}" for k, fmt in shown.items() if k in up)]
    kept, rec, conf = (up.get(k) or [] for k in ("kept", "recovered", "conflicts"))
    if "kept" in up:
        lines[0] += (f"; left by earlier mounts: kept {len(kept)} "
                     f"({human_size(up.get('kept_bytes', 0))}), recovered {len(rec)}, "
                     f"conflicts {len(conf)}")
    for label, items in (("unsaved", up.get("unsaved") or []), ("failed", up.get("failed") or [])):
        if items:
            lines.append(f"{label}:")
            lines += [f"{INDENT}{_record(v)}" for v in items[:MAX_ITEMS]]
    for label, items in (("kept", kept), ("recovered", rec), ("conflicts", conf)):
        if items:
            lines.append(f"{label}:")
            lines += [f"{INDENT}{_kept(v, label == 'recovered')}" for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            lines.append(f"{INDENT}... and {len(items) - MAX_ITEMS} more")
    if kept or conf:
        lines.append("`synfs recover list` shows them; `synfs recover save|discard ID` "
                     "finishes or drops one")
    return lines


def _rate_limit(rl: dict) -> str:
    text = str(rl.get("limit", "?"))
    if rl.get("waiting"):
        text += f"; {rl['waiting']} request(s) waiting now"
    waits = int(rl.get("waits", 0) or 0)
    if waits:
        text += (f"; {waits} wait{'s' if waits != 1 else ''}, "
                 f"{human_duration(rl.get('waited_s', 0))} in all, longest "
                 f"{human_duration(rl.get('longest_wait_s', 0))}, last at "
                 f"{when(rl.get('last_wait_at'))}")
    else:
        text += "; never waited"
    return text


def render_one(m: dict) -> list[str]:
    root = m.get("root") or {}
    title = root.get("id") or m.get("source", "?")
    if root.get("name"):
        title += f' "{root["name"]}"'
    header = (f"{m['mountpoint']}: {title} - {m['state']}"
              + (f" ({m['detail']})" if m.get("detail") else ""))
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, *lines: str) -> None:
        rows.append((name, list(lines)))

    if "status_unavailable" in m:
        row("details", f"unavailable: {m['status_unavailable']}")
        return [header] + _layout(rows)
    now = time.time()
    age = human_duration(m.get("age_s", 0))
    row("daemon", f"pid {m.get('pid')}, up {human_duration(now - float(m.get('started', now)))}")
    row("report", f"{age} old" + (" (fresh, asked for now)" if m.get("refreshed") else "")
        + (" (STALE: the daemon may be hung)" if m.get("stale") else ""))
    opts = m.get("options") or {}
    bits = ["read-only" if opts.get("read_only", True) else "read-write"]
    if opts.get("allow_other"):
        bits.append("allow_other")
    bits.append(f"files uid {opts.get('uid')} gid {opts.get('gid')}")
    if opts.get("metadata_ttl") is not None:
        bits.append(f"metadata ttl {opts['metadata_ttl']:g}s")
    row("mount", ", ".join(bits))
    auth = m.get("auth")
    if isinstance(auth, dict):
        if auth.get("state") == "unauthorized":
            row("token", f"unauthorized: Synapse rejects it since {when(auth.get('since'))}; "
                "get a new token and mount again")
        else:
            row("token", "accepted by Synapse")
    creds = m.get("credentials")
    if isinstance(creds, dict) and "locations" in creds:
        if not creds["locations"]:
            row("credentials", "none fetched yet")
        lines = []
        for loc in creds["locations"]:
            where = f"s3://{loc.get('bucket')}" + (f"/{loc['base_key']}" if loc.get("base_key")
                                                  else "")
            remaining = float(loc.get("remaining_s", 0))
            left = "EXPIRED" if remaining <= 0 else f"in {human_duration(remaining)}"
            lines.append(f"storage location {loc.get('storage_location_id')} "
                         f"({loc.get('permission')}, {where}): expires {loc.get('expiration')} "
                         f"({left})")
        if lines:
            row("credentials", *lines)
    elif creds is not None:
        row("credentials", *generic(creds))
    reqs = m.get("requests")
    if isinstance(reqs, dict) and "synapse" in reqs:
        row("requests", f"{reqs['synapse']} to Synapse")
    rl = m.get("rate_limit")
    if isinstance(rl, dict) and "limit" in rl:
        row("rate limit", _rate_limit(rl))
    if isinstance(m.get("uploads"), dict):
        row("uploads", *_uploads(m["uploads"]))
    for key in [k for k in m if k not in KNOWN]:
        row(_label(key), *generic(m[key]))
    errs = m.get("errors")
    if isinstance(errs, dict) and "by_errno" in errs:
        row("errors", *_errors(errs))
    return [header] + _layout(rows)


def _layout(rows: list[tuple[str, list[str]]]) -> list[str]:
    width = max((len(name) for name, _ in rows), default=0) + GAP
    out = []
    for name, lines in rows:
        for n, line in enumerate(lines or [""]):
            out.append(f"{INDENT}{(name if n == 0 else ''):<{width}}{line}".rstrip())
    return out


def render(mounts: list[dict]) -> str:
    if not mounts:
        return "no synfs mounts"
    return "\n\n".join("\n".join(render_one(m)) for m in mounts)
