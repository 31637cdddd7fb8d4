"""BroadcastChannel (fastmarl.envs.comm_wrappers): API conformance, combined
actions, delivery, range, link noise, episode ends; and learned communication
inside our PPO: unchanged PPO on a wrapped env, and PPO with a CommNet / TarMAC
actor (the integration proposed for ppo.py, applied here from the outside)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import fastmarl
from fastmarl.algos.ppo import PPO
from fastmarl.analysis.comm import instantaneous_coordination, message_ablation, zero_messages
from fastmarl.config import PPOConfig, TrainConfig, resolve
from fastmarl.envs import check_env
from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep, validate_actions
from fastmarl.envs.comm_wrappers import BroadcastChannel
from fastmarl.nn.comm import CommNet, TarMAC


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ReferentialGame:
    """A batched referential game: one group ``agent`` of two agents.

    Agent 0 (speaker) sees a target in [0, K) at the first step only; agent 1
    (listener) never sees it and must name it at the last step (``steps`` steps,
    then the episode terminates). Both get reward 1 when the listener's last
    action is the target, 0 otherwise. Observation: ``[target one-hot (K),
    step one-hot (steps + 1)]``. Agent 0's action means nothing: its action mask
    allows only action 0. ``state()``: target and step one-hots.
    """

    def __init__(self, num_envs: int = 8, K: int = 4, steps: int = 2, seed: int = 0):
        self.num_envs, self.K, self.steps, self.device = num_envs, K, steps, torch.device("cpu")
        obs = gym.spaces.Box(0.0, 1.0, (K + steps + 1,), np.float32)
        self.spec = EnvSpec("referential_v0", {"agent": GroupSpec("agent", ("agent_0", "agent_1"), obs,
                                                                  gym.spaces.Discrete(K))},
                            state_dim=K + steps + 1, max_episode_steps=steps, has_action_mask=True)
        self.gen = torch.Generator().manual_seed(seed)
        self.target = torch.zeros(num_envs, dtype=torch.long)
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.reset(seed)

    def _obs(self, target, t):
        E = target.shape[0]
        obs = torch.zeros(E, 2, self.K + self.steps + 1)
        obs[:, 0, : self.K] = torch.nn.functional.one_hot(target, self.K) * (t == 0)[:, None]
        obs[:, :, self.K:] = torch.nn.functional.one_hot(t, self.steps + 1)[:, None].float()
        return {"agent": obs}

    def _mask(self):
        m = torch.ones(self.num_envs, 2, self.K, dtype=torch.bool)
        m[:, 0, 1:] = False
        return {"agent": m}

    def reset(self, seed=None, mask=None):
        if seed is not None:
            self.gen.manual_seed(seed)
        mask = torch.ones(self.num_envs, dtype=torch.bool) if mask is None else mask
        new = torch.randint(0, self.K, (self.num_envs,), generator=self.gen)
        self.target = torch.where(mask, new, self.target)
        self.t = torch.where(mask, 0, self.t)
        obs = self._obs(self.target, self.t)
        f = torch.zeros(self.num_envs, dtype=torch.bool)
        return TimeStep(obs=obs, reward={"agent": torch.zeros(self.num_envs, 2)}, terminated=f, truncated=f.clone(),
                        final_obs=obs, action_mask=self._mask())

    def step(self, actions):
        validate_actions(self.spec, actions, self.num_envs, self.device)
        a = actions["agent"]
        self.t = self.t + 1
        last = self.t == self.steps
        r = (last & (a[:, 1] == self.target)).float()[:, None].expand(-1, 2).clone()
        obs = final = self._obs(self.target, self.t)
        final_state = None
        if bool(last.any()):
            final_state = self.state()
            self.reset(mask=last)
            obs = self._obs(self.target, self.t)
        return TimeStep(obs=obs, reward={"agent": r}, terminated=last, truncated=torch.zeros_like(last),
                        final_obs=final, final_state=final_state, action_mask=self._mask())

    def state(self):
        return torch.cat([torch.nn.functional.one_hot(self.target, self.K).float(),
                          torch.nn.functional.one_hot(self.t, self.steps + 1).float()], -1)

    def render(self, env_index=0):
        return np.zeros((8, 8, 3), np.uint8)


# -- conformance ------------------------------------------------------------------

@pytest.mark.parametrize("env_id,kw", [
    ("simple_spread_v3", dict()),
    ("simple_spread_v3", dict(message_length=2, comm_range=0.8, flip_prob=0.1, drop_prob=0.2)),
    ("simple_speaker_listener_v4", dict(vocab_size=3, speakers=["listener"])),
    ("simple_tag_v3", dict(comm_range=1.0)),
])
def test_check_env_on_mpe(env_id, kw):
    env = BroadcastChannel(fastmarl.make(env_id, num_envs=4, seed=0, max_cycles=6), **kw)
    check_env(env, steps=15)


def test_check_env_with_action_masks():
    env = BroadcastChannel(ReferentialGame(6, K=3, steps=2), vocab_size=2, message_length=2)
    check_env(env, steps=10)
    assert env.spec.groups["agent"].action_space == gym.spaces.Discrete(3 * 4)
    ts = env.reset(seed=0)
    m = ts.action_mask["agent"]
    assert m.shape == (6, 2, 12)
    # combined action a = move + 3 * message is allowed iff the move is: agent 0 only moves 0, with any message
    assert m[:, 0].nonzero()[:, 1].unique().tolist() == [0, 3, 6, 9]
    assert m[:, 1].all()


def test_spaces_and_errors():
    inner = fastmarl.make("simple_speaker_listener_v4", num_envs=2, seed=0)
    env = BroadcastChannel(inner, vocab_size=2, message_length=3)  # both groups speak 3 bits
    assert env.num_messages == 8 and env.message_dim == 6
    assert env.spec.groups["speaker"].action_space == gym.spaces.Discrete(3 * 8)
    assert env.spec.groups["listener"].action_space == gym.spaces.Discrete(5 * 8)
    assert env.spec.groups["speaker"].obs_dim == 3 + 6 and env.spec.groups["listener"].obs_dim == 11 + 6
    assert env.spec.state_dim == inner.spec.state_dim + 2 * 6
    assert env.slot_senders("speaker").tolist() == [[1]] and env.slot_senders("listener").tolist() == [[0]]
    assert env.message_features("listener") == slice(11, 17)
    with pytest.raises(ValueError, match="Box"):
        BroadcastChannel(fastmarl.make("simple_spread_v3", num_envs=2, continuous_actions=True), speakers=["agent"])
    with pytest.raises(ValueError, match="positions"):
        BroadcastChannel(ReferentialGame(2), comm_range=1.0)
    with pytest.raises(ValueError, match="unknown group of referential_v0 in speakers: 'speaker'"):
        BroadcastChannel(ReferentialGame(2), speakers=["speaker"])


# -- delivery ---------------------------------------------------------------------

def test_messages_arrive_next_step_and_moves_pass_through():
    """The wrapped env sees exactly the moves; every agent's observation gains the
    others' messages of the previous step, one-hot, in agent order."""
    E, N = 5, 3
    env = BroadcastChannel(fastmarl.make("simple_spread_v3", num_envs=E, seed=1, N=N), vocab_size=2,
                           message_length=2)
    twin = fastmarl.make("simple_spread_v3", num_envs=E, seed=1, N=N)
    ts, tw = env.reset(seed=3), twin.reset(seed=3)
    inner_dim = twin.spec.groups["agent"].obs_dim
    assert (ts.obs["agent"][..., inner_dim:] == 0).all()  # an episode starts silent
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        moves = torch.randint(0, 5, (E, N), generator=g)
        msgs = torch.randint(0, 4, (E, N), generator=g)
        actions = env.encode({"agent": moves}, {"agent": msgs})
        assert torch.equal(env.decode(actions)[0]["agent"], moves)
        ts, tw = env.step(actions), twin.step({"agent": moves})
        assert torch.equal(ts.obs["agent"][..., :inner_dim], tw.obs["agent"])
        assert torch.equal(ts.reward["agent"], tw.reward["agent"])
        assert torch.equal(ts.info["messages"]["agent"], msgs)
        heard = ts.obs["agent"][..., env.message_features("agent")].unflatten(-1, (N - 1, 2, 2))  # slot, bit, value
        bits = torch.stack([msgs % 2, msgs // 2], -1)  # digit 0 is the least significant
        others = torch.tensor([[1, 2], [0, 2], [0, 1]])
        assert torch.equal(heard.argmax(-1), bits[:, others])
        assert torch.equal(heard.sum(-1), torch.ones(E, N, N - 1, 2))
        sent = torch.nn.functional.one_hot(bits, 2).float().flatten(1)
        assert torch.equal(env.state(), torch.cat([twin.state(), sent], -1))


def test_range_limited_delivery_uses_positions_when_said():
    env = BroadcastChannel(fastmarl.make("simple_spread_v3", num_envs=2, seed=0, N=3), vocab_size=2,
                           comm_range=1.0)
    env.reset(seed=0)
    inner = env.env
    s = inner.world_state
    pos = s.pos.clone()
    pos[0, :3] = torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.5, 0.0]])  # env 0: 0-1 close, 2 far away
    pos[1, :3] = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]])  # env 1: all close
    inner.set_world_state(s._replace(pos=pos, vel=torch.zeros_like(s.vel)))
    stay, say_one = torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)
    ts = env.step(env.encode({"agent": stay}, {"agent": say_one}))
    heard = ts.obs["agent"][..., env.message_features("agent")].unflatten(-1, (2, 2)).sum(-1)  # (E, A, slot)
    assert heard[0].tolist() == [[1, 0], [1, 0], [0, 0]]  # slots: the others in order
    assert heard[1].tolist() == [[1, 1], [1, 1], [1, 1]]


def test_link_noise_rates_and_determinism():
    E = 3000

    def one_step(seed, **kw):
        env = BroadcastChannel(fastmarl.make("simple_spread_v3", num_envs=E, seed=0, N=3), vocab_size=2, **kw)
        env.reset(seed=seed)
        msgs = torch.randint(0, 2, (E, 3), generator=torch.Generator().manual_seed(1))
        ts = env.step(env.encode({"agent": torch.zeros(E, 3, dtype=torch.long)}, {"agent": msgs}))
        return msgs, ts.obs["agent"][..., env.message_features("agent")].unflatten(-1, (2, 2))

    msgs, heard = one_step(0, drop_prob=0.3)
    assert abs((heard.sum(-1) == 0).float().mean().item() - 0.3) < 0.02
    msgs, heard = one_step(0, flip_prob=1.0)
    others = torch.tensor([[1, 2], [0, 2], [0, 1]])
    assert torch.equal(heard.argmax(-1), 1 - msgs[:, others])
    msgs, heard = one_step(0, flip_prob=0.25)
    assert abs((heard.argmax(-1) != msgs[:, others]).float().mean().item() - 0.25) < 0.02
    # the noise stream is fixed by reset(seed)
    assert torch.equal(one_step(5, flip_prob=0.5, drop_prob=0.5)[1], one_step(5, flip_prob=0.5, drop_prob=0.5)[1])
    assert not torch.equal(one_step(5, flip_prob=0.5)[1], one_step(6, flip_prob=0.5)[1])


def test_episode_end_partial_reset_and_ablation_transform():
    E = 4
    env = BroadcastChannel(ReferentialGame(E, K=3, steps=2), vocab_size=3)
    sl = env.message_features("agent")
    env.reset(seed=0)
    msgs = torch.tensor([[1, 2]] * E)
    ts = env.step(env.encode({"agent": torch.zeros(E, 2, dtype=torch.long)}, {"agent": msgs}))
    assert ts.obs["agent"][:, 1, sl].argmax(-1).tolist() == [1] * E  # the listener hears symbol 1
    assert ts.final_obs["agent"] is ts.obs["agent"]  # no episode ended
    ts2 = env.step(env.encode({"agent": torch.zeros(E, 2, dtype=torch.long)}, {"agent": msgs.flip(-1)}))
    assert ts2.terminated.all()
    assert (ts2.obs["agent"][..., sl] == 0).all()  # the new episode starts silent...
    assert ts2.final_obs["agent"][:, 1, sl].argmax(-1).tolist() == [2] * E  # ...the ended one kept its messages
    sent = torch.nn.functional.one_hot(msgs.flip(-1), 3).float().flatten(1)
    assert torch.equal(ts2.final_state[:, -6:], sent)
    assert (env.state()[:, -6:] == 0).all()
    # partial reset silences only the masked envs
    env.step(env.encode({"agent": torch.zeros(E, 2, dtype=torch.long)}, {"agent": msgs}))
    mask = torch.tensor([True, False, False, True])
    ts3 = env.reset(mask=mask)
    heard = ts3.obs["agent"][..., sl].sum((-1, -2))
    assert heard.tolist() == [0, 2, 2, 0]
    # an ablation transform sees the sent one-hot messages (E, S, L, V)
    env.message_transform = zero_messages
    ts4 = env.step(env.encode({"agent": torch.zeros(E, 2, dtype=torch.long)}, {"agent": msgs}))
    assert (ts4.obs["agent"][..., sl] == 0).all()


def test_state_dict_roundtrip():
    env = BroadcastChannel(fastmarl.make("simple_spread_v3", num_envs=3, seed=0), flip_prob=0.3)
    env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    act = lambda: {"agent": torch.randint(0, 10, (3, 3), generator=g)}  # noqa: E731
    env.step(act())
    saved = env.state_dict()
    a1, a2 = act(), act()
    ref = [env.step(a1).obs["agent"], env.step(a2).obs["agent"]]
    env.load_state_dict(saved)
    assert torch.equal(env.step(a1).obs["agent"], ref[0]) and torch.equal(env.step(a2).obs["agent"], ref[1])


# -- learning inside our PPO ---------------------------------------------------------

def _ppo(env, iters: int, seed: int = 0, ppo_kw=None, patch=None) -> tuple[PPO, float]:
    cfg = TrainConfig(algo="mappo", env="referential", num_envs=env.num_envs, seed=seed,
                      total_steps=iters * env.num_envs * 8,
                      ppo=PPOConfig(**{**dict(num_steps=8, num_epochs=4, num_minibatches=4, hidden_size=32),
                                       **(ppo_kw or {})}))
    derived = resolve(cfg, env.spec)
    torch.manual_seed(seed)
    algo = PPO(env.spec, cfg, derived)
    if patch is not None:
        patch(algo)
    algo.start(env.reset(seed=seed))
    for it in range(iters):
        algo.collect(env)
        algo.update(it / iters)
    return algo, listener_success(algo, env)


def listener_success(algo: PPO, env, episodes: int = 2) -> float:
    """Greedy success rate: the reward at the last step of each episode."""
    ts = env.reset(seed=123)
    carry = algo.initial_carry(env.num_envs)
    rewards = []
    steps = env.spec.max_episode_steps
    for _ in range(episodes * steps):
        actions, carry = algo.act(ts, carry, deterministic=True)
        ts = env.step(actions)
        if bool(ts.terminated.all()):
            rewards.append(ts.reward["agent"][:, 1])
    return torch.cat(rewards).mean().item()


@pytest.mark.slow
def test_unchanged_ppo_learns_to_talk_through_the_wrapper():
    """MAPPO, unchanged, on the two-step referential game with a 3-bit broadcast
    channel: the speaker's message at step 0 is the listener's only route to the
    target. Without the channel the best is chance, 1/4. The learned protocol
    carries information and the return depends on it (message ablation)."""
    K = 4
    env = BroadcastChannel(ReferentialGame(64, K=K, steps=2), vocab_size=2, message_length=3)
    algo, success = _ppo(env, iters=80, ppo_kw=dict(num_epochs=8, ent_coef=0.03))
    # measured: 1.0 for seeds 0-7; a run that merges two targets on one message
    # (a known local optimum of referential games) would score 0.75, still 3x chance
    assert success > 0.65, success

    def evaluate(transform):
        env.message_transform = transform
        try:
            return listener_success(algo, env)
        finally:
            env.message_transform = None

    out = message_ablation(evaluate)
    assert out["intact"] == success
    for name in ("zeroed", "shuffled", "random"):
        assert out[name] < 0.45, out
    # rollout measures on the learned protocol: the speaker's message at step 0
    # predicts the listener's action at step 1 (log 4 = 1.39 nats when all four
    # targets are told apart; measured 1.35); nothing flows the other way (the
    # speaker's action is masked to a constant)
    ts, carry = env.reset(seed=5), algo.initial_carry(env.num_envs)
    messages, moves, dones = [], [], []
    for _ in range(40):
        actions, carry = algo.act(ts, carry)
        ts = env.step(actions)
        messages.append(ts.info["messages"]["agent"])
        moves.append(env.decode(actions)[0]["agent"])
        dones.append(ts.done)
    ic = instantaneous_coordination(torch.stack(messages), torch.stack(moves), lag=1, dones=torch.stack(dones))
    assert ic[0, 1] > 0.7 and abs(ic[1, 0]) < 0.01, ic


def _insert_comm(kind: str):
    """Applies, from outside, what the proposed ppo.py change does: the actor's
    features go through a communication module before the head,
    ``f = comm(actor_body(x))``; the optimizer is rebuilt to include it."""
    def patch(algo: PPO):
        for name, net in algo.nets.items():
            H = net.actor_body.out_features
            comm = CommNet(H, rounds=1) if kind == "commnet" else TarMAC(H, key_dim=8, rounds=1)
            net.actor_body = nn.Sequential(net.actor_body, comm)
            algo.optimizers[name] = torch.optim.Adam(net.parameters(), lr=algo.p.lr, eps=1e-5)
            assert any(p is comm.layers[0].weight if kind == "commnet" else p is comm.emit[0].weight
                       for p in net.actor_parameters())
    return patch


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["commnet", "tarmac"])
def test_ppo_with_a_communicating_actor(kind):
    """One-step referential game, no channel in the env: only a communicating
    actor (CommNet or TarMAC between the agents' hidden states) can succeed.
    The plain actor stays at chance."""
    env = ReferentialGame(64, K=4, steps=1)
    _, success = _ppo(env, iters=30, patch=_insert_comm(kind))
    assert success > 0.9, (kind, success)


@pytest.mark.slow
def test_ppo_without_communication_stays_at_chance():
    env = ReferentialGame(64, K=4, steps=1)
    _, success = _ppo(env, iters=30)
    assert success < 0.4, success
