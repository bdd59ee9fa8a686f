"""Clara's templates: `parameters` with defaults and ``${{ name }}`` placeholders, resolved
before the pipeline's rules are checked.

    text, problems = resolve(text, "pipeline.yaml", {"organ": "liver"})

A pipeline (and each operator) may declare ``parameters:``, a mapping of names to default
values. A placeholder ``${{ name }}`` in any YAML value or key (not in a comment) is
replaced *as text*, as if the value had been typed there, by the argument given for that
name (`clara validate/run --param name=VALUE`), else by the default of the operator the
placeholder stands in, else by the pipeline's default. As in Clara, an argument naming no
declared parameter is an error; so is a placeholder left without a value, at its line.
Values are single lines, so every line number stays that of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import InvalidArgument
from ..names import validate_name
from ..records import Record
from .model import Problem

PLACEHOLDER = re.compile(r"\$\{\{\s*([^{}\s]*)\s*\}\}")
_NULL_TAG = "tag:yaml.org,2002:null"


class _Scope(Record):
    """Parameters declared at one level: the pipeline (whole text) or one operator."""

    start: int  # character span of the text where these defaults apply
    end: int
    defaults: dict[str, str | None]  # lower-case name -> default (None: none given)


def parse_arguments(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """NAME=VALUE strings (from --param) as a dict; InvalidArgument for a malformed one."""
    arguments: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid --param {pair!r}: use NAME=VALUE")
        validate_name(name, "parameter name in --param")
        if name.lower() in arguments:
            raise InvalidArgument(f"--param {name} is given twice")
        arguments[name.lower()] = value
    return arguments


def resolve(
    text: str, file: str, arguments: Mapping[str, str] | None = None
) -> tuple[str, list[Problem]]:
    """`text` with every placeholder replaced, and the problems found (then text is as given)."""
    arguments = {k.lower(): v for k, v in (arguments or {}).items()}
    if "${{" not in text and not arguments:
        return text, []
    found = list(PLACEHOLDER.finditer(text))
    masked = _mask(text, found)
    import yaml

    try:
        root = yaml.compose(masked, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text, []  # the rules report the syntax error, at its line
    problems: list[Problem] = []

    def report(index: int, message: str) -> None:
        problems.append(Problem(file, text.count("\n", 0, index) + 1, message))

    scopes, declared_at = _scopes(root, len(text), report)
    declared = {name for scope in scopes for name in scope.defaults}
    for name in arguments:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            report(declared_at, f"--param {name}: no parameter of that name (parameters: {known})")
    live = _live_spans(root)
    replacements: list[tuple[int, int, str]] = []
    for match in found:
        if not _inside(match.start(), live):
            continue  # in a comment
        name = match.group(1)
        value = _value(name.lower(), match.start(), scopes, arguments)
        if value is _UNDECLARED:
            known = ", ".join(sorted(declared)) or "none"
            report(
                match.start(),
                f"placeholder {match.group(0)} names no parameter (parameters: {known})",
            )
        elif value is None:
            report(
                match.start(),
                f"placeholder {match.group(0)} has no value: parameter '{name}' has no default; "
                f"give --param {name}=VALUE",
            )
        elif "\n" in value or "\r" in value:
            report(match.start(), f"the value of parameter '{name}' must be a single line")
        else:
            replacements.append((match.start(), match.end(), value))
    if problems:
        return text, problems
    for start, end, value in reversed(replacements):
        text = text[:start] + value + text[end:]
    return text, []


_UNDECLARED = object()


def _value(name: str, index: int, scopes: list[_Scope], arguments: Mapping[str, str]):
    """The argument, else the innermost default: str, None (no default) or _UNDECLARED."""
    holders = [s for s in scopes if s.start <= index < s.end and name in s.defaults]
    if not holders:
        return _UNDECLARED
    if name in arguments:
        return arguments[name]
    innermost = min(holders, key=lambda s: s.end - s.start)
    return innermost.defaults[name]


def _mask(text: str, found: list[re.Match]) -> str:
    """Placeholders replaced by letters of the same length: parsable YAML, same positions."""
    parts, last = [], 0
    for match in found:
        parts += [text[last : match.start()], "x" * (match.end() - match.start())]
        last = match.end()
    return "".join(parts) + text[last:]


def _scopes(root, length: int, report) -> tuple[list[_Scope], int]:
    """The pipeline's parameters and each operator's, and where the pipeline's are declared."""
    import yaml

    scopes: list[_Scope] = []
    declared_at = 0
    if not isinstance(root, yaml.MappingNode):
        return scopes, declared_at
    top = _items(root)
    if "parameters" in top:
        key, value = top["parameters"]
        declared_at = key.start_mark.index
        scopes.append(_Scope(0, length, _defaults(value, report)))
    operators = top.get("operators", (None, None))[1]
    if isinstance(operators, yaml.SequenceNode):
        for item in operators.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            own = _items(item)
            if "parameters" in own:
                defaults = _defaults(own["parameters"][1], report)
                scopes.append(_Scope(item.start_mark.index, item.end_mark.index, defaults))
    return scopes, declared_at


def _items(node) -> dict:
    """A mapping node's entries by plain key: key -> (key node, value node)."""
    import yaml

    return {
        k.value: (k, v)
        for k, v in node.value
        if isinstance(k, yaml.ScalarNode) and isinstance(k.value, str)
    }


def _defaults(node, report) -> dict[str, str | None]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        report(node.start_mark.index, "parameters must be a mapping of names to default values")
        return {}
    defaults: dict[str, str | None] = {}
    for key, value in node.value:
        try:
            plain = key.value if isinstance(key, yaml.ScalarNode) else None
            name = validate_name(plain, "parameter")
        except InvalidArgument as exc:
            report(key.start_mark.index, str(exc))
            continue
        if not isinstance(value, yaml.ScalarNode):
            report(value.start_mark.index, f"parameter '{name}' must have a plain default value")
            continue
        defaults[name.lower()] = None if value.tag == _NULL_TAG else value.value
    return defaults


def _live_spans(root) -> list[tuple[int, int]]:
    """Character spans of every scalar (values and keys): where a placeholder counts."""
    import yaml

    spans: list[tuple[int, int]] = []
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            spans.append((node.start_mark.index, node.end_mark.index))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [key, value]
    spans.sort()
    return spans


def _inside(index: int, spans: list[tuple[int, int]]) -> bool:
    import bisect

    at = bisect.bisect_right(spans, (index, float("inf"))) - 1
    return at >= 0 and spans[at][0] <= index < spans[at][1]
