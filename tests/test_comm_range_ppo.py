"""Range-limited topology for PPO's learned communication (``comm_range`` with ``ppo.comm``):
who influences whom, the masks stored in the rollout, the update's replay, config errors, the CLI."""

import json

import pytest
import torch

import fastmarl
from fastmarl.algos.actor_critic import logp_entropy
from fastmarl.algos.ppo import PPO
from fastmarl.config import ConfigError, PPOConfig, TrainConfig, resolve
from fastmarl.envs.api import TimeStep
from fastmarl.envs.comm import range_mask
from fastmarl.envs.comm_wrappers import AgentPositions


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ppo(env, comm="commnet", comm_range=0.3, rounds=2, **ppo_kw):
    cfg = TrainConfig(env="simple_spread_v3", num_envs=env.num_envs, total_steps=env.num_envs * 8,
                      comm_range=comm_range,
                      ppo=PPOConfig(comm=comm, comm_rounds=rounds, num_steps=8, num_minibatches=1, **ppo_kw))
    return PPO(env.spec, cfg, resolve(cfg, env.spec))


def _placed_timestep(env: AgentPositions, agent_pos: list[list[float]]) -> TimeStep:
    """Put simple_spread's agents at ``agent_pos`` (A, 2) in env 0; the TimeStep an actor sees there."""
    inner = env.env
    s = inner.world_state
    pos = s.pos.clone()
    pos[0, : len(agent_pos)] = torch.tensor(agent_pos)
    inner.set_world_state(s._replace(pos=pos, vel=torch.zeros_like(s.vel)))
    obs = inner.scenario.observations(inner.world, inner.world_state)
    E = env.num_envs
    return TimeStep(obs=obs, reward={}, terminated=torch.zeros(E, dtype=torch.bool),
                    truncated=torch.zeros(E, dtype=torch.bool), final_obs=obs,
                    info={"positions": env.group_positions()})


def _logits(ppo: PPO, ts: TimeStep) -> torch.Tensor:
    net = ppo.nets["agent"]
    torch.manual_seed(0)  # dial draws its message noise from the global generator: the same in every call
    out, _ = net.actor_step(net.actor_input(ts.obs["agent"]), None, ts.done, comm_mask=ppo.comm_mask(ts, "agent"))
    return out[0]  # (A, n_actions) of env 0


@pytest.mark.parametrize("comm", ["commnet", "tarmac", "dial"])
def test_far_agent_cannot_influence_logits_but_near_agent_can(comm):
    env = AgentPositions(fastmarl.make("simple_spread_v3", num_envs=1, seed=0))
    ppo = _ppo(env, comm)  # radius 0.3, 2 rounds: agent 2 (1.5 away) is out of reach of 0 and 1 even in 2 hops
    ts = _placed_timestep(env, [[0.0, 0.0], [0.2, 0.0], [1.5, 0.0]])
    # simple_spread observations hold the agent's own position at features 2:4: the reported positions are those
    assert torch.equal(ts.info["positions"]["agent"], ts.obs["agent"][..., 2:4])
    mask = ppo.comm_mask(ts, "agent")[0]
    assert mask.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    base = _logits(ppo, ts)

    def perturbed(agent: int) -> torch.Tensor:
        obs = ts.obs["agent"].clone()
        obs[0, agent, 4:] += torch.randn(obs.shape[-1] - 4)  # its view of landmarks / others, not its position
        return _logits(ppo, TimeStep(**{**ts.__dict__, "obs": {"agent": obs}}))

    far, near = perturbed(2), perturbed(1)
    assert torch.equal(far[:2], base[:2])  # agents 0 and 1 never hear agent 2
    assert not torch.equal(far[2], base[2])  # agent 2's own logits do change
    if comm != "dial":  # continuous features: a perturbation reaches agent 0 through the link 1 -> 0
        assert (near[0] - base[0]).abs().max() > 1e-7  # (dial: the next test flips the message itself)
        # the control: all-to-all (no radius), agent 2's observation does reach agent 0
        ppo.ranged_groups = []
        assert (perturbed(2)[0] - _logits(ppo, ts)[0]).abs().max() > 1e-7


def test_dial_near_speakers_message_reaches_the_listener():
    """DIAL's messages are discrete, so a random nudge may leave them unchanged: flip
    the near agent's message directly and watch the listener's logits move."""
    env = AgentPositions(fastmarl.make("simple_spread_v3", num_envs=1, seed=0))
    ppo = _ppo(env, "dial", rounds=1)
    ts = _placed_timestep(env, [[0.0, 0.0], [0.2, 0.0], [1.5, 0.0]])
    net = ppo.nets["agent"]
    x = net.actor_input(ts.obs["agent"])
    mask = ppo.comm_mask(ts, "agent")
    noise = net.actor_comm.sample_noise(1, generator=torch.Generator().manual_seed(0))

    def logits_with(transform):
        out, _ = net.actor_step(x, None, ts.done, comm_noise=noise, message_transform=transform, comm_mask=mask)
        return out[0]

    base = logits_with(None)

    def flip(agent):
        def t(onehot):
            onehot = onehot.clone()
            onehot[:, agent] = onehot[:, agent].flip(-1)
            return onehot
        return t

    assert torch.equal(logits_with(flip(2))[:2], base[:2])  # out of range: unheard
    assert (logits_with(flip(1))[0] - base[0]).abs().max() > 1e-7  # in range: heard


@pytest.mark.parametrize("comm,recurrent", [("commnet", False), ("tarmac", True), ("dial", False)])
def test_rollout_stores_the_range_masks_and_the_update_replays_them(comm, recurrent):
    env = AgentPositions(fastmarl.make("simple_spread_v3", num_envs=4, seed=3))
    ppo = _ppo(env, comm, comm_range=0.8, rounds=1, recurrent=recurrent)
    ts = env.reset(seed=3)
    positions = [ts.info["positions"]["agent"]]
    ppo.start(ts)
    ppo.collect(env, on_step=lambda ts: positions.append(ts.info["positions"]["agent"]))
    b = ppo.buffer
    stored = b.comm_mask["agent"]
    assert stored.shape == (8, 4, 3, 3) and stored.dtype == torch.bool
    for t in range(8):  # step t acted on the positions of the TimeStep before it
        pos = positions[t]
        by_hand = torch.cdist(pos.double(), pos.double()) <= 0.8
        assert torch.equal(stored[t], by_hand)
        assert torch.equal(stored[t], range_mask(pos, 0.8))
    assert stored.any() and not stored.all()  # the radius cuts some links and keeps others

    # the update's forward, with the stored masks, gives back the rollout's log-probabilities: ratio 1
    net = ppo.nets["agent"]
    noise = b.comm_noise.get("agent")
    with torch.no_grad():
        if recurrent:
            out = net.actor_seq(net.actor_input(b.obs["agent"]), b.h0["agent"][0], b.starts, noise, stored)
            out_open = net.actor_seq(net.actor_input(b.obs["agent"]), b.h0["agent"][0], b.starts, noise, None)
        else:
            out = net.actor_seq(net.actor_input(b.obs["agent"]), None, None, noise, stored)
            out_open = net.actor_seq(net.actor_input(b.obs["agent"]), None, None, noise, None)
    new_logp, _ = logp_entropy(out, net.log_std, None, b.actions["agent"])
    open_logp, _ = logp_entropy(out_open, net.log_std, None, b.actions["agent"])
    torch.testing.assert_close(new_logp, b.logp["agent"], rtol=0, atol=1e-5)
    assert (open_logp - b.logp["agent"]).abs().max() > 1e-6  # all-to-all would not reproduce them
    idx = torch.arange(4) if recurrent else torch.arange(32)
    with torch.no_grad():
        adv, ret = ppo.advantages("agent")
        losses = ppo._minibatch_loss("agent", net, idx, (adv, ret, b.values["agent"]))
    assert abs(losses["approx_kl"].item()) < 1e-6 and losses["clipfrac"].item() == 0.0
    ppo.update(0.0)  # and the update runs with them


def test_comm_mask_needs_positions_in_the_timestep():
    env = fastmarl.make("simple_spread_v3", num_envs=2, seed=0)  # not wrapped: no positions
    ppo = _ppo(env)
    ts = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"AgentPositions"):
        ppo.act(ts, {})


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"not an MPE env"):
        fastmarl.train(TrainConfig(env="traffic_grid_v0", comm_range=0.5, ppo=PPOConfig(comm="commnet"),
                                   runs_dir=str(tmp_path), progress=False))
    assert not any(tmp_path.iterdir())  # nothing written
    spec = fastmarl.make("simple_spread_v3", num_envs=1).spec
    with pytest.raises(ConfigError, match=r"no channel is on"):
        resolve(TrainConfig(comm_range=0.5), spec)
    for bad in (0.0, -1.0, True):
        with pytest.raises(ConfigError, match=r"comm_range must be a positive distance"):
            resolve(TrainConfig(comm_range=bad, ppo=PPOConfig(comm="tarmac")), spec)
    resolve(TrainConfig(comm_range=0.5, ppo=PPOConfig(comm="tarmac")), spec)  # learned comm alone is enough


def test_cli_run_with_range_limited_commnet(tmp_path, capsys):
    from fastmarl.cli import main
    from fastmarl.train.runner import evaluate_run, load_run

    argv = ["train", "--env", "simple_spread_v3", "--comm", "commnet", "--comm-range", "0.5",
            "--total-steps", "400", "--num-envs", "8", "--num-steps", "25", "--num-minibatches", "2",
            "--runs-dir", str(tmp_path), "--name", "ranged", "--eval-episodes", "2", "--no-gif",
            "--no-tensorboard", "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    run = tmp_path / "ranged"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["comm_range"] == 0.5 and cfg["ppo"]["comm"] == "commnet" and cfg["message_bits"] == 0
    algo, _, env, _ = load_run(run, num_envs=2)  # evaluation sees the same topology
    assert isinstance(env, AgentPositions) and algo.ranged_groups == ["agent"]
    ts = env.reset(seed=0)
    assert algo.comm_mask(ts, "agent").shape == (2, 3, 3)
    res = evaluate_run(run, episodes=2)
    assert -200 < res["return_det"] < 0


def test_resume_with_range_limited_comm_equals_an_uninterrupted_run(tmp_path):
    """The TimeStep's positions are part of the trainer state: a resumed run acts on the same masks."""
    from crash import Crash, crash_after
    from safetensors.torch import load_file

    from fastmarl.train.checkpoint import latest_checkpoint

    def cfg(name):  # 4 iterations of 8 envs x 10 steps, a checkpoint every 2
        return TrainConfig(env="simple_spread_v3", num_envs=8, total_steps=320, seed=5, comm_range=0.6,
                           runs_dir=str(tmp_path), name=name, checkpoint_interval=160, eval_interval=0,
                           eval_episodes=2, gif=False, tensorboard=False, progress=False, threads=1,
                           ppo=PPOConfig(comm="tarmac", num_steps=10, num_minibatches=2, num_epochs=2))

    fastmarl.train(cfg("full"))
    with pytest.raises(Crash):
        fastmarl.train(cfg("crashed"), callback=crash_after(3))
    fastmarl.train(resume=tmp_path / "crashed")
    wa, wb = (load_file(latest_checkpoint(tmp_path / n / "checkpoints") / "model.safetensors")
              for n in ("full", "crashed"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_one_radius_serves_the_env_channel_and_the_learned_comm():
    from fastmarl.envs.comm_wrappers import BroadcastChannel
    from fastmarl.train.runner import _make_env

    cfg = TrainConfig(env="simple_spread_v3", num_envs=2, message_bits=1, comm_range=0.5,
                      ppo=PPOConfig(comm="commnet"))
    env = _make_env(cfg, 2, 0)
    assert isinstance(env, AgentPositions) and isinstance(env.env, BroadcastChannel)
    assert env.env.comm_range == 0.5
    env.reset(seed=0)
    ts = env.step({"agent": torch.zeros(2, 3, dtype=torch.long)})
    # the positions found through both wrappers are the MPE world's, and match the observations
    torch.testing.assert_close(ts.info["positions"]["agent"], env.env.env.world_state.pos[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(ts.info["positions"]["agent"], ts.obs["agent"][..., 2:4], rtol=0, atol=0)
    assert "messages" in ts.info  # the channel's info passes through
