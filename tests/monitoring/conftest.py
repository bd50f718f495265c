"""The monitoring tests: the alert rules under promtool, and a private Prometheus and
Alertmanager watching a private stack (its own topics)."""

from tests.conftest import package_namespace

namespace = package_namespace("monitoring")
