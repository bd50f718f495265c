"""The directory: searching its services (partners), reading and editing it
(operations), and reading its contact points (Enlace services only; notifications
tells people with them).

Edits are serialised across replicas by locking the directory version, validated
against the whole directory (ids unique across organisations), and bump the
version, so every replica reloads within `directory_refresh_seconds` and this one
at once. The contact directory is read fresh from the database on each call.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from services.kit.db import Pool
from services.kit.errors import InvalidField, NotFound, Unavailable
from services.kit.event_errors import TransientError
from services.kit.logging import get_logger
from services.referral import store
from services.referral.commands.context import Context, Versions
from services.referral.domain.directory import Offer, Organization, ServiceQuery

log = get_logger(__name__)


@dataclass(frozen=True)
class DirectorySnapshot:
    """The directory's organisations at one version; `organizations` is None when
    the caller already has this version (nothing to send)."""

    version: int
    organizations: list[Organization] | None


def find_services(ctx: Context, query: ServiceQuery) -> list[Offer]:
    """The services matching `query`, in directory order."""
    if query.region_outside_country:
        raise InvalidField(
            "query.region", f"region {query.region} is not in country {query.country}"
        )
    return [offer for offer in ctx.directory.offers if query.matches(offer)]


def read_directory(ctx: Context) -> DirectorySnapshot:
    """The whole directory as this replica holds it."""
    return DirectorySnapshot(ctx.directory.version, ctx.directory.directory.organizations)


async def read_contact_directory(
    pool: Pool, ctx: Context, known: Versions | None = None
) -> DirectorySnapshot:
    """Every organisation with its contact points, as stored now (an edit made
    through any replica is seen at once); no organisations when the caller's
    version (`known`, an If-None-Match) is the current one."""
    # Before the seed is in, the stored directory is empty: never hand that out as
    # "nobody to tell" (the caller keeps its copy and asks again).
    try:
        await ctx.directory.wait_loaded()
    except TransientError:
        raise Unavailable("Directory not loaded yet", "retry shortly") from None
    async with store.connection(pool) as conn:
        version = await store.directory_version(conn)
        if known is not None and known.include(version):
            return DirectorySnapshot(version, None)
        await ctx.directory.refresh(conn)
    return DirectorySnapshot(ctx.directory.version, ctx.directory.directory.organizations)


@dataclass(frozen=True)
class PutOrganization:
    organization_id: str  # the id the caller addressed; must be the document's
    organization: Organization


async def put_organization(pool: Pool, ctx: Context, command: PutOrganization) -> bool:
    """Add or replace an organisation and its services; True when it is new."""
    organization = command.organization
    if organization.id != command.organization_id:
        raise InvalidField("id", f"must equal the id in the path ({command.organization_id})")
    if organization.id not in ctx.directory.known_agencies:
        raise InvalidField("id", "is not an agency of agencies.yaml")
    async with store.transaction(pool) as conn:
        await store.lock_directory(conn)
        await ctx.directory.refresh(conn)
        try:
            ctx.directory.directory.with_organization(organization)
        except ValueError as exc:
            raise InvalidField("services", _first_error(exc)) from None
        created = await store.upsert_organization(conn, organization.model_dump(mode="json"))
    async with store.connection(pool) as conn:
        await ctx.directory.refresh(conn)
    log.info("directory organisation saved", organization_id=organization.id, created=created)
    return created


async def remove_organization(pool: Pool, ctx: Context, organization_id: str) -> None:
    async with store.transaction(pool) as conn:
        await store.lock_directory(conn)
        deleted = await store.delete_organization(conn, organization_id)
    if not deleted:
        raise NotFound("organization")
    async with store.connection(pool) as conn:
        await ctx.directory.refresh(conn)
    log.info("directory organisation removed", organization_id=organization_id)


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors(include_url=False)[0]["msg"])
    return str(exc)
