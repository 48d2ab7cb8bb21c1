"""stockmon: spec-driven contract-testing harness and reference backend for KIS/Kiwoom market data.

The glue package holds what every part may share: settings (environment only), the Clock, secret
redaction and the CLI entry. The judged (``stockmon.reference``) and the judges
(``stockmon.mockserver``, ``stockmon.conformance``) share nothing else but the spec as data.
"""

__version__ = "0.1.0"
