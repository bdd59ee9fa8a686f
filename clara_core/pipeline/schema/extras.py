"""Rules for what an operator declares besides its I/O: environment variables, services,
hardware requests and models. Clara accepts all of them; a local run passes variables
on, exports services given with `clara run --service`, and ignores requests and models,
which is said as a note rather than silently."""

from __future__ import annotations

import re

from ..model import Connection, Service
from ..yamllines import Map, Seq
from .base import RuleBase, text_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

SERVICE_KEYS = ("name", "description", "container", "connections", "requests", "variables")
SERVICE_CONTAINER_KEYS = ("image", "tag", "command", "variables")
CONNECTION_KINDS = ("http", "volume")
HTTP_KEYS = ("name", "port")
VOLUME_KEYS = ("name", "path")
REQUEST_KEYS = ("cpu", "gpu", "memory")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")  # Clara: a number (cpu cores, gpus, memory MB)


class ExtrasRules(RuleBase):
    """Variables, services, requests and models of one operator."""

    def variables(self, item: Map, key: str = "variables", where: str = "variables") -> dict:
        """NAME: value pairs under `key` of `item`, as strings."""
        value = item.get(key)
        if value is None:
            return {}
        if not isinstance(value, Map):
            self.report(item.line_of(key), f"{where} must be a mapping NAME: value")
            return {}
        result = {}
        for name, val in value.items():
            line = value.line_of(name)
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                self.report(line, f"invalid variable name {name!r}: use an environment name")
            elif isinstance(val, (Map, Seq)):
                self.report(line, f"variable {name} must be a plain value, not a list or mapping")
            else:
                result[name] = text_of(val)
        return result

    def merged_variables(self, item: Map, container: Any, where: str) -> dict[str, str]:
        """The operator's `variables` and its `container.variables` (which wins a clash)."""
        merged = self.variables(item)
        if not isinstance(container, Map):
            return merged
        for name, value in self.variables(container, where="container.variables").items():
            if name in merged and merged[name] != value:
                self.warn(
                    container["variables"].line_of(name),
                    f"{where} sets {name} in both variables (line {item['variables'].line_of(name)}"
                    f") and container.variables: the container's value {value!r} is used",
                )
            merged[name] = value
        return merged

    def requests(self, item: Map, where: str) -> dict[str, str]:
        """cpu, gpu, memory: kept (`clara export` uses them), ignored by a local run (a note)."""
        value = item.get("requests")
        if value is None:
            return {}
        if not isinstance(value, Map):
            self.report(item.line_of("requests"), "requests must be a mapping (cpu, gpu, memory)")
            return {}
        self.unknown_keys(value, REQUEST_KEYS, "requests")
        result = {}
        for key in REQUEST_KEYS:
            amount = value.get(key)
            if amount is None:
                continue
            if isinstance(amount, (Map, Seq, bool)) or not _AMOUNT.fullmatch(str(amount)):
                self.report(
                    value.line_of(key),
                    f"requests.{key} must be a positive amount (memory in MB), not {amount!r}",
                )
            else:
                result[key] = str(amount)
        if result:
            shown = ", ".join(f"{k} {v}" for k, v in result.items())
            self.note(
                item.line_of("requests"),
                f"{where} requests {shown}: ignored by a local run (no scheduler reserves them)",
                topic="requests",
            )
        return result

    def models(self, item: Map, where: str) -> None:
        if "models" in item and self.version >= (0, 6, 0):
            self.note(
                item.line_of("models"),
                f"{where} declares models: a local run serves no Triton models; bind it to a "
                "command that needs none, or serve them and pass the URI in its variables",
                topic="models",
            )

    def services(self, item: Map, where: str) -> tuple[Service, ...]:
        """Clara's `services` (deprecated since 0.7.1): accepted; connections are recorded."""
        value = item.get("services")
        if value is None:
            return ()
        if not isinstance(value, Seq):
            self.report(item.line_of("services"), "services must be a list")
            return ()
        found = []
        for index, entry in enumerate(value):
            service = self.service(entry, value.line_of(index))
            if service is not None:
                found.append(service)
        for service in found:
            http = [c.name for c in service.connections if c.kind == "http"]
            exported = f" (exports {', '.join(http)})" if http else ""
            self.note(
                service.line,
                f"{where} uses service '{service.name}'{exported}: services are deprecated "
                f"since Clara 0.7.1 and a local run starts none; give its address with "
                f"`clara run --service {service.name}=URI`",
                topic="services",
            )
        return tuple(found)

    def service(self, entry: Any, line: int) -> Service | None:
        if not isinstance(entry, Map):
            self.report(line, "each service is a mapping (name, container, connections)")
            return None
        self.unknown_keys(entry, SERVICE_KEYS, "service")
        name = self.name(entry, "name", "service name", required=True)
        image = tag = ""
        container = entry.get("container")
        if isinstance(container, Map):
            self.unknown_keys(container, SERVICE_CONTAINER_KEYS, "service container")
            image = self.scalar_text(container, "image")
            tag = self.scalar_text(container, "tag")
        elif container is not None:
            self.report(entry.line_of("container"), "a service's container must be a mapping")
        connections = self.connections(entry)
        if name is None:
            return None
        return Service(name, image, tag, connections, entry.line)

    def connections(self, entry: Map) -> tuple[Connection, ...]:
        value = entry.get("connections")
        if value is None:
            return ()
        if not isinstance(value, Map):
            self.report(entry.line_of("connections"), "connections must be a mapping (http, ...)")
            return ()
        self.unknown_keys(value, CONNECTION_KINDS, "connections")
        found: list[Connection] = []
        for kind in CONNECTION_KINDS:
            items = value.get(kind)
            if items is None:
                continue
            if not isinstance(items, Seq):
                self.report(value.line_of(kind), f"connections.{kind} must be a list")
                continue
            for index, item in enumerate(items):
                connection = self.connection(kind, item, items.line_of(index))
                if connection is not None:
                    found.append(connection)
        return tuple(found)

    def connection(self, kind: str, item: Any, line: int) -> Connection | None:
        if not isinstance(item, Map):
            self.report(line, f"each {kind} connection is a mapping (name, ...)")
            return None
        self.unknown_keys(item, HTTP_KEYS if kind == "http" else VOLUME_KEYS, f"{kind} connection")
        name = self.name(item, "name", f"{kind} connection name", required=True)
        if kind == "http" and name is not None and not _ENV_NAME.fullmatch(name):
            self.report(
                item.line_of("name"),
                f"http connection name {name!r} becomes an environment variable: "
                "use letters, digits and _ (not starting with a digit)",
            )
            return None
        port = None
        if kind == "http" and item.get("port") is not None:
            raw = item["port"]
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1024 <= raw <= 65535:
                self.report(item.line_of("port"), f"port {raw!r} must be 1024..65535")
            else:
                port = raw
        path = self.scalar_text(item, "path") if kind == "volume" else None
        if name is None:
            return None
        return Connection(kind, name, port, path or None, item.line)
