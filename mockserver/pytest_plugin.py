"""pytest plugin (entry point ``pytest11``): ``kis_mock`` fixture. Filled in by the mock server work."""
