"""The platform every domain stands on: configuration, the store and its tables, time, workers and
their leases, signals, serving, errors and JSON. It imports no domain package, nor web/, cli/ or sdk/
(tests/unit/test_import_cycles.py holds the rule; docs/architecture.md explains it)."""
