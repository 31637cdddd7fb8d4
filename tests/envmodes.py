"""Action-mode keyword arguments for tests parametrized over every registered env."""

import pytest

import fastmarl


def action_mode_kwargs(env_id: str, continuous: bool) -> dict:
    """``continuous_actions=...`` for envs that offer both modes; {} (discrete only) for the others, whose
    continuous case is skipped."""
    try:
        fastmarl.make(env_id, continuous_actions=continuous)
    except TypeError as e:
        if "continuous_actions" not in str(e):
            raise
        if continuous:
            pytest.skip(f"{env_id} has no continuous_actions option")
        return {}
    return dict(continuous_actions=continuous)
