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
