"""Services for a local run: `clara run --service NAME=URI`.

Clara starts each declared service and exports, to every operator that declares it, one
environment variable per http connection, named after the connection and holding the
service's URI (e.g. ``NVIDIA_CLARA_TRTISURI=10.0.0.5:8000``). A local run starts no
service; `bind` takes the address of one you run yourself:

    --service trtis=localhost:8000                  every http connection of service trtis
    --service NVIDIA_CLARA_TRTISURI=localhost:8000  that one connection

and returns a warning for every connection left without one (never a silent unset).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InvalidArgument
from .model import Operator, Pipeline


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """NAME=URI strings as a dict (NAME lower-cased); InvalidArgument if malformed."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, sep, uri = pair.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise InvalidArgument(f"invalid --service {pair!r}: use NAME=URI")
        found[name.strip().lower()] = uri.strip()
    return found


def bind(pipeline: Pipeline, assignments: dict[str, str]) -> tuple[Pipeline, list[str]]:
    """`pipeline` with each http connection given its URI; warnings for those left without."""
    known_services = {s.name.lower() for op in pipeline.operators for s in op.services}
    known_connections = {
        c.name.lower()
        for op in pipeline.operators
        for s in op.services
        for c in s.connections
        if c.kind == "http"
    }
    for name in assignments:
        if name not in known_services | known_connections:
            shown = ", ".join(sorted(known_services | known_connections)) or "none"
            raise InvalidArgument(
                f"--service {name}: the pipeline declares no service or http connection of "
                f"that name (declared: {shown})"
            )
    warnings: list[str] = []
    operators = tuple(_bind_operator(op, assignments, warnings) for op in pipeline.operators)
    return pipeline._replace(operators=operators), warnings


def _bind_operator(op: Operator, assignments: dict[str, str], warnings: list[str]) -> Operator:
    services = []
    for service in op.services:
        connections = []
        for connection in service.connections:
            if connection.kind != "http":
                warnings.append(
                    f"{connection.name}: volume connection of service '{service.name}' "
                    f"(operator '{op.name}') is not provided by a local run"
                )
                connections.append(connection)
                continue
            uri = assignments.get(connection.name.lower(), assignments.get(service.name.lower()))
            if uri is None:
                warnings.append(
                    f"{connection.name} is not set for operator '{op.name}': service "
                    f"'{service.name}' has no address; give --service {service.name}=URI"
                )
            connections.append(connection._replace(uri=uri))
        services.append(service._replace(connections=tuple(connections)))
    return op._replace(services=tuple(services))
