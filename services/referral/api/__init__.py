"""Referral's HTTP API: `routes` (what each request does: one use case each) and
`models` (request bodies and response views)."""

from services.referral.api.routes import build_router

__all__ = ["build_router"]
