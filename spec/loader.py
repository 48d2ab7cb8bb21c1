"""Load spec versions from YAML into typed, immutable :class:`~stockmon.spec.model.Spec` objects.

Files are found through ``importlib.resources`` so the same code works from a source checkout, an
editable install and a wheel. Every load validates the file against ``meta-schema.json`` and the
cross-references the meta-schema cannot express (unique IDs, layout roles naming real fields).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from stockmon.errors import SpecError
from stockmon.spec.model import (
    Clause,
    EnvVar,
    KiwoomField,
    KiwoomLayout,
    Layout,
    LayoutField,
    Source,
    Spec,
    Testability,
    Text,
    freeze,
)

VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def spec_dir() -> Path:
    """Directory holding ``versions/``, ``versions.lock`` and ``meta-schema.json`` (installed copy)."""
    return Path(str(resources.files("stockmon.spec")))


def version_key(version: str) -> tuple[int, int]:
    """Sort key: '1.10' after '1.9'."""
    m = VERSION_RE.match(version)
    if not m:
        raise SpecError(f"not a spec version: {version!r} (expected MAJOR.MINOR, e.g. 1.1)")
    return int(m.group(1)), int(m.group(2))


def available_versions(root: Path | None = None) -> list[str]:
    """Every version with a YAML file, oldest first."""
    versions_dir = (root or spec_dir()) / "versions"
    names = [p.stem for p in versions_dir.glob("*.yaml") if VERSION_RE.match(p.stem)]
    return sorted(names, key=version_key)


def latest_version(root: Path | None = None) -> str:
    """The newest version (released or draft)."""
    versions = available_versions(root)
    if not versions:
        raise SpecError("no spec versions found")
    return versions[-1]


@functools.cache
def meta_validator(root: Path | None = None) -> jsonschema.protocols.Validator:
    """Validator for spec files (the meta-schema itself is checked first)."""
    schema = json.loads(((root or spec_dir()) / "meta-schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def canonical_digest(data: Any) -> str:
    """SHA-256 of the canonical JSON of the parsed data: comments and layout do not count as changes."""
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# libyaml's safe loader when PyYAML was built with it (about ten times faster; every process
# start parses the spec, and under load the pure-Python parser took seconds), the same rules.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one spec file, turning YAML errors into a SpecError naming the file and line."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(
            f"{path.name}{where}: invalid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path.name}: a spec file must be a YAML mapping")
    return data


def structural_errors(data: Mapping[str, Any], root: Path | None = None) -> list[str]:
    """Meta-schema violations and broken cross-references, one readable line each."""
    errors: list[str] = []
    for err in sorted(meta_validator(root).iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        errors.append(f"{where}: {err.message}")
    if errors:
        return errors
    seen: set[str] = set()
    for i, clause in enumerate(data["clauses"]):
        cid = clause["id"]
        if cid in seen:
            errors.append(f"clauses/{i}: duplicate clause ID {cid}")
        seen.add(cid)
    for tr_id, layout in data["layouts"].items():
        names = [f["name"] for f in layout["fields"]]
        if len(set(names)) != len(names):
            errors.append(f"layouts/{tr_id}: duplicate field names")
        for role, target in layout["roles"].items():
            targets = target if isinstance(target, list) else [target]
            for t in targets:
                if t not in names:
                    errors.append(f"layouts/{tr_id}/roles/{role}: no field named {t!r}")
    for code, layout in data["kiwoom_layouts"].items():
        fids = [f["fid"] for f in layout["fields"]]
        for role, target in layout["roles"].items():
            targets = target if isinstance(target, list) else [target]
            for t in targets:
                if t not in fids:
                    errors.append(f"kiwoom_layouts/{code}/roles/{role}: no FID {t!r}")
    return errors


def _record_layout(lay: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every broker's layout has (:class:`RecordLayout`), from its YAML entry."""
    keys = ("broker", "market", "kind", "source")
    return {**{k: lay[k] for k in keys}, "roles": freeze(lay["roles"])}


def build_spec(data: Mapping[str, Any], digest: str) -> Spec:
    """Typed objects from already-validated data."""
    clauses = tuple(
        Clause(
            id=c["id"],
            section=c["section"],
            title=Text(**c["title"]),
            text=Text(**c["text"]),
            values=freeze(c["values"]),
            schemas=tuple(c["schemas"]),
            source=Source(**c["source"]),
            testability=Testability(**c["testability"]),
            amends=c.get("amends"),
        )
        for c in data["clauses"]
    )
    layouts: dict[str, Layout] = {}
    for tr_id, lay in data["layouts"].items():
        fields = tuple(LayoutField(**f) for f in lay["fields"])
        layouts[tr_id] = Layout(
            tr_id=tr_id,
            fields=fields,
            _index=MappingProxyType({f.name: i for i, f in enumerate(fields)}),
            **_record_layout(lay),
        )
    kiwoom = {
        code: KiwoomLayout(
            type_code=code,
            fields=tuple(KiwoomField(**f) for f in lay["fields"]),
            **_record_layout(lay),
        )
        for code, lay in data["kiwoom_layouts"].items()
    }
    return Spec(
        version=data["version"],
        status=data["status"],
        title=Text(**data["title"]),
        based_on=data["based_on"],
        source=data["source"],
        clauses=clauses,
        environment=tuple(EnvVar(**e) for e in data["environment"]),
        endpoints=freeze(data["endpoints"]),
        rest=freeze(data["rest"]),
        markets=freeze(data["markets"]),
        codes=freeze(data["codes"]),
        layouts=MappingProxyType(layouts),
        kiwoom_layouts=MappingProxyType(kiwoom),
        mock_profile=freeze(data["mock_profile"]),
        digest=digest,
        raw=freeze(data),
        key_patterns=MappingProxyType(
            {m: re.compile(str(v["key_pattern"])) for m, v in data["markets"].items()}
        ),
    )


def load_spec_file(path: Path, root: Path | None = None) -> Spec:
    """Load and validate one file; SpecError lists every problem found."""
    data = read_yaml(path)
    errors = structural_errors(data, root)
    if errors:
        shown = "; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
        raise SpecError(f"{path.name}: {shown}")
    if data["version"] != path.stem:
        raise SpecError(
            f"{path.name}: declares version {data['version']!r}; the file name must match"
        )
    return build_spec(data, canonical_digest(data))


@functools.cache
def load_spec(version: str | None = None) -> Spec:
    """The installed spec of a version (default: the newest); cached, immutable."""
    v = version or latest_version()
    version_key(v)
    path = spec_dir() / "versions" / f"{v}.yaml"
    if not path.is_file():
        known = ", ".join(available_versions())
        raise SpecError(f"unknown spec version {v!r}; available: {known}")
    return load_spec_file(path)
