"""What a failed flow validation reports: one :class:`FlowError` per problem.

Every check of a flow document (the parsers, the JSON Schema, the graph checks)
reports in this one shape, naming the file, the node and the field, so that an
author can fix every problem in one pass instead of meeting them one at a time.
:class:`InvalidFlow` carries all of them out of the loaders that raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlowError:
    file: str
    node: str
    field: str
    message: str

    def __str__(self) -> str:
        where = self.node or "(flow)"
        if self.field:
            where = f"{where}.{self.field}"
        return f"{self.file}: {where}: {self.message}"


class InvalidFlow(Exception):
    """A flow file failed validation; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[FlowError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis: what an error
    message quotes of a hostile document (a key, a tag, a value) stays short."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
