"""Reading runbook files: how one is read (bounded, UTF-8), its error, its one document, and its durations.

The YAML-with-line-numbers machinery (YMap, YList, Section, file:line errors) is the kernel's
`vigil.yamlfile`, shared with the rule files; it is re-exported here for the loader.
"""

from __future__ import annotations

from pathlib import Path

from vigil.yamlfile import Section, YList, YMap
from vigil.yamlfile import Source as YamlSource

__all__ = ["MAX_FILE_BYTES", "RunbookFileError", "Section", "Source", "YList", "YMap"]

MAX_FILE_BYTES = 1024 * 1024  # a runbook is a page of steps; a larger file is a mistake


class RunbookFileError(ValueError):
    """A runbook file that cannot load: the message names file:line and what to do."""


class Source(YamlSource):
    """One runbook file: its single document, and errors that point into it."""

    error = RunbookFileError
    # a step waits seconds to hours; a day-long wait is a mistake, not a runbook
    duration_units = ("ms", "s", "m", "h")
    duration_example = "500ms, 30s, 5m, 1h"
    whole = "the runbook"

    def __init__(self, path: Path, text: str | None = None) -> None:
        if text is None:
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise RunbookFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes: is it a runbook?")
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RunbookFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise RunbookFileError(f"{path}: not UTF-8 text") from None
        super().__init__(path, text)

    def document(self) -> YMap:
        nodes = self.nodes()
        if len(nodes) != 1:
            self.fail(nodes[1].start_mark.line + 1 if nodes else 1, "a runbook file holds exactly one runbook")
        data = self.build(nodes[0])
        if not isinstance(data, YMap):
            self.fail(nodes[0].start_mark.line + 1, "a runbook is a mapping: name, description, target, steps")
        return data
