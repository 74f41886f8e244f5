"""The comparison's result as markdown and as a PNG plot (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import fmt_spread

LABELS = {
    "direct": "direct (the upstream alone)",
    "bare_proxy": "bare proxy (bench/bare_proxy.py)",
    "gateway": "**this gateway** (embedded Rego)",
    "gateway_opa": "this gateway, OPA sidecar",
    "contextforge": "ContextForge 1.1.0",
}


COLORS = {
    "bare_proxy": "#888",
    "gateway": "#1f77b4",
    "gateway_opa": "#6baed6",
    "contextforge": "#d62728",
}


def _abs(s: dict[str, float] | None, digits: int = 2) -> str:
    return "–" if s is None else f"{s['median']:.{digits}f}"


def method_section(name: str, result: dict[str, Any]) -> str:
    ratios, absolute = result["ratios"], result["absolute"]
    rows, context, sdk = [], [], []
    for target, r in ratios.items():
        a = absolute[target]
        label = LABELS.get(target, target)
        parts = a.get("middle_parts_cpu_ms_c16", {})
        split = " + ".join(f"{n} {_abs(v)}" for n, v in parts.items()) if len(parts) > 1 else ""
        cpu = "–"
        if target != "direct":
            cpu = f"{_abs(a['middle_cpu_ms_c16'])} ms"
            cpu += f" ({split})" if split else ""
            cpu += f", {fmt_spread(r['middle_cpu_c16'])}"
        rows.append(
            f"| {label} | {fmt_spread(r['p50_c1'])} | {fmt_spread(r['p99_c1'])} | "
            f"{fmt_spread(r['calls_per_s_c16'], 3)} | {fmt_spread(r['calls_per_s_c64'], 3)} | {cpu} |"
        )
        context.append(
            f"| {label} | {_abs(a['p50_ms_c1'], 3)} | {_abs(a['p99_ms_c1'], 3)} | "
            f"{_abs(a['calls_per_s_c16'], 1)} | {_abs(a['calls_per_s_c64'], 1)} | "
            f"{_abs(a['upstream_cpu_ms_c16'], 3)} | {_abs(a['client_cpu_ms_c16'], 3)} | "
            f"{_abs(a['success_share_c64'], 4)} | {_abs(a['policy_denials_c64'], 0)} |"
        )
        sdk.append(
            f"| {label} | {fmt_spread(r['sdk_p50_c1'])} | {fmt_spread(r['sdk_calls_per_s_c16'], 3)} | "
            f"{_abs(a['sdk_p50_ms_c1'], 3)} | {_abs(a['sdk_calls_per_s_c16'], 1)} |"
        )
    failures = "; ".join(
        f"{t}: " + ", ".join(f"{k} × {n}" for k, n in sorted(a["not_ok"].items()))
        for t, a in absolute.items()
        if a.get("not_ok")
    )
    loads = ", ".join("/".join(f"{x:.2f}" for x in la) for la in result["load_average"])
    orders = "; ".join(" → ".join(r["order"]) for r in result["rounds"])
    return f"""## `{name}`

Ratios to the direct call of the same round, median (min–max) over {len(result["rounds"])} rounds.
Latency is over successful calls; calls/s counts successful calls only.

| system | p50 × direct, c=1 | p99 × direct, c=1 | calls/s × direct, c=16 | calls/s × direct, c=64 | CPU per call in the middle, c=16: ms, and × the upstream's CPU per direct call |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Absolute figures (medians over rounds; context only, they move with the machine):

| system | p50 ms c=1 | p99 ms c=1 | calls/s c=16 | calls/s c=64 | upstream CPU ms/call c=16 | client CPU ms/call c=16 | success share c=64 | policy denials c=64 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(context)}

With the MCP SDK's client (its own direct baseline; same rounds):

| system | p50 × direct, c=1 | calls/s × direct, c=16 | p50 ms c=1 | calls/s c=16 |
| --- | --- | --- | --- | --- |
{chr(10).join(sdk)}

Answers other than success, all phases and rounds: {failures or "none"}.
Load average (1/5/15 min) before each round and after the last: {loads}.
Turn order per round: {orders}.
"""


def profile_section(profile: dict[str, Any] | None) -> str:
    if not profile:
        return ""
    if "error" in profile:
        return f"## Profile\n\n{profile['error']}\n"
    rows = "\n".join(
        f"| {area} | {v['share'] * 100:.1f} % | {v['ms_per_call']:.3f} ms |"
        for area, v in profile["areas"].items()
    )
    leaves = "\n".join(
        f"| `{leaf['frame']}` | {leaf['samples']} |" for leaf in profile["top_leaves"][:15]
    )
    return f"""## Where the gateway's CPU goes (py-spy, c=16, raw client)

{profile["samples"]} samples of {profile["threads"]} threads ({profile["waiting_samples_left_out"]} more at a lock or
queue wait, left out); {profile["cpu_ms_per_call"]} ms of the gateway's CPU per call in the same
window ({profile["ok_per_s"]} calls/s). Each thread's measured CPU is shared among the
areas of its samples; a sample counts for the innermost frame of a known area
(bench/profile_areas.py). Answers in the window: {profile.get("kinds")}.

| area | share of CPU | CPU per call |
| --- | --- | --- |
{rows}

Most sampled leaf frames (waits left out):

| frame | samples |
| --- | --- |
{leaves}
"""


def methods_summary(report: dict[str, Any]) -> str:
    """The middle targets' figures per method side by side (issue 12: what a resource
    read or a prompt costs through the gateway next to a tool call), when the run
    measured more than one method."""
    methods = report["methods"]
    if len(methods) < 2:
        return ""
    rows = []
    for name, result in methods.items():
        for target, r in result["ratios"].items():
            if target == "direct":
                continue
            a = result["absolute"][target]
            rows.append(
                f"| `{name}` | {LABELS.get(target, target)} | {fmt_spread(r['p50_c1'])} | "
                f"{fmt_spread(r['calls_per_s_c16'], 3)} | {_abs(a['middle_cpu_ms_c16'])} ms, "
                f"{fmt_spread(r['middle_cpu_c16'])} | {fmt_spread(r['sdk_p50_c1'])} |"
            )
    return f"""## Every method at a glance

Each method's ratios to the direct call of the same method in the same round (median,
min–max over rounds); sections below give everything.

| method | system | p50 × direct, c=1 | calls/s × direct, c=16 | CPU per call in the middle, c=16 (× upstream's per direct call) | p50 × direct, c=1, MCP SDK client |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}
"""


# Above this 1-minute load average (on 2 cores), a result says it is from a loaded machine.
LOADED = 3.0


def load_note(report: dict[str, Any]) -> str:
    """A sentence saying the figures are from a loaded machine, when they are."""
    ones = [la[0] for r in report["methods"].values() for la in r["load_average"]]
    if not ones or max(ones) <= LOADED:
        return ""
    return (
        f"**These figures are from a loaded machine**: the 1-minute load average was "
        f"{min(ones):.1f}–{max(ones):.1f} during the run (above {LOADED:g} on "
        f"{report['machine']['cores']} cores).\n"
    )


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    sections = methods_summary(report) + "\n".join(
        method_section(n, r) for n, r in report["methods"].items()
    )
    return f"""# This gateway beside ContextForge, a bare proxy and the direct call

Machine: {m["cpu"]}, {m["cores"]} cores, Python {m["python"]}, commit {m["commit"]}, {m["date"]}.
{load_note(report)}**The machine was shared** with other engineers' work while this ran (see the load
averages); only the ratios within this run compare, absolute milliseconds are context.
One upstream process (the recording test server, MCP SDK, stateless Streamable HTTP)
behind every path; MCP 2026-07-28 era; the raw client is a keep-alive HTTP/1.1 client
posting JSON-RPC (bench/clients.py). ContextForge: bench/contextforge.env.
Command: `{report.get("command", "")}`

{sections}
{profile_section(report.get("profile"))}"""


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("p50_c1", "p50 latency, c=1 (× direct)"),
        ("calls_per_s_c16", "calls/s, c=16 (× direct)"),
        ("calls_per_s_c64", "calls/s, c=64 (× direct)"),
        ("middle_cpu_c16", "CPU per call in the middle, c=16\n(× upstream CPU per direct call)"),
    ]
    methods = list(report["methods"].items())
    # One row of panels per method measured (tools/call first, as run).
    fig, grid = plt.subplots(
        len(methods), len(panels), figsize=(4.2 * len(panels), 4.2 * len(methods)), squeeze=False
    )
    for row, (method, result) in zip(grid, methods, strict=True):
        _plot_method(row, panels, method, result["ratios"])
    m = report["machine"]
    fig.suptitle(
        "ratios to the direct call of the same method, median and min–max over rounds "
        f"({m['cores']} cores, shared; commit {m['commit']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_method(
    axes: Any, panels: list[tuple[str, str]], method: str, ratios: dict[str, Any]
) -> None:
    targets = [t for t in ratios if t != "direct"]
    for ax, (key, title) in zip(axes, panels, strict=True):
        medians, lows, highs = [], [], []
        for t in targets:
            s = ratios[t][key]
            med = s["median"] if s else 0.0
            medians.append(med)
            lows.append(med - (s["min"] if s else 0.0))
            highs.append((s["max"] if s else 0.0) - med)
        bars = ax.bar(
            range(len(targets)),
            medians,
            yerr=[lows, highs],
            capsize=4,
            color=[COLORS.get(t, "#999") for t in targets],
        )
        ax.bar_label(bars, labels=[f"{m:.3g}" for m in medians], fontsize=8, padding=2)
        ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{method}: {title}", fontsize=9)
