"""Root conftest: registers the shared fixture modules."""

pytest_plugins = ["tests.plans", "tests.servers", "tests.backend_server"]
