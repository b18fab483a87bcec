"""One finding of ``lmi-gevent check``: what it saw, how bad it is, and the fix."""

from __future__ import annotations

from typing import Any, NamedTuple


class Finding(NamedTuple):
    severity: str  # "blocker" or "warning"
    kind: str  # the class: see CLASSES
    message: str
    fix: str = ""
    details: tuple[str, ...] = ()  # the evidence: a stack, log lines
    site: str = ""  # file:line in the handler's code, when known

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "class": self.kind, "site": self.site,
                "message": self.message, "fix": self.fix, "evidence": list(self.details)}


# Every class a finding can have, with its severity (docs/check.md explains each).
CLASSES = {
    "init-error": "blocker", "crash": "blocker", "failed-invocation": "blocker",
    "timeout": "blocker", "stall": "blocker", "no-overlap": "blocker",
    "shared-global": "blocker", "shared-env": "blocker", "shared-cwd": "blocker",
    "shared-value": "blocker", "shared-container": "blocker",
    "warm-up": "warning", "variant-failed": "warning", "early-import": "warning",
    "non-cooperative": "warning", "small-pool": "warning",
}


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
