"""Every conformance check, grouped by clause area; importing this package registers them all.

Each check is a function named for the property it checks, tagged with the clause IDs it judges,
reading one scenario's :class:`~stockmon.conformance.evidence.Evidence` and returning a verdict.
"""

from stockmon.conformance.checks import (
    credentials,
    data,
    failover,
    keepalive,
    kiwoom,
    packets,
    policies,
    sockets,
    tokens,
)

__all__ = [
    "credentials",
    "data",
    "failover",
    "keepalive",
    "kiwoom",
    "packets",
    "policies",
    "sockets",
    "tokens",
]
