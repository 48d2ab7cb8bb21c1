"""Tests of stockmon.reference; the shared helpers of this folder (stream_support) are importable
from its subfolders because pytest puts this conftest's folder on sys.path."""
