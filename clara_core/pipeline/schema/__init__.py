"""The rules of Clara's pipeline language, checked all at once with line numbers.

`parse(text, file)` never stops at the first problem: every rule runs over everything
it can still make sense of, so one `clara validate` lists every mistake. Rules:

- known keys only, at every level (a near miss of a key is named and read as meant);
  names follow Clara's rule and are unique (case-insensitively) among operators, and
  among one operator's inputs and outputs;
- api-version 0.3.0 and 0.4.0 (untyped: disk I/O with `path` only) or later; typed I/O
  needs 0.5.0 and the Clara orchestrator; `models` needs 0.6.0;
- types per Clara's table: `array` needs `element-type` (one of the 11 primitives) and a
  `shape`; `string` and primitives take neither; `stream` takes a free `element-type`
  label and needs a `path`; only streams have paths;
- an input's `from` names an existing operator with an output of the input's `name`, of
  the same medium, element type and a compatible shape (-1 and 0 match any size);
- no cycles.

Valid Clara that a local run cannot do as written is a warning (an operator without
`container.command` needs `clara run --bind`); what it ignores is a note (`requests`,
`services`, `models`). Templates (`parameters`, ``${{ name }}``) are resolved before
these rules, by `templates`.
"""

from __future__ import annotations

from ...errors import InvalidArgument
from ..model import Operator, Pipeline, Problem, version_tuple
from ..yamllines import Map, Seq
from ..yamllines import load as load_yaml
from .base import TYPED, text_of
from .extras import ExtrasRules
from .graph import GraphRules, shapes_match
from .ports import PortRules

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["parse", "shapes_match"]

TOP_KEYS = ("api-version", "name", "orchestrator", "operators", "parameters", "pull-secrets")
OPERATOR_KEYS = (
    "name",
    "description",
    "container",
    "variables",
    "input",
    "output",
    "parameters",
    "requests",
    "models",
    "services",
)
CONTAINER_KEYS = ("image", "tag", "command", "variables")
ORCHESTRATORS = ("Clara", "Argo")
OLDEST, MODELS = (0, 3, 0), (0, 6, 0)


def parse(text: str, file: str) -> tuple[Pipeline | None, list[Problem]]:
    """Validate pipeline YAML; returns (pipeline, []) or (None or partial, problems)."""
    data, raw_problems = load_yaml(text)
    rules = _Rules(file)
    for line, message in raw_problems:
        rules.report(line, message)
    pipeline = rules.pipeline(data) if data is not None or not raw_problems else None
    problems = sorted(rules.problems, key=lambda p: p.line)
    if pipeline is None or any(p.is_error for p in problems):
        return None, problems
    return pipeline._replace(remarks=tuple(problems)), problems


class _Rules(PortRules, GraphRules, ExtrasRules):
    """The whole document: top-level keys, operators, their containers and variables."""

    def pipeline(self, data: Any) -> Pipeline | None:
        if not isinstance(data, Map):
            self.report(
                getattr(data, "line", 1),
                "a pipeline is a mapping with api-version, name and operators",
            )
            return None
        self.unknown_keys(data, TOP_KEYS, "pipeline")
        version = self.api_version(data)
        orchestrator = self.orchestrator(data)
        name = self.name(data, "name", "pipeline name", required=True)
        operators = self.operators(data)
        if self.version >= TYPED and orchestrator == "Argo" and self.has_typed_io(operators):
            self.report(
                data.line_of("orchestrator"),
                "typed (shared-memory) I/O needs the Clara orchestrator, not Argo",
            )
        self.links(operators)
        self.cycles(operators)
        return Pipeline(name or "", version, tuple(operators), self.file, orchestrator)

    def api_version(self, data: Map) -> str:
        if "api-version" not in data:
            self.report(data.line, "missing api-version (e.g. api-version: 0.5.0)")
            return ".".join(map(str, TYPED))
        text = str(data["api-version"])
        try:
            self.version = version_tuple(text)
        except InvalidArgument as exc:
            self.report(data.line_of("api-version"), str(exc))
            return ".".join(map(str, TYPED))
        if self.version < OLDEST:
            self.report(
                data.line_of("api-version"),
                f"api-version {text} is not supported: clara reads 0.3.0 and later "
                "(0.3.0 is read like 0.4.0)",
            )
        return text

    def orchestrator(self, data: Map) -> str | None:
        if "orchestrator" not in data:
            return None
        value = str(data["orchestrator"])
        for known in ORCHESTRATORS:
            if value.lower() == known.lower():
                return known
        self.report(
            data.line_of("orchestrator"),
            f"unknown orchestrator {value!r}: use {' or '.join(ORCHESTRATORS)}",
        )
        return None

    def operators(self, data: Map) -> list[Operator]:
        items = data.get("operators")
        if not isinstance(items, Seq) or not items:
            self.report(data.line_of("operators"), "operators must be a non-empty list")
            return []
        operators: list[Operator] = []
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            op = self.operator(item, items.line_of(index))
            if op is None:
                if isinstance(item, Map) and isinstance(item.get("name"), str):
                    self.broken_operators.add(item["name"].lower())
                continue
            key = op.name.lower()
            if key in first:
                self.report(
                    op.line, f"duplicate operator name '{op.name}' (first on line {first[key]})"
                )
                continue
            first[key] = op.line
            operators.append(op)
        return operators

    # -- one operator -------------------------------------------------------------------

    def operator(self, item: Any, line: int) -> Operator | None:
        if not isinstance(item, Map):
            self.report(line, "an operator is a mapping with name, container, input, output")
            return None
        self.unknown_keys(item, OPERATOR_KEYS, "operator")
        name = self.name(item, "name", "operator name", required=True)
        where = f"operator '{name}'" if name else "operator"
        if "models" in item and self.version < MODELS:
            self.report(item.line_of("models"), "models need api-version 0.6.0 or later")
        container = item.get("container")
        command: tuple[str, ...] = ()
        image = tag = ""
        if not isinstance(container, Map):
            self.report(
                item.line_of("container"), f"{where} needs a container (image, tag, command)"
            )
        else:
            self.unknown_keys(container, CONTAINER_KEYS, "container")
            image = self.scalar_text(container, "image")
            tag = self.scalar_text(container, "tag")
            command = self.command(container, name, image, tag)
        variables = self.merged_variables(item, container, where)
        inputs = self.ports(item, "input", where)
        outputs = self.ports(item, "output", where)
        self.port_names(inputs + outputs, where)
        self.port_paths(inputs + outputs, where)
        services = self.services(item, where)
        requests = self.requests(item, where)
        self.models(item, where)
        if name is None:
            return None
        if self.broken_ports:
            self.broken[name.lower()] = self.broken_ports
            self.broken_ports = set()
        description = self.scalar_text(item, "description")
        origin = f"{self.file}:{container.line_of('command') if command else item.line}"
        return Operator(
            name,
            command,
            inputs,
            outputs,
            variables,
            description,
            image,
            tag,
            item.line,
            origin,
            services,
            requests,
        )

    def command(self, container: Map, name: str | None, image: str, tag: str) -> tuple[str, ...]:
        value = container.get("command")
        line = container.line_of("command")
        if value is None:
            shown = f"image {image}:{tag or 'latest'}" if image else "no image"
            self.warn(
                line,
                f"operator '{name or ''}' has no container.command ({shown}: Clara runs the "
                f"image's entry-point); a local run needs `--bind {name or 'OPERATOR'}=COMMAND`",
                topic="command",
            )
            return ()
        if not isinstance(value, Seq) or not value:
            self.report(line, "command must be a non-empty list (argv), e.g. [python, main.py]")
            return ()
        argv = []
        for index, arg in enumerate(value):
            if isinstance(arg, (Map, Seq)) or arg is None:
                self.report(value.line_of(index), "command arguments must be plain values")
            else:
                argv.append(text_of(arg))
        return tuple(argv)
