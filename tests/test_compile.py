"""torch.compile'd env steps equal the eager ones (same seed, same actions)."""

import pytest
import torch

import fastmarl


@pytest.mark.parametrize("env_id,kwargs", [("simple_spread_v3", {}), ("simple_tag_v3", {}), ("simple_world_comm_v3", {}),
                                           ("simple_speaker_listener_v4", {}), ("simple_crypto_v3", {})])
def test_compiled_step_matches_eager(env_id, kwargs):
    eager = fastmarl.make(env_id, num_envs=16, seed=3, max_cycles=10, **kwargs)
    comp = fastmarl.make(env_id, num_envs=16, seed=3, max_cycles=10, compile=True, **kwargs)
    te, tc = eager.reset(seed=5), comp.reset(seed=5)
    gen = torch.Generator().manual_seed(0)
    resets = 0
    for t in range(25):
        acts = {g: torch.randint(0, s.action_dim, (16, s.num_agents), generator=gen) for g, s in eager.spec.groups.items()}
        te, tc = eager.step(acts), comp.step(acts)
        for g in eager.spec.groups:
            torch.testing.assert_close(tc.obs[g], te.obs[g], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(tc.final_obs[g], te.final_obs[g], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(tc.reward[g], te.reward[g], rtol=1e-5, atol=1e-5)
        assert torch.equal(tc.truncated, te.truncated) and torch.equal(tc.terminated, te.terminated)
        resets += int(te.truncated.any())
        torch.testing.assert_close(comp.state(), eager.state(), rtol=1e-5, atol=1e-5)
    assert resets == 2
