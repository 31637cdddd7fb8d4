"""Learned communication (CommNet, TarMAC) inside the Q-learning family's agent
networks: who can influence whose Q-values, step/sequence agreement, config
validation, the CLI option and a tiny VDN + CommNet run."""

from __future__ import annotations

import math

import pytest
import torch
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.algos.q_learning import GroupQNet
from fastmarl.config import ConfigError, QConfig, validate_q_config
from fastmarl.nn.comm import CommNet, TarMAC
from fastmarl.train.runner import train as train_q

COMMS = ["none", "commnet", "tarmac", "tarmac_broadcast"]


def _net(comm: str, recurrent: bool, share_params: bool = True, comm_rounds: int = 1) -> GroupQNet:
    group = fastmarl.make("simple_spread_v3").spec.groups["agent"]  # 3 agents, 18 features, 5 actions
    torch.manual_seed(0)
    cfg = QConfig(algo="vdn", comm=comm, comm_rounds=comm_rounds, recurrent=recurrent, hidden_size=16,
                  share_params=share_params)
    return GroupQNet(group, cfg)


def _step_all(net: GroupQNet, obs: torch.Tensor) -> torch.Tensor:
    """Feed obs (T, B, A, D) one step at a time (zero initial hidden state) -> Q (T, B, A, n)."""
    h = obs.new_zeros(*obs.shape[1:-1], net.hidden_size) if net.gru is not None else None
    out = []
    for t in range(obs.shape[0]):
        q, h = net.step(obs[t], h)
        out.append(q)
    return torch.stack(out)


def test_comm_module_is_built_as_configured():
    assert _net("none", True).comm is None
    assert isinstance(_net("commnet", True, comm_rounds=2).comm, CommNet) and \
        _net("commnet", True, comm_rounds=2).comm.rounds == 2
    tarmac, broadcast = _net("tarmac", False).comm, _net("tarmac_broadcast", False).comm
    assert isinstance(tarmac, TarMAC) and tarmac.targeted and not broadcast.targeted


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("comm", COMMS)
def test_other_agents_observations_reach_q_values_only_through_comm(comm, recurrent):
    net = _net(comm, recurrent, share_params=comm != "tarmac")  # tarmac: one network per agent
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(4, 2, 3, 18, generator=g)  # (T, B, A, D)
    changed = obs.clone()
    changed[1, :, 2] += 3.0 * torch.randn(2, 18, generator=g)  # agent 2's observation at t = 1 only
    with torch.no_grad():
        for run in (net.sequence, lambda o: _step_all(net, o)):
            q, q2 = run(obs), run(changed)
            assert q.shape == (4, 2, 3, 5)
            # agent 2 itself always sees its own change; nobody's Q-values change before t = 1
            assert (q2[1, :, 2] - q[1, :, 2]).abs().max() > 1e-3
            torch.testing.assert_close(q2[0], q[0], rtol=0, atol=1e-6)
            diff_others = (q2[1:, :, :2] - q[1:, :, :2]).abs().amax((1, 2, 3))  # (T - 1,) agents 0 and 1
            if comm == "none":
                assert diff_others.max() < 1e-6
            else:
                assert diff_others[0] > 1e-3  # heard in the same step
                # later steps: only the GRU remembers what was heard
                assert (diff_others[1:] > 1e-3).all() if recurrent else diff_others[1:].max() < 1e-6


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("comm", ["commnet", "tarmac", "tarmac_broadcast"])
def test_sequence_equals_step_by_step(comm, recurrent):
    net = _net(comm, recurrent, comm_rounds=2)
    obs = torch.randn(5, 3, 3, 18, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(net.sequence(obs), _step_all(net, obs), rtol=1e-5, atol=1e-6)


def test_comm_gradients_reach_the_comm_weights_from_another_agents_loss():
    net = _net("commnet", True)
    obs = torch.randn(3, 2, 3, 18, generator=torch.Generator().manual_seed(3), requires_grad=True)
    net.sequence(obs)[..., 0, :].sum().backward()  # agent 0's Q-values only
    assert obs.grad[:, :, 1:].abs().sum() > 0  # ... depend on agents 1 and 2
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.comm.parameters())


def test_comm_config_validation_names_the_field():
    spread = fastmarl.make("simple_spread_v3").spec
    assert validate_q_config(QConfig(comm="tarmac", comm_rounds=3), spread).max_seq_len == 25
    with pytest.raises(ConfigError, match="comm_rounds must be an integer >= 1, got 0"):
        validate_q_config(QConfig(comm="commnet", comm_rounds=0), spread)
    with pytest.raises(ConfigError, match="comm_rounds must be an integer >= 1, got 1.5"):
        validate_q_config(QConfig(comm_rounds=1.5), spread)
    with pytest.raises(ConfigError, match="comm must be one of .*'dial'"):
        validate_q_config(QConfig(comm="dial"), spread)
    with pytest.raises(ConfigError, match="comm='commnet' lets the agents of a group talk.*single agent"):
        validate_q_config(QConfig(env="simple_v3", comm="commnet"), fastmarl.make("simple_v3").spec)
    with pytest.raises(ConfigError, match=r"unknown QConfig key: 'comm_round' \(did you mean 'comm_rounds'\?\)"):
        QConfig.from_dict({"comm_round": 2})


def test_cli_passes_comm_options_to_qconfig(monkeypatch, tmp_path):
    from fastmarl.cli import main
    seen = {}

    def fake_train(cfg, resume=None):
        seen["cfg"] = cfg
        raise SystemExit(0)  # stop before training: only the parsed config matters here

    monkeypatch.setattr("fastmarl.cli.train.train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--algo", "qmix", "--comm", "commnet", "--comm-rounds", "2", "--runs-dir", str(tmp_path)])
    cfg = seen["cfg"]
    assert isinstance(cfg, QConfig) and (cfg.algo, cfg.comm, cfg.comm_rounds) == ("qmix", "commnet", 2)


def test_tiny_vdn_commnet_run_has_finite_loss():
    res = train_q(QConfig(algo="vdn", env="simple_spread_v3", env_kwargs={"N": 2}, comm="commnet", total_steps=2000,
                          num_envs=8, batch_size=8, buffer_size=64, learning_starts=8, update_interval=50,
                          hidden_size=16, log_interval=1000, eval_episodes=2, threads=1))
    assert res.metrics["steps"] == 2000 and res.metrics["updates"] > 0
    assert [row["step"] for row in res.history] == [1000, 2000]
    for row in res.history:
        assert math.isfinite(row["loss/agent"]) and row["loss/agent"] > 0 and math.isfinite(row["grad_norm/agent"])
    assert math.isfinite(res.metrics["return_det"])
    assert res.learner.agents["agent"].comm is not None
