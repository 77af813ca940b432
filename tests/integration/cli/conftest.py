from tests.fixtures.live_service import module_live  # noqa: F401 (the module-wide `live` service)
