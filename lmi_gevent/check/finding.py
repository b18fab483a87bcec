"""One finding of ``lmi-gevent check``: what it saw, how bad it is, and the fix."""

from __future__ import annotations

from typing import Any, NamedTuple


class Finding(NamedTuple):
    severity: str  # "blocker" or "warning"
    kind: str  # init-error, stall, no-overlap, failed-invocation, early-import, non-cooperative,
    #            shared-global, shared-cwd, shared-env, timeout
    message: str
    fix: str = ""
    details: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "kind": self.kind, "message": self.message,
                "fix": self.fix, "details": list(self.details)}


def stack_lines(stack: list[str]) -> list[str]:
    """``file:line in function`` entries, each followed by its source line when readable."""
    import linecache

    lines = []
    for entry in stack:
        lines.append(f"  {entry}")
        place, _, _ = entry.rpartition(" in ")
        filename, _, lineno = place.rpartition(":")
        source = linecache.getline(filename, int(lineno)).strip() if lineno.isdigit() else ""
        if source:
            lines.append(f"      {source}")
    return lines
