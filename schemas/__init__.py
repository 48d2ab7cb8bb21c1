"""JSON Schema 2020-12 documents for every packet, body, event and trace record, resolvable offline.

Each ``<name>.json`` has ``$id`` ``https://schemas.stockmon.invalid/<name>.json`` (the ``.invalid``
TLD guarantees nothing is ever fetched), standard ``examples`` that must validate, and
``x-invalid-examples`` (``[{"why": ..., "instance": ...}]``) that must not.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from stockmon.errors import SpecError

BASE_URI = "https://schemas.stockmon.invalid/"


def schemas_dir() -> Path:
    """Directory of the installed schema files."""
    return Path(str(resources.files("stockmon.schemas")))


def schema_uri(name: str) -> str:
    """The ``$id`` of a schema by short name."""
    return f"{BASE_URI}{name}.json"


def load_documents(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every schema document by short name (file stem)."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((directory or schemas_dir()).glob("*.json")):
        try:
            docs[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(f"schemas/{path.name}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    return docs


def build_registry(docs: dict[str, dict[str, Any]]) -> Registry[Any]:
    """An offline registry of the documents (no retrieval: an unknown $ref is an error)."""
    resources_ = [
        (schema_uri(name), Resource.from_contents(doc, default_specification=DRAFT202012))
        for name, doc in docs.items()
    ]
    return Registry().with_resources(resources_)


@functools.cache
def _registry() -> tuple[dict[str, dict[str, Any]], Registry[Any]]:
    docs = load_documents()
    return docs, build_registry(docs)


def names() -> list[str]:
    """Short names of every installed schema."""
    return sorted(_registry()[0])


@functools.cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A cached validator for one schema by short name."""
    docs, registry = _registry()
    if name not in docs:
        raise SpecError(f"unknown schema {name!r}; known: {', '.join(sorted(docs))}")
    cls = jsonschema.validators.validator_for(docs[name])
    v: jsonschema.protocols.Validator = cls(docs[name], registry=registry)
    return v


def errors(name: str, instance: Any) -> list[str]:
    """Every violation of ``instance`` against schema ``name``, one line each (empty = valid)."""
    out = []
    for err in validator(name).iter_errors(instance):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    return out


def is_valid(name: str, instance: Any) -> bool:
    """Whether ``instance`` validates against schema ``name``."""
    return bool(validator(name).is_valid(instance))


# Keywords whose values are JSON instances, not subschemas: never rewritten by bundled().
_INSTANCE_KEYWORDS = frozenset({"const", "enum", "default", "examples", "x-invalid-examples"})
# Keywords that describe rather than constrain: kept beside an inlined $ref, not pushed into allOf.
_ANNOTATION_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "examples",
        "x-invalid-examples",
    }
)
# Keywords of a whole document dropped from an inlined target (it is no longer a resource).
_RESOURCE_KEYWORDS = frozenset({"$schema", "$id", "$defs", "examples", "x-invalid-examples"})


def bundled(name: str) -> dict[str, Any]:
    """Schema ``name`` as one self-contained document: every ``$ref`` (also across files) inlined.

    For tools that cannot resolve references through our offline registry (hypothesis-jsonschema,
    AsyncAPI/OpenAPI generators). A ``$ref`` with constraining siblings becomes ``allOf``; a cycle
    of references is a SpecError (none of the schemas is recursive).
    """
    docs, registry = _registry()
    return bundle_from(docs, registry, name)


def bundle_from(
    docs: dict[str, dict[str, Any]], registry: Registry[Any], name: str
) -> dict[str, Any]:
    """:func:`bundled` over an explicit set of documents (e.g. a source tree being checked)."""
    if name not in docs:
        raise SpecError(f"unknown schema {name!r}; known: {', '.join(sorted(docs))}")
    out = _inline(docs[name], registry.resolver(base_uri=schema_uri(name)), ())
    assert isinstance(out, dict)
    out.pop("$defs", None)
    return out


def _inline(node: Any, resolver: Any, trail: tuple[int, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, resolver, trail) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return {
            k: v if k in _INSTANCE_KEYWORDS else _inline(v, resolver, trail)
            for k, v in node.items()
        }
    resolved = resolver.lookup(ref)
    if id(resolved.contents) in trail:
        raise SpecError(f"$ref cycle through {ref!r}; bundled() needs non-recursive schemas")
    target = _inline(resolved.contents, resolved.resolver, (*trail, id(resolved.contents)))
    if isinstance(target, dict):
        target = {k: v for k, v in target.items() if k not in _RESOURCE_KEYWORDS}
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    kept = {k: v for k, v in siblings.items() if k in _ANNOTATION_KEYWORDS}
    rest = _inline({k: v for k, v in siblings.items() if k not in kept}, resolver, trail)
    if not rest:
        return {**target, **kept} if isinstance(target, dict) and kept else target
    return {**kept, "allOf": [target, rest]}
