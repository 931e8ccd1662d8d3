"""Provider adapters: what the recommender knows about one provider.

The loader reads only the rules pack's provider-neutral series, so a :class:`Server`
says whose it is (``provider``, the series contract's ``PROVIDERS``) and nothing else
of the provider. Everything provider-specific that a rule needs — the commands that
carry a recommendation out (``hcloud server change-type …``), and the catalogue rules
(whether a server's type can be changed in place, whether a disk can shrink, which
machines a server can move to, the backup surcharge when the fleet does not tell it) —
sits behind one adapter per provider, chosen by :func:`adapter` from the server's
``provider``. A second provider adds a module here and an entry in :data:`ADAPTERS`;
the rules do not change.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from infrascope_core import contract

from ..model import Server, Source
from .hetzner import HetznerAdapter


class ProviderAdapter(Protocol):
    """One provider's commands and catalogue rules."""

    @property
    def name(self) -> str:
        """The ``provider`` label value (``contract.PROVIDERS``)."""

    @property
    def default_image(self) -> str:
        """Image of a new server when the old one's is unknown."""

    @property
    def default_backup_ratio(self) -> Decimal:
        """Backup surcharge (share of the server price) when the fleet does not tell it."""

    @property
    def disk_can_shrink(self) -> bool:
        """Whether a type change in place may go to a type with a smaller disk."""

    def resizable_in_place(self, server: Server) -> bool:
        """Whether ``server``'s type can be changed in place (the catalogue's types are
        its own kind of machine)."""

    def deletable(self, server: Server) -> bool:
        """Whether ``server`` is deleted by a command (else it is cancelled)."""

    def migration_source(self, server: Server) -> Source | None:
        """The ``source`` of the catalogue's machines ``server`` may be moved onto as a
        new server when it cannot change type itself (Hetzner: a dedicated server onto a
        Cloud server), or None."""

    def change_type_commands(self, server: Server, target: str, keep_disk: bool) -> list[str]:
        """Change ``server``'s type in place to ``target``."""

    def snapshot_command(self, server: Server, why: str) -> str:
        """Keep an image of ``server`` before it is deleted."""

    def delete_command(self, server: Server) -> str:
        """Delete ``server``."""

    def create_command(self, name: str, server_type: str, location: str, image: str) -> str:
        """Create a new server."""

    def cancel_command(self, server: Server) -> str:
        """End a rented machine that cannot be deleted by a command (a comment)."""

    def catalogue_hint(self) -> str:
        """Why the catalogue may offer no type (for the exclusion's reason)."""

    def unpriced_hint(self) -> str:
        """Why a server of this provider may have no price (for the exclusion's reason)."""

    def move_address_hint(self) -> str:
        """How to keep a server's public address when its services move to a new one."""


ADAPTERS: dict[str, ProviderAdapter] = {"hetzner": HetznerAdapter()}
"""Provider (``contract.PROVIDERS``) -> its adapter."""

assert set(ADAPTERS) <= set(contract.PROVIDERS), "an adapter for an undeclared provider"


class UnknownProvider(LookupError):
    """A server of a provider the recommender has no adapter for."""


def adapter(server: Server) -> ProviderAdapter:
    """The adapter of ``server``'s provider."""
    try:
        return ADAPTERS[server.provider]
    except KeyError:
        raise UnknownProvider(f"no provider adapter for {server.provider!r} "
                              f"(known: {', '.join(sorted(ADAPTERS))})") from None


__all__ = ["ADAPTERS", "ProviderAdapter", "UnknownProvider", "adapter"]
