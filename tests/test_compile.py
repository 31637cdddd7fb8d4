"""torch.compile'd env steps equal the eager ones (same seed, same actions)."""

import pytest
import torch

import fastmarl


# the fast tier keeps one compile, simple_crypto's, the cheapest
@pytest.mark.parametrize("env_id,kwargs", [
    pytest.param("simple_spread_v3", {}, marks=pytest.mark.slow),
    pytest.param("simple_tag_v3", {}, marks=pytest.mark.slow),
    pytest.param("simple_world_comm_v3", {}, marks=pytest.mark.slow),
    pytest.param("simple_speaker_listener_v4", {}, marks=pytest.mark.slow),
    ("simple_crypto_v3", {})])
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


# -- compile="aot": the step compiled ahead of time (AOTInductor) ------------------------------

def _run_pair(env_id: str, num_envs: int, steps: int = 25, **kwargs):
    eager = fastmarl.make(env_id, num_envs=num_envs, seed=3, max_cycles=10, **kwargs)
    aot = fastmarl.make(env_id, num_envs=num_envs, seed=3, max_cycles=10, compile="aot", **kwargs)
    eager.reset(seed=5), aot.reset(seed=5)
    gen = torch.Generator().manual_seed(0)
    resets = 0
    for _ in range(steps):
        acts = {g: torch.randint(0, s.action_dim, (num_envs, s.num_agents), generator=gen)
                for g, s in eager.spec.groups.items()}
        te, ta = eager.step(acts), aot.step(acts)
        for g in eager.spec.groups:
            torch.testing.assert_close(ta.obs[g], te.obs[g], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ta.final_obs[g], te.final_obs[g], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ta.reward[g], te.reward[g], rtol=1e-5, atol=1e-5)
        assert torch.equal(ta.truncated, te.truncated) and torch.equal(ta.terminated, te.terminated)
        torch.testing.assert_close(aot.state(), eager.state(), rtol=1e-5, atol=1e-5)
        resets += int(te.truncated.any())
    assert resets == steps // 10
    return aot


@pytest.fixture(scope="module")
def aot_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("aot_cache")
    mp.setenv("FASTMARL_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.mark.slow
def test_aot_step_matches_eager_env_innermost_layout(aot_cache):
    # 64 envs: state stored env-innermost (non-contiguous strides) inside the compiled library
    torch.set_num_threads(1)
    _run_pair("simple_tag_v3", 64)
    libs = list((aot_cache / "aot").glob("simple_tag_v3-*.pt2"))
    assert len(libs) == 1 and libs[0].with_suffix(".json").exists()
    # a second env with the same construction arguments loads the cached library and still matches
    _run_pair("simple_tag_v3", 64, steps=12)
    assert list((aot_cache / "aot").glob("simple_tag_v3-*.pt2")) == libs


@pytest.mark.slow
def test_aot_step_passes_through_unchanged_state(aot_cache):
    # simple_crypto's episode goal/key live in MPEState.extra and are returned unchanged by the
    # step (an aliasing output), and a reset can leave them as strided views
    torch.set_num_threads(1)
    env = _run_pair("simple_crypto_v3", 16)
    with pytest.raises(ValueError, match=r"actions\['eve'\] must have shape"):
        env._advance_fn(env._state, {g: torch.zeros(3, s.num_agents, dtype=torch.long)
                                     for g, s in env.spec.groups.items()})


def test_compile_value_validated():
    with pytest.raises(ValueError, match="compile must be"):
        fastmarl.make("simple_spread_v3", compile="inductor")


@pytest.mark.slow
def test_aot_damaged_cache_entry_is_rebuilt(aot_cache):
    torch.set_num_threads(1)
    _run_pair("simple_v3", 8, steps=2)
    lib = next((aot_cache / "aot").glob("simple_v3-*.pt2"))
    lib.write_bytes(b"not a library")
    with pytest.warns(UserWarning, match="rebuilding unreadable cache entry"):
        _run_pair("simple_v3", 8, steps=12)
    assert lib.stat().st_size > 1000
