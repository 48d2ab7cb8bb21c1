"""Every conformance check, one module a clause area (the failover apart from Kiwoom's protocol).

Each check is a function named for the property it checks, tagged with the clause IDs it judges,
reading one scenario's :class:`~stockmon.conformance.evidence.Evidence` and returning a verdict.
A module registers its checks when imported; the scenario catalogue imports every module.
"""
