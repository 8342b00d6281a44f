"""YAML, read one way for every input canary takes (plan files, the plans directory, the
controller config): PyYAML's safe loader without aliases, anchors or merge keys, with a nesting
limit, keys given twice remembered (not silently dropped), and every syntax error turned into a
:class:`~canary.core.errors.Problem` with its line and column.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from canary.core.errors import Problem

#: The schema nests five levels (spec.analysis.metrics[i].max). Fifty leaves ample room and stops
#: a "[[[[..." bomb long before the recursive composer reaches Python's recursion limit.
MAX_DEPTH = 50
_Mark = Any  # yaml.error.Mark or its C twin; both have .line and .column

_MERGE_TAG = "tag:yaml.org,2002:merge"
_ALIAS_FIX = "write the values out in full: aliases can expand a small file into gigabytes"


class LimitError(Exception):
    """Input the loader refuses to go on reading (too deep); stops the stream."""

    def __init__(self, mark: _Mark | None, message: str, fix: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.fix = fix


class YamlMap(dict[Any, Any]):
    """A mapping that remembers the keys YAML gave more than once (a plain dict keeps the last)."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[object] = []


class SafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases, anchors or merge keys, and with a nesting limit.

    Aliases are how a "billion laughs" document expands a few hundred bytes into gigabytes; a
    plan never needs them. Instead of expanding one, the composer records where it was and
    returns null, so the rest of the stream still parses and its problems are reported too.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.alias_mark: _Mark | None = None

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            self.alias_mark = self.alias_mark or event.start_mark
            return ScalarNode("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None) is not None:
            self.alias_mark = self.alias_mark or event.start_mark
            event.anchor = None  # never registered, so never expanded
        if not isinstance(event, SequenceStartEvent | MappingStartEvent):
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise LimitError(
                event.start_mark,
                f"nested deeper than {MAX_DEPTH} levels",
                "a plan nests about five levels; this document is not a plan",
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_map(loader: SafeLoader, node: MappingNode) -> YamlMap:
    result = YamlMap()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key is a list or a mapping", key_node.start_mark
            ) from None
        if key in result and key not in result.duplicates:
            result.duplicates.append(key)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


SafeLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
# "<<" is an ordinary (unknown) key here, not a merge: without aliases a merge is pointless.
SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _MERGE_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def position(mark: _Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(input)"


def yaml_problem(source: str, err: yaml.YAMLError) -> Problem:
    if isinstance(err, yaml.MarkedYAMLError):
        what = err.problem or "syntax error"
        message = f"invalid YAML: {what}" + (f" ({err.context})" if err.context else "")
        fix = "check the indentation, quoting and colons here"
        if "'\\t'" in what:
            fix = "indent with spaces: YAML does not allow tabs"
        elif "could not determine a constructor" in what:
            fix = "remove the tag: plans use plain YAML values only"
        elif "mapping key is" in what:
            fix = "keys are plain names such as interval or metrics"
        return Problem(source, position(err.problem_mark or err.context_mark), message, fix)
    if isinstance(err, yaml.reader.ReaderError):
        character = err.character if isinstance(err.character, int) else ord(err.character[:1])
        return Problem(
            source,
            f"character {err.position + 1}",
            f"invalid YAML: character #x{character:04x}: {err.reason}",
            "remove control characters; save the file as UTF-8 text",
        )
    return Problem(source, "(input)", f"invalid YAML: {err}", "fix the YAML syntax")


def parse_stream(text: str, source: str) -> tuple[list[tuple[int, object] | Problem], bool]:
    """In stream order: each non-null document as (number, data), or a problem in its place.

    The flag says whether the stream holds more than one document.
    """
    out: list[tuple[int, object] | Problem] = []
    count = 0
    aborted = False
    loader: SafeLoader | None = None
    try:
        loader = SafeLoader(text)  # checks for unprintable characters at once
        while loader.check_node():
            count += 1
            loader.depth = 0
            loader.alias_mark = None
            node = loader.get_node()
            if loader.alias_mark is not None:
                out.append(
                    Problem(
                        source,
                        position(loader.alias_mark),
                        "anchors and aliases (&name, *name) are not allowed",
                        _ALIAS_FIX,
                    )
                )
                continue
            try:
                data = loader.construct_document(node)
            except yaml.MarkedYAMLError as err:
                loader.constructed_objects = {}
                loader.recursive_objects = {}
                loader.state_generators = []
                loader.deep_construct = False
                out.append(yaml_problem(source, err))
                continue
            if data is not None:
                out.append((count, data))
    except LimitError as err:
        aborted = True
        out.append(Problem(source, position(err.mark), err.message, err.fix))
    except yaml.YAMLError as err:
        aborted = True
        out.append(yaml_problem(source, err))
    finally:
        if loader is not None:
            loader.dispose()
    return out, count > 1 or aborted
