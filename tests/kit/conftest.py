"""The kit's tests: their own topics."""

from tests.conftest import package_namespace

namespace = package_namespace("kit")
