"""YAML loaded into plain dicts and lists that remember the line of every key and item.

Validation must name the line of each problem, and PyYAML's plain loaders forget node
positions, so this loader builds `Map` (a dict) and `Seq` (a list) that keep the line of
their own start, of every value and every item. Duplicate keys, which PyYAML silently
overwrites, are reported instead. yaml is imported lazily: `clara publish` never loads it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any


class Map(dict):
    """A YAML mapping: a dict with `line` (its start) and `lines[key]` (each value's line)."""

    line: int = 0

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[Any, int] = {}
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        """Line of the value of `key`, or of the mapping when the key is absent."""
        return self.lines.get(key, self.line)

    def rename(self, old: Any, new: Any) -> None:
        """Move the value of `old` to `new`, keeping its lines (to read a typo as meant)."""
        self[new] = self.pop(old)
        self.lines[new] = self.lines.pop(old, self.line)
        self.key_lines[new] = self.key_lines.pop(old, self.line)


class Seq(list):
    """A YAML sequence: a list with `line` (its start) and `lines[i]` (each item's line)."""

    line: int = 0

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []

    def line_of(self, index: int) -> int:
        """Line of item `index`."""
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


def load(text: str, fast: bool = True) -> tuple[Any, list[tuple[int, str]]]:
    """Parse one YAML document; returns (data, problems) with problems as (line, message).

    A syntax error gives data None and one problem at the line where parsing stopped.
    libyaml's parser (PyYAML's CSafeLoader, ~0.5 ms for a pipeline file instead of ~4-5
    ms: `clara run` parses before its first operator starts) is used when PyYAML has it
    and `fast`; it is trusted only when it succeeds: on any error the document is parsed
    again by PyYAML's own parser, whose messages are the ones users always got. A text
    with a tab, a '?' or a byte-order mark past its start goes to the pure parser only:
    libyaml accepts tabs PyYAML refuses (`a: 1<TAB>`), reads '?' in flow collections
    otherwise, and skips a BOM anywhere (`cat` of two files saved with one) where PyYAML
    reads a character.
    """
    import yaml

    if fast and _libyaml_reads_as_pyyaml(text) and hasattr(yaml, "CSafeLoader"):
        try:
            return _parse(text, yaml.CSafeLoader)
        except Exception:  # the pure parser below decides, and explains
            pass
    try:
        return _parse(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return None, [(line, f"YAML syntax error: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, [(1, f"YAML error: {exc}")]


def _libyaml_reads_as_pyyaml(text: str) -> bool:
    """Whether nothing in `text` is known to be read differently by libyaml (see load)."""
    return "\t" not in text and "?" not in text and "\ufeff" not in text[1:]


def _parse(text: str, base: type) -> tuple[Any, list[tuple[int, str]]]:
    """The document and its problems (duplicate keys ...); YAMLError on a syntax error."""
    import yaml

    problems: list[tuple[int, str]] = []

    class Loader(base):  # type: ignore[misc, valid-type]
        pass

    def mapping(loader: Loader, node: yaml.MappingNode) -> Map:
        loader.flatten_mapping(node)
        result = Map(node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                problems.append((key_node.start_mark.line + 1, "a key must be a plain value"))
                continue
            if key in result:
                first = result.key_lines[key]
                problems.append(
                    (key_node.start_mark.line + 1, f"duplicate key {key!r} (first on line {first})")
                )
            result[key] = loader.construct_object(value_node, deep=True)
            result.lines[key] = value_node.start_mark.line + 1
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def sequence(loader: Loader, node: yaml.SequenceNode) -> Seq:
        result = Seq(node.start_mark.line + 1)
        for item in node.value:
            result.append(loader.construct_object(item, deep=True))
            result.lines.append(item.start_mark.line + 1)
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return yaml.load(text, Loader=Loader), problems
