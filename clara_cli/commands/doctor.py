"""`clara doctor`: is this machine ready for shared-memory pipelines? One line per check.

The checks are `clara_core.doctor`'s plain data; this module prints them (or --json)
and exits with the worst status: 0 all passed, 1 a warning, 2 a failure.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ..options import json_option
from ..render import emit

if TYPE_CHECKING:
    from clara_core.doctor import Check

STYLES = {"pass": "green", "warn": "yellow", "fail": "red"}


@click.command("doctor", short_help="Check this machine for shared-memory pipelines.")
@click.option(
    "--no-measure", is_flag=True, help="Skip the short huge-page fill timing (about 0.5 s)."
)
@json_option
def doctor(no_measure: bool) -> None:
    """Check this machine for shared-memory pipelines; print each finding with its fix.

    \b
    Checks: the shared-memory directory ($CLARA_SHM_DIR or /dev/shm) exists and is a
    tmpfs; its size against RAM and its free space; a container's default 64 MiB
    /dev/shm; systemd-logind's RemoveIPC; ulimit -n; OFD locks; /proc's hidepid;
    the fs.protected_* sysctls; huge pages for the directory (with the gain measured
    here); leaks in the namespace; whether the C extension is in use (loaded, off, not
    built, or built but skipped). Exit 0: all pass; 1: a warning; 2: a failure.
    """
    from clara_core.doctor import SEVERITY, diagnose, worst
    from clara_core.names import namespace, shm_dir

    checks = diagnose(measure=not no_measure)
    verdict = worst(checks)
    data = {
        "status": verdict,
        "shm_dir": shm_dir(),
        "namespace": namespace(),
        "checks": [
            {
                "name": c.name,
                "status": c.status,
                "message": c.message,
                "fix": c.fix or None,
                "figures": c.figures,
            }
            for c in checks
        ],
    }
    emit(data, lambda: _print(checks, verdict))
    click.get_current_context().exit(SEVERITY[verdict])


def _print(checks: list[Check], verdict: str) -> None:
    color = "NO_COLOR" not in os.environ
    width = max(len(c.name) for c in checks)
    for check in checks:
        status = click.style(check.status, fg=STYLES[check.status]) if color else check.status
        click.echo(f"{status}  {check.name:<{width}}  {check.message}")
        if check.fix:
            click.echo(f"      {'':<{width}}  fix: {check.fix}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in STYLES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    click.echo(f"doctor: {summary}; {'ready' if verdict == 'pass' else verdict}")
