"""Clause-level differences between two spec versions (``stockmon spec diff A B``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stockmon.spec.model import Spec, thaw


@dataclass(frozen=True)
class ClauseChange:
    """What changed in one clause present in both versions."""

    id: str
    values: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    text_changed: bool = False
    schemas: tuple[tuple[str, ...], tuple[str, ...]] | None = None


@dataclass(frozen=True)
class SpecDiff:
    """Added, removed and changed clauses plus changed data sections."""

    old: str
    new: str
    added: list[str]
    removed: list[str]
    changed: list[ClauseChange]
    sections: list[str]

    @property
    def empty(self) -> bool:
        """Whether the two versions say the same thing."""
        return not (self.added or self.removed or self.changed or self.sections)


_MISSING = "(absent)"


def diff_specs(old: Spec, new: Spec) -> SpecDiff:
    """Compare clause by clause; values are compared key by key."""
    old_ids, new_ids = set(old.clause_ids), set(new.clause_ids)
    added = [c for c in new.clause_ids if c not in old_ids]
    removed = [c for c in old.clause_ids if c not in new_ids]
    changed: list[ClauseChange] = []
    for cid in new.clause_ids:
        if cid not in old_ids:
            continue
        a, b = old.clause(cid), new.clause(cid)
        values: dict[str, tuple[Any, Any]] = {}
        for key in list(a.values) + [k for k in b.values if k not in a.values]:
            va, vb = thaw(a.values.get(key, _MISSING)), thaw(b.values.get(key, _MISSING))
            if va != vb:
                values[key] = (va, vb)
        text_changed = a.text != b.text or a.title != b.title
        schemas = (a.schemas, b.schemas) if a.schemas != b.schemas else None
        if values or text_changed or schemas:
            changed.append(ClauseChange(cid, values, text_changed, schemas))
    sections = [
        name
        for name in (
            "environment",
            "endpoints",
            "rest",
            "markets",
            "codes",
            "layouts",
            "kiwoom_layouts",
            "mock_profile",
        )
        if thaw(old.raw.get(name)) != thaw(new.raw.get(name))
    ]
    return SpecDiff(old.version, new.version, added, removed, changed, sections)


def format_diff(d: SpecDiff, new: Spec) -> str:
    """Human-readable report, one clause per block."""
    lines = [f"spec {d.old} -> {d.new}"]
    if d.empty:
        lines.append("  no differences")
        return "\n".join(lines) + "\n"
    for cid in d.added:
        c = new.clause(cid)
        lines.append(f"+ {cid}  {c.title.en}  [{c.source.doc} {c.source.ref}]")
        for k, v in c.values.items():
            lines.append(f"    {k} = {thaw(v)!r}")
    for cid in d.removed:
        lines.append(f"- {cid}")
    for ch in d.changed:
        lines.append(f"~ {ch.id}")
        for k, (va, vb) in ch.values.items():
            lines.append(f"    {k}: {va!r} -> {vb!r}")
        if ch.schemas:
            lines.append(f"    schemas: {list(ch.schemas[0])} -> {list(ch.schemas[1])}")
        if ch.text_changed:
            lines.append("    text changed")
    for s in d.sections:
        lines.append(f"~ [{s}] section changed")
    return "\n".join(lines) + "\n"
