"""Benchmark figures, their targets (PASS/MISS and by how much), the table and the JSON file."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Op = Literal[">=", "<="]


@dataclass
class Target:
    """A bound a figure should meet: value >= bound or value <= bound."""

    op: Op
    bound: float

    def check(self, value: float | None) -> tuple[str, str]:
        """(PASS|MISS|n/a, how far from the bound) for a value."""
        if value is None or not math.isfinite(value):
            return "n/a", ""
        ok = value >= self.bound if self.op == ">=" else value <= self.bound
        if self.bound == 0:
            return ("PASS" if ok else "MISS"), ""
        ratio = value / self.bound
        if self.op == ">=":
            how = f"{ratio:.2f}x target" if ok else f"{(1 - ratio) * 100:.0f}% short"
        else:
            how = f"{ratio:.2f}x limit" if ok else f"{ratio:.2f}x over limit"
        return ("PASS" if ok else "MISS"), how

    def text(self, unit: str) -> str:
        """The target as printed: '>= 2,000,000 pts/s'."""
        return f"{self.op} {fmt(self.bound)} {unit}".strip()


@dataclass
class Row:
    """One figure of the run."""

    section: str
    name: str
    value: float | None
    unit: str
    target: Target | None = None
    note: str = ""

    def status(self) -> tuple[str, str]:
        """PASS/MISS and the margin, or empty strings when there is no target."""
        return self.target.check(self.value) if self.target else ("", "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        st, how = self.status()
        d: dict[str, Any] = {"section": self.section, "name": self.name, "value": self.value,
                             "unit": self.unit, "note": self.note}
        if self.target:
            d["target"] = asdict(self.target)
            d["status"] = st
            d["margin"] = how
        return d


def fmt(v: float | None) -> str:
    """A number for the table: thousands separators, 3 significant digits below 100."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


@dataclass
class Report:
    """Everything measured in one run, in order."""

    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, section: str, name: str, value: float | None, unit: str,
            target: Target | None = None, note: str = "") -> Row:
        """Record a figure and echo it as a progress line."""
        row = Row(section, name, value, unit, target, note)
        self.rows.append(row)
        st, how = row.status()
        extra = f"  [{st} {how}]" if st else ""
        tail = f"  ({note})" if note else ""
        log(f"  {section}: {name} = {fmt(value)} {unit}{extra}{tail}")
        return row

    def note(self, text: str) -> None:
        """A remark printed under the table."""
        self.notes.append(text)
        log(f"  note: {text}")

    def table(self) -> str:
        """The plain-text table of every figure."""
        heads = ("section", "figure", "value", "unit", "target", "status")
        lines: list[tuple[str, ...]] = []
        for r in self.rows:
            st, how = r.status()
            lines.append((r.section, r.name, fmt(r.value), r.unit,
                          r.target.text(r.unit) if r.target else "",
                          f"{st} {how}".strip()))
        widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h)
                  for i, h in enumerate(heads)]
        out: list[str] = []

        def line(cells: tuple[str, ...]) -> str:
            parts = [c.rjust(w) if i == 2 else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
            return "  ".join(parts).rstrip()

        out.append(line(heads))
        out.append("  ".join("-" * w for w in widths))
        prev = None
        for r, cells in zip(self.rows, lines, strict=True):
            if prev is not None and r.section != prev:
                out.append("")
            prev = r.section
            out.append(line(cells))
            if r.note:
                out.append(" " * (widths[0] + 2) + f"  ({r.note})")
        passed = sum(1 for r in self.rows if r.status()[0] == "PASS")
        missed = [r for r in self.rows if r.status()[0] == "MISS"]
        out.append("")
        out.append(f"targets: {passed} PASS, {len(missed)} MISS"
                   + (": " + "; ".join(f"{r.section} {r.name}" for r in missed)
                      if missed else ""))
        if self.notes:
            out.append("")
            out.append("notes:")
            out.extend(f"  - {n}" for n in self.notes)
        return "\n".join(out)

    def finish(self, header: str, path: Path) -> None:
        """Print the header and the table, write the JSON, say where."""
        print()
        print(header)
        print()
        print(self.table())
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write_json(path)
        print(f"\nfigures written to {path}")

    def write_json(self, path: Path) -> None:
        """The same figures as JSON (never into the repository)."""
        data = {"meta": self.meta, "rows": [r.as_dict() for r in self.rows],
                "notes": self.notes}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


_START = time.perf_counter()


def log(msg: str) -> None:
    """A progress line on stderr with the elapsed time."""
    print(f"[{time.perf_counter() - _START:7.1f}s] {msg}", file=sys.stderr, flush=True)
