"""stockmon.conformance: the black-box conformance suite (``stockmon conformance``).

The judge shares no code with the judged: it never imports ``stockmon.reference``; it starts the
KIS mock (``stockmon.mockserver``) in-process, runs the implementation under test as a subprocess,
and judges the mock's trace and the target's output with checks tagged by clause ID.

Public API: :func:`~stockmon.conformance.runner.run_suite` with
:class:`~stockmon.conformance.runner.SuiteOptions` and the scenario catalogue
(:data:`~stockmon.conformance.scenarios.SCENARIOS`); reports in :mod:`~stockmon.conformance.report`;
the clause index for ``stockmon spec check`` in :mod:`~stockmon.conformance.catalog`.
"""
