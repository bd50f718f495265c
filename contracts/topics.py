"""Topic names, one per aggregate, each with a dead-letter twin."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    CASES = "protection.cases.v1"
    REFERRALS = "protection.referrals.v1"
    FOLLOWUPS = "protection.followups.v1"
    NOTIFICATIONS = "protection.notifications.v1"

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.value)


DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def all_topic_names() -> list[str]:
    """Every topic the system uses, dead-letter twins included (for provisioning)."""
    names: list[str] = []
    for topic in Topic:
        names += [topic.value, topic.dlq]
    return names


PARTNER_TOPIC_PREFIX = "protection.partner."


def partner_topic(agency_id: str) -> str:
    """The topic of one partner agency's feed: the events that concern that agency
    (filtered by notifications), readable by that agency's principal only."""
    return f"{PARTNER_TOPIC_PREFIX}{agency_id}.v1"


def is_partner_topic(name: str) -> bool:
    return name.startswith(PARTNER_TOPIC_PREFIX) and name.endswith(".v1")


def namespaced(namespace: str, topic: str) -> str:
    """The physical name of a topic in a namespace.

    Production uses the empty namespace, so physical names are the contract names.
    Test runs use a namespace of their own so that parallel runs never share a topic.
    """
    return f"{namespace}.{topic}" if namespace else topic
