"""A YAML stream split into its documents, each one's ``metadata`` key read leniently, so the
problems of a bad document go to the plan it names and its valid neighbours still load.

Uses the parser's events only: nothing is constructed, aliases are never expanded and the
nesting costs no recursion, so this is safe on any input the loader would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import ScalarNode

_STR_TAG = "tag:yaml.org,2002:str"
_METADATA_KEYS = ("name", "namespace")


@dataclass(frozen=True)
class Document:
    number: int  # 1-based, counting every document as plan.py does
    #: the document's text, preceded by blank lines and spaces so that the line and column
    #: numbers in its problems are those of the file
    text: str
    key: str | None  # metadata.namespace/metadata.name, if both are plain strings


def split(text: str) -> tuple[list[Document], bool]:
    """The documents of a YAML stream; the flag says whether problems name their document
    (more than one document, or a syntax error that ended the stream).

    Uses the parser's events only: nothing is constructed, aliases are never expanded and the
    nesting costs no recursion, so this is safe on any input ``load_plan_text`` would refuse.
    A syntax error ends the stream (YAML cannot resynchronise): the rest of the text is one last
    document, keyed by the metadata seen before the error.
    """
    documents: list[Document] = []
    number = 0
    resume: Any = None  # where the text after the last complete document starts (a Mark)
    start: Any = None  # start Mark of the document being read
    scan = _MetadataScan()
    try:
        # The pure-Python parser, as plan.py's loader: its marks index the characters of text.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, DocumentStartEvent):
                number += 1
                start = event.start_mark
                scan = _MetadataScan()
            elif isinstance(event, DocumentEndEvent):
                end: Any = event.end_mark
                documents.append(Document(number, _slice(text, start, end.index), scan.key))
                resume, start = end, None
            elif start is not None:
                scan.feed(event)
    except yaml.YAMLError:
        if start is not None:
            documents.append(Document(number, _slice(text, start, len(text)), scan.key))
        else:
            documents.append(Document(number + 1, _slice(text, resume, len(text)), None))
        return documents, True
    return documents, number > 1


def _slice(text: str, start: Any, end: int) -> str:
    """``text[start:end]`` padded to keep the file's line and column numbers."""
    if start is None:
        return text[:end]
    padding = "\n" * int(start.line) + " " * int(start.column)
    return padding + text[int(start.index) : end]


class _MetadataScan:
    """Reads ``metadata.name`` and ``metadata.namespace`` from one document's events.

    Only the top two levels are tracked, so memory stays constant however deep the document
    nests. Values count only if YAML would read them as strings (``name: 123`` does not).
    """

    def __init__(self) -> None:
        self.depth = 0  # nesting level of the next node; 0 is the document's root
        self.frames: list[_Frame] = []  # the open collections of levels 1 and 2
        self.found: dict[str, str] = {}

    @property
    def key(self) -> str | None:
        name, namespace = self.found.get("name"), self.found.get("namespace")
        return f"{namespace}/{name}" if name and namespace else None

    def feed(self, event: Event) -> None:
        if isinstance(event, CollectionEndEvent):
            if self.depth <= len(self.frames):
                self.frames.pop()
            self.depth -= 1
            return
        if not isinstance(event, NodeEvent):
            return
        path = self._place(event)
        if isinstance(event, CollectionStartEvent):
            self.depth += 1
            if self.depth <= 2:
                self.frames.append(_Frame(isinstance(event, MappingStartEvent), path))
        elif isinstance(event, ScalarEvent) and path is not None and len(path) == 2:
            parent, key = path
            if parent == "metadata" and key in _METADATA_KEYS and _is_string(event):
                self.found[key] = event.value

    def _place(self, event: NodeEvent) -> tuple[str, ...] | None:
        """The key path of this node if it is a value under string keys, else None."""
        if self.depth == 0:
            return ()
        if self.depth > len(self.frames):
            return None  # deeper than tracked
        frame = self.frames[self.depth - 1]
        if not frame.mapping:
            return None
        if frame.want_key:
            frame.want_key = False
            frame.key = event.value if isinstance(event, ScalarEvent) else None
            return None
        frame.want_key = True
        if frame.path is None or frame.key is None:
            return None
        return (*frame.path, frame.key)


@dataclass
class _Frame:
    mapping: bool
    path: tuple[str, ...] | None  # of this collection; None if not under string keys
    want_key: bool = True
    key: str | None = None  # the key whose value comes next


_RESOLVER = yaml.resolver.Resolver()


def _is_string(event: ScalarEvent) -> bool:
    """Whether YAML reads this scalar as a non-empty string (as PyYAML's composer resolves it)."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
            ScalarNode, event.value, event.implicit
        )
    return tag == _STR_TAG and event.value != ""
