"""Episode replay buffer: whole episodes from an auto-reset stream, padding masks,
the ring, chunking of long episodes, uniform sampling of whole episodes."""

from __future__ import annotations

import pytest
import torch

from fastmarl.algos.replay import EpisodeBuffer


def _buffer(capacity=10, max_len=4, num_envs=2):
    return EpisodeBuffer(capacity, max_len, num_envs,
                         step_fields={"action": ((), torch.long), "reward": ((2,), torch.float32)},
                         obs_fields={"obs": ((1,), torch.float32)})


def _feed(buf, lengths_per_env, steps):
    """Env e has episodes of length lengths_per_env[e]; obs = 100 * episode + t, action = t,
    reward = (t, -t). Returns the expected episodes, in commit order."""
    E = len(lengths_per_env)
    t = torch.zeros(E, dtype=torch.long)
    ep = torch.arange(E) * 1000  # episode ids per env
    expected = []
    for _ in range(steps):
        L = torch.tensor(lengths_per_env)
        obs = (100 * ep + t).float()[:, None]
        done = t + 1 >= L
        next_obs = (100 * ep + t + 1).float()[:, None]  # final obs for ended envs
        buf.add({"obs": obs}, {"action": t.clone(), "reward": torch.stack([t, -t], -1).float()},
                {"obs": next_obs}, done)
        for e in torch.nonzero(done).reshape(-1).tolist():
            expected.append((int(ep[e]), int(L[e])))
        t = torch.where(done, 0, t + 1)
        ep = torch.where(done, ep + 1, ep)
    return expected


def test_whole_episodes_with_padding_masks():
    buf = _buffer()
    expected = _feed(buf, [2, 3], steps=6)  # env 0: 3 episodes of 2; env 1: 2 episodes of 3
    assert len(buf) == 5 == len(expected)
    # commit order: step 2 -> env0 ep0; step 3 -> env1 ep1000; step 4 -> env0 ep1; step 6 -> both
    assert [e for e, _ in expected] == [0, 1000, 1, 2, 1001]
    batch = buf.gather(torch.arange(5), trim=False)
    assert batch["obs"].shape == (5, 5, 1) and batch["action"].shape == (5, 4) and batch["reward"].shape == (5, 4, 2)
    for i, (ep, L) in enumerate(expected):
        assert batch["length"][i].item() == L
        assert batch["filled"][i].tolist() == [True] * L + [False] * (4 - L)
        assert batch["obs"][i, :L + 1, 0].tolist() == [100 * ep + t for t in range(L + 1)]  # incl. final obs
        assert batch["action"][i, :L].tolist() == list(range(L))
        assert batch["reward"][i, :L, 1].tolist() == [-float(t) for t in range(L)]
        # padded steps are zero
        assert batch["obs"][i, L + 1:].abs().sum() == 0 and batch["action"][i, L:].abs().sum() == 0
        assert batch["chunk_start"][i].item()


def test_trimmed_sampling_returns_whole_stored_episodes():
    buf = _buffer(capacity=50)
    _feed(buf, [1, 3], steps=30)
    stored = {tuple(buf.data["obs"][i, : buf.length[i] + 1, 0].tolist()) for i in range(len(buf))}
    g = torch.Generator().manual_seed(0)
    batch = buf.sample(400, g)
    assert batch["obs"].shape[1] == 4 and batch["action"].shape[1] == 3  # trimmed to the longest sampled (3)
    lengths = batch["length"].tolist()
    for i in range(400):
        assert tuple(batch["obs"][i, : lengths[i] + 1, 0].tolist()) in stored
    # uniform over stored episodes: env 0 committed 30 episodes of length 1, env 1 ten of length 3
    frac_long = sum(1 for x in lengths if x == 3) / 400
    assert frac_long == pytest.approx(10 / 40, abs=0.07)


def test_ring_overwrites_oldest():
    buf = _buffer(capacity=3, num_envs=1)
    expected = _feed(buf, [2], steps=10)  # 5 episodes into 3 slots
    assert len(buf) == 3 and buf.episodes_added == 5
    first_obs = sorted(buf.data["obs"][:, 0, 0].tolist())
    assert first_obs == [100 * e for e, _ in expected[-3:]]


def test_long_episodes_are_chunked():
    buf = _buffer(capacity=10, max_len=4, num_envs=1)
    _feed(buf, [10], steps=10)  # one episode of 10 steps -> chunks of 4, 4, 2
    assert len(buf) == 3
    b = buf.gather(torch.arange(3), trim=False)
    assert b["length"].tolist() == [4, 4, 2]
    assert b["chunk_start"].tolist() == [True, False, False]
    assert b["obs"][0, :, 0].tolist() == [0, 1, 2, 3, 4]  # the last entry is the next chunk's first obs
    assert b["obs"][1, :, 0].tolist() == [4, 5, 6, 7, 8]
    assert b["obs"][2, :3, 0].tolist() == [8, 9, 10] and b["filled"][2].tolist() == [True, True, False, False]
    assert b["action"][1].tolist() == [4, 5, 6, 7]


def test_more_finished_episodes_than_capacity_in_one_step():
    buf = _buffer(capacity=2, max_len=2, num_envs=5)
    _feed(buf, [1] * 5, steps=1)
    assert len(buf) == 2 and buf.episodes_added == 2
    assert sorted(buf.data["obs"][:, 0, 0].tolist()) == [300000.0, 400000.0]  # the last two envs' episodes
    assert buf._t.tolist() == [0] * 5  # every env starts over


def test_errors():
    with pytest.raises(RuntimeError, match="empty"):
        _buffer().sample(4)
    with pytest.raises(ValueError, match="unique"):
        EpisodeBuffer(4, 4, 1, {"x": ((), torch.float32)}, {"x": ((), torch.float32)})


def test_sample_steps_draws_every_stored_transition_uniformly():
    """Episodes of lengths 1 and 3 (env 0 / env 1): a transition of either is equally likely, so the
    short episodes' single step is drawn as often as each step of the long ones; every draw pairs
    the step with its own next observation (the final one at the episode's end)."""
    buf = _buffer(capacity=50)
    _feed(buf, [1, 3], steps=30)  # 30 one-step episodes, 10 three-step ones: 60 transitions
    assert int(buf.length[:buf.size].sum()) == 60
    gen = torch.Generator().manual_seed(0)
    b = buf.sample_steps(60_000, gen)
    assert b["obs"].shape == (60_000, 2, 1) and b["action"].shape == (60_000,) and b["reward"].shape == (60_000, 2)
    # obs = 100 * episode + t, action = t: the pair is (obs at t, obs at t + 1) of one episode
    torch.testing.assert_close(b["obs"][:, 1, 0] - b["obs"][:, 0, 0], torch.ones(60_000))
    assert torch.equal(b["obs"][:, 0, 0].long() % 100, b["action"])
    assert torch.equal(b["reward"][:, 0].long(), b["action"])
    # half the stored steps are the short episodes' (t = 0 of length 1: obs id < 1000 * 1 means env 0)
    short = (b["obs"][:, 0, 0] < 100_000).float().mean().item()
    assert abs(short - 0.5) < 0.01
    t = b["action"][b["obs"][:, 0, 0] >= 100_000]
    counts = torch.bincount(t, minlength=3).float() / t.numel()
    torch.testing.assert_close(counts, torch.full((3,), 1 / 3), atol=0.01, rtol=0)
    with pytest.raises(RuntimeError, match="empty"):
        _buffer().sample_steps(1)
