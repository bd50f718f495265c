"""The end-to-end tests: their own topics."""

from tests.conftest import package_namespace

namespace = package_namespace("e2e")
