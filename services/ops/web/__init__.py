"""The operations console: HTML pages served by the ops service itself, on the same
use cases as the JSON API and the command line (`services.ops.commands`)."""

from services.ops.web.routes import build_web_router

__all__ = ["build_web_router"]
