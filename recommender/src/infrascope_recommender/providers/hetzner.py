"""Hetzner: Cloud servers (``hcloud`` CLI) and dedicated Robot servers.

What only Hetzner's catalogue and tools know: a Cloud server's type changes in place
(``hcloud server change-type``, powered off), the primary disk can grow but never
shrink, a dedicated server cannot change type but can move onto a new Cloud server and
is cancelled in Robot, backups cost 20 % of the server price unless the project says
otherwise, and a primary IP can be moved between servers.
"""

from __future__ import annotations

import shlex
from decimal import Decimal

from ..model import Server, Source


def _q(text: str) -> str:
    return shlex.quote(text)


class HetznerAdapter:
    """The Hetzner adapter (see :class:`~infrascope_recommender.providers.ProviderAdapter`)."""

    name = "hetzner"
    default_image = "ubuntu-24.04"
    #: ``server_backup.percentage`` of the Cloud pricing has been 20 for years.
    default_backup_ratio = Decimal("0.2")
    #: Hetzner cannot shrink a disk (nor restore a snapshot onto a smaller one).
    disk_can_shrink = False

    def resizable_in_place(self, server: Server) -> bool:
        return server.source == "cloud"

    def deletable(self, server: Server) -> bool:
        return server.source == "cloud"

    def migration_source(self, server: Server) -> Source | None:
        return "cloud" if server.source == "dedicated" else None

    def change_type_commands(self, server: Server, target: str, keep_disk: bool) -> list[str]:
        flag = "--keep-disk " if keep_disk else ""
        return [f"hcloud server shutdown --wait {_q(server.name)}",
                f"hcloud server change-type {flag}{_q(server.name)} {_q(target)}",
                f"hcloud server poweron {_q(server.name)}"]

    def snapshot_command(self, server: Server, why: str) -> str:
        return (f"hcloud server create-image --type snapshot --description "
                f"{_q(f'{server.name} {why}')} {_q(server.name)}")

    def delete_command(self, server: Server) -> str:
        return f"hcloud server delete {_q(server.name)}"

    def create_command(self, name: str, server_type: str, location: str, image: str) -> str:
        return (f"hcloud server create --name {_q(name)} --type {_q(server_type)} "
                f"--location {_q(location)} --image {_q(image or self.default_image)}")

    def cancel_command(self, server: Server) -> str:
        return f"# cancel server {server.key.server_id} in Robot (Server → Cancellation)"

    def catalogue_hint(self) -> str:
        return "hetzner_server_type_* series missing or nothing available there"

    def unpriced_hint(self) -> str:
        return ("hetzner_server_monthly_cost_euros missing, e.g. an auction server without a "
                "configured price")

    def move_address_hint(self) -> str:
        return "hcloud primary-ip unassign / assign"
