"""The results table: rich (imported only here, when printing) with a fixed wide layout."""

from __future__ import annotations

import shutil
from typing import Any

from .harness import Row, Stats


def number(value: float) -> str:
    """Three significant digits, no exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def figure(stats: Stats, unit: str, with_p99: bool) -> str:
    """'12.3 µs' or '12.3 µs (p99 40.1)'."""
    text = f"{number(stats.median)} {unit}"
    if with_p99:
        text += f" (p99 {number(stats.p99)})"
    return text


def verdict(row: Row) -> str:
    """yes / NO / what kept it from being judged."""
    if row.status != "measured":
        return row.status
    return {True: "yes", False: "NO", None: "n/a"}[row.met]


def cells(row: Row) -> list[str]:
    """The table cells of one row."""
    with_p99 = bool(row.details.get("show_p99"))
    ours = figure(row.ours, row.unit, with_p99) if row.ours else "—"
    names = list(row.baselines)
    baselines = "\n".join(
        f"{name}: {figure(row.baselines[name], row.unit, with_p99)}" for name in names
    )
    ratios = row.ratios()
    spread = row.details.get("ratio_spread", {})

    def ratio(name: str) -> str:
        text = f"{number(ratios[name])}x"
        if spread.get(name):
            low, high = spread[name]
            text += f" ({number(low)} to {number(high)})"
        return text

    ratio_text = "\n".join(ratio(name) for name in names) if ratios else ""
    return [row.id, row.what, ours, baselines or "—", ratio_text or "—", row.target, verdict(row)]


def print_table(rows: list[Row], meta: dict[str, Any]) -> None:
    """Print the results table and the notes under it to stdout."""
    from rich.console import Console
    from rich.table import Table

    width = max(shutil.get_terminal_size((200, 40)).columns, 160)
    console = Console(width=width, highlight=False)
    title = (
        f"clara-fastio benchmarks — {meta['mode']} run, {meta.get('seconds', '?')} s, "
        f"load {meta['load_before']} → {meta.get('load_after', '?')}, {meta['cpus']} CPUs, "
        f"commit {meta.get('commit') or '?'}"
        + (" + uncommitted core/cli changes" if meta.get("uncommitted") else "")
    )
    table = Table(title=title, show_lines=True)
    for header, style in (
        ("id", "bold"),
        ("what", ""),
        ("ours (median)", "bold"),
        ("baseline(s) (median), same run", ""),
        ("ours / baseline (spread)", ""),
        ("target", ""),
        ("met", "bold"),
    ):
        table.add_column(header, style=style or None, overflow="fold")
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)
    for row in rows:
        if row.note:
            console.print(f"{row.id}: {row.note}")
    console.print(
        "ratios: medians of the whole run; (low to high): the same ratio in each fifth of the "
        "rounds, variants interleaved in a random order every round"
    )
    console.print(f"timing: {meta.get('gc', '?')}")
    console.print(f"bytecode: {meta.get('bytecode', '?')}")
    if meta.get("uncommitted"):
        console.print(f"measured with uncommitted changes to: {', '.join(meta['uncommitted'])}")
    if meta.get("leftovers"):
        console.print(f"left behind (removed): {meta['leftovers']}")
