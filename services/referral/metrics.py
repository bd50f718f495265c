"""Referral's own Prometheus metrics (the kit adds the runtime's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class ReferralMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.unmet_needs = Counter(
            "enlace_referral_unmet_needs",
            "Needs of new cases that no eligible service covers",
            ["service_type", "country", "reason"],
            registry=registry,
        )
        self.referrals_created = Counter(
            "enlace_referrals_created",
            "Referrals made by routing or by hand, by first state",
            ["state", "service_type"],
            registry=registry,
        )
        self.disclosures = Counter(
            "enlace_referral_disclosures",
            "Identifying details disclosed to receiving agencies",
            registry=registry,
        )
        self.erasures = Counter(
            "enlace_referral_erasures",
            "case.erased applied (a redelivery is not counted), by whether the case was "
            "routed here",
            ["case"],
            registry=registry,
        )
