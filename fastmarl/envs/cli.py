"""``fastmarl envs``: list the registered environments and their groups."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fastmarl.envs.registry import list_envs, make


def main(argv: list[str] | None = None) -> int:
    table = Table(title="fastmarl environments")
    for col in ("env id", "family", "groups (agents)", "obs / action", "description"):
        table.add_column(col)
    for e in list_envs():
        env = make(e.env_id, num_envs=1)
        groups = ", ".join(f"{g.name} ({g.num_agents})" for g in env.spec.groups.values())
        spaces = "; ".join(f"{g.obs_dim} / {g.action_space}" for g in env.spec.groups.values())
        table.add_row(e.env_id, e.family, groups, spaces, e.description)
    Console().print(table)
    return 0
