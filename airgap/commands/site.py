"""`airgap site ...`: what a disconnected site holds, its inventory, and removing what a bundle brought."""

from __future__ import annotations

import click


@click.group("site")
def site_group() -> None:
    """The disconnected site: loaded bundles, their trust, and the inventory for delta bundles."""


def register(cli: click.Group) -> None:
    cli.add_command(site_group)
