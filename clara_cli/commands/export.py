"""`clara export FILE --to argo|k8s-job`: a pipeline as a cluster manifest (YAML).

Thin: `clara_core.pipeline.export` builds the manifest; this module parses options and
writes the YAML to stdout or, all or nothing, to -o FILE.
"""

from __future__ import annotations

import os
import tempfile

import click

from ..options import bindings_option, param_option


@click.command("export", short_help="Write a pipeline as an Argo Workflow or a Kubernetes Job.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--to",
    "target",
    type=click.Choice(["argo", "k8s-job"]),
    required=True,
    help="argo: an Argo Workflow (containerSet); k8s-job: a Kubernetes Indexed Job.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="Write the YAML here (default: stdout)."
)
@click.option(
    "--payloads",
    metavar="LIST",
    help="Comma-separated payload folders: one job pod per payload, in parallel.",
)
@click.option(
    "--claim",
    default="clara-data",
    show_default=True,
    metavar="NAME",
    help="Persistent volume claim holding payloads/ and results/.",
)
@click.option(
    "--shm-size",
    metavar="SIZE",
    help="Size of the pod's /dev/shm (default: declared static outputs + headroom).",
)
@param_option
@click.option(
    "--bind",
    "binds",
    multiple=True,
    metavar="OPERATOR=COMMAND",
    help="The command OPERATOR's container runs (split as a shell would), for operators "
    "without container.command or to replace it. Repeatable.",
)
@bindings_option
@click.option(
    "--shm-headroom",
    default="1G",
    show_default=True,
    metavar="SIZE",
    help="Room in /dev/shm for dynamic outputs, beyond the declared static ones.",
)
def export(
    file: str,
    target: str,
    output: str | None,
    payloads: str | None,
    claim: str,
    shm_size: str | None,
    params: tuple[str, ...],
    binds: tuple[str, ...],
    binding_files: tuple[str, ...],
    shm_headroom: str,
) -> None:
    """Describe the pipeline FILE as a cluster manifest: one job is one pod.

    \b
    Each operator is a container of the job's pod (image:tag from FILE) running its
    command under `clara exec-operator`, which does what `clara run` does for it:
    allocate its static outputs, check its outputs, free what it was the last to read.
    The containers share /dev/shm (emptyDir, medium Memory). Declared disk paths are
    mounts of the claim: payloads/<payload> in, results/<job>/<operator>/<output> out.
    """
    from clara_core.dtypes import parse_size
    from clara_core.errors import InvalidArgument
    from clara_core.pipeline import bindings
    from clara_core.pipeline.export import ExportOptions
    from clara_core.pipeline.export import export as build
    from clara_core.pipeline.loading import load
    from clara_core.pipeline.templates import parse_arguments

    names = tuple(p.strip() for p in (payloads or "").split(",") if p.strip())
    if payloads is not None and not names:
        raise InvalidArgument("--payloads needs at least one payload folder name")
    for name in names:
        if name.startswith("/") or ".." in name.split("/") or "{{" in name:
            raise InvalidArgument(f"invalid payload {name!r}: use a folder under payloads/")
    if not claim:
        raise InvalidArgument("--claim needs a persistent volume claim name")
    options = ExportOptions(
        claim=claim,
        shm_size=parse_size(shm_size) if shm_size is not None else None,
        headroom=parse_size(shm_headroom),
        payloads=names,
    )
    pipeline = load(file, parse_arguments(params))  # the same templates as clara run
    given = [b for path in binding_files for b in bindings.read_file(path)]
    given += [bindings.parse_bind(text) for text in binds]
    manifest = build(bindings.apply(pipeline, given), target, options)
    import yaml

    text = yaml.safe_dump(manifest, sort_keys=False, width=100)
    if output is None:
        click.echo(text, nl=False)
        return
    _write_whole(output, text)


def _write_whole(path: str, text: str) -> None:
    """Write `path` all or nothing: a temporary file beside it, then a rename."""
    from ..transfer import file_error

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".clara-export-", dir=directory)
    except OSError as exc:
        raise file_error(exc, path, "write") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException as exc:
        os.unlink(temporary)
        if isinstance(exc, OSError):
            raise file_error(exc, path, "write") from exc
        raise
