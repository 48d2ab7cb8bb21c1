"""The machine-readable spec: one YAML file per version, a loader returning typed immutable objects.

Every normative number, code and field layout that the reference client, the mock server and the
conformance checks use is read from here at run time (clause DEV-SPEC-FIRST).
"""

from stockmon.spec.facts import (
    broker_clause,
    broker_data,
    endpoint_port,
    kiwoom_layouts,
    mock_profile_value,
    need,
    newest_spec,
    ws_answer_code,
)
from stockmon.spec.loader import (
    available_versions,
    latest_version,
    load_spec,
    load_spec_file,
    spec_dir,
    version_key,
)
from stockmon.spec.model import Clause, EnvVar, KiwoomLayout, Layout, LayoutField, Spec

__all__ = [
    "Clause",
    "EnvVar",
    "KiwoomLayout",
    "Layout",
    "LayoutField",
    "Spec",
    "available_versions",
    "broker_clause",
    "broker_data",
    "endpoint_port",
    "kiwoom_layouts",
    "latest_version",
    "load_spec",
    "load_spec_file",
    "mock_profile_value",
    "need",
    "newest_spec",
    "spec_dir",
    "version_key",
    "ws_answer_code",
]
