"""Numbers as text: the one formatter and plain-text table of the report, ``evaluate`` and the web page."""

from __future__ import annotations

MISSING = "—"


def fmt(x: float | None, spec: str = ".3f", missing: str = MISSING) -> str:
    """``x`` formatted with ``spec``; ``missing`` where there is no value (a metric a model lacks)."""
    return missing if x is None else format(x, spec)


def text_table(header: list[str], rows: list[list[str]], indent: str = "") -> str:
    """Aligned columns: the first left-aligned (names), the rest right-aligned (numbers)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = [indent + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        line.append(indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(line)
