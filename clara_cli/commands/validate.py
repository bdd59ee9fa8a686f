"""`clara validate FILE...`: Clara pipeline definitions checked as Clara does.

Errors are what Clara rejects too (exit 2). Valid Clara that a local run cannot do as
written is a warning (`--strict` makes warnings errors); what a local run ignores is a
note. All are printed as FILE:LINE: [warning: |note: ]message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..options import json_option, param_option
from ..render import emit

if TYPE_CHECKING:
    from clara_core.pipeline.model import Pipeline, Problem


@click.command("validate", short_help="Check pipeline files; print each problem as FILE:LINE.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@param_option
@click.option("--strict", is_flag=True, help="Treat warnings (what a local run needs) as errors.")
@json_option
def validate(files: tuple[str, ...], params: tuple[str, ...], strict: bool) -> None:
    """Check Clara pipeline FILEs; print every problem as FILE:LINE: message.

    Exits 2 if any file has an error (with --strict: or a warning). Checks known keys
    (a near miss is named: "did you mean 'container'?"), Clara's name rule and
    case-insensitive uniqueness, api-version (0.3.0 and later), types (array, string,
    stream, the 11 primitives) with their element-type/shape/path, that every input's
    `from` operator and output `name` exist with a compatible element type and shape
    (-1 and 0 match any size), and that there is no cycle. Template parameters are
    resolved first (--param). Warnings: an operator without container.command (a local
    run needs --bind). Notes: requests, services and models, which a local run ignores.
    A FILE holds at most 4 MiB; a pipe or FIFO is read as cat reads it, but never 10 s
    without a byte; a device (/dev/zero) is refused (exit 2).
    """
    from clara_core.errors import InvalidArgument
    from clara_core.pipeline.loading import check
    from clara_core.pipeline.templates import parse_arguments

    arguments = parse_arguments(params)
    reports = []
    for file in files:
        pipeline, problems = check(file, arguments)
        reports.append(_validation(file, pipeline, problems, strict))
    errors = sum(len(r["problems"]) for r in reports)
    emit({"valid": errors == 0, "files": reports}, lambda: _print_validation(reports))
    if errors:
        bad = sum(1 for r in reports if r["problems"])
        raise InvalidArgument(
            f"{errors} problem{'s' if errors != 1 else ''} in {bad} file{'s' if bad != 1 else ''}"
            + (
                " (warnings count: --strict)"
                if strict and any(r["strict"] for r in reports)
                else ""
            )
        )


def _validation(
    file: str, pipeline: Pipeline | None, problems: list[Problem], strict: bool
) -> dict[str, Any]:
    def rows(severity: str) -> list[dict[str, Any]]:
        return [{"line": p.line, "message": p.message} for p in problems if p.severity == severity]

    errors, warnings, notes = rows("error"), rows("warning"), rows("note")
    data: dict[str, Any] = {"file": file, "strict": bool(strict and warnings)}
    if strict:
        errors, warnings = sorted(errors + warnings, key=lambda p: p["line"]), []
    data.update(valid=not errors, problems=errors, warnings=warnings, notes=notes)
    if pipeline is not None:
        data.update(
            pipeline=pipeline.name,
            api_version=pipeline.api_version,
            operators=[
                {"name": op.name, "upstream": list(op.upstream), "command": bool(op.command)}
                for op in pipeline.order()
            ],
        )
    return data


def _print_validation(reports: list[dict]) -> None:
    for report in reports:
        remarks = [(p, "") for p in report["problems"]]
        remarks += [(p, "warning: ") for p in report["warnings"]]
        remarks += [(p, "note: ") for p in report["notes"]]
        for problem, prefix in sorted(remarks, key=lambda r: r[0]["line"]):
            click.echo(f"{report['file']}:{problem['line']}: {prefix}{problem['message']}")
        if report["valid"]:
            click.echo(
                f"{report['file']}: valid pipeline '{report['pipeline']}' "
                f"(api-version {report['api_version']}, {len(report['operators'])} operators)"
            )
            width = max(len(op["name"]) for op in report["operators"])
            for op in report["operators"]:
                after = f"after {', '.join(op['upstream'])}" if op["upstream"] else "first"
                unbound = "" if op["command"] else "  (no command: needs --bind)"
                click.echo(f"  {op['name']:<{width}}  {after}{unbound}")
