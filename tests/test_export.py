"""fastmarl export: one ONNX actor per group, equal to the torch actor under onnxruntime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from deployruns import RUNS, trained

import fastmarl
from fastmarl.cli import main
from fastmarl.config import ConfigError, PPOConfig, TrainConfig
from fastmarl.train.checkpoint import MODEL, TRAINER, latest_checkpoint
from fastmarl.train.deploy import check_deployable
from fastmarl.train.export import ExportError, actor_graphs, export_policy, export_run
from fastmarl.train.runner import load_run
from fastmarl.version import __version__

ort = pytest.importorskip("onnxruntime")

# mappo: the same graph as mappo_gru_box without the GRU; mappo_dial: refused (test below)
EXPORTABLE = sorted(n for n in RUNS if n not in ("mappo", "mappo_dial"))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _deterministic(out: np.ndarray, entry: dict, mask: np.ndarray | None) -> np.ndarray:
    """The manifest's deterministic action from a graph output."""
    if entry["action"]["kind"] == "discrete":
        return np.where(mask, out, -np.inf).argmax(-1) if mask is not None else out.argmax(-1)
    return np.clip(out, entry["action"]["low"], entry["action"]["high"])


# the fast tier keeps a recurrent Q, a SAC, a DDPG and a PPO case (iql_gru, isac, iddpg, ippo_tictactoe); the
# slow tier adds the other families and the larger graphs
SLOW_EXPORTS = ("happo", "mappo_gru_box", "maddpg_box", "ippo_tarmac", "masac_box")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPORTS else n
                                  for n in EXPORTABLE])
def test_onnx_actor_equals_torch_actor(name, tmp_path_factory, tmp_path):
    """Each group's graph: raw outputs equal the torch actor's (atol 1e-5) on random batches of two sizes,
    and its deterministic action, with the hidden state fed back, equals the learner's own ``act`` over
    12 steps of the batched env."""
    run = trained(name, tmp_path_factory)
    manifest = json.loads(export_run(run, tmp_path / "onnx").read_text())
    assert manifest["fastmarl_version"] == __version__ and manifest["opset"] >= 18
    learner, _, env, _ = load_run(run, num_envs=4, device="cpu")
    graphs = actor_graphs(learner, env.spec)
    sessions = {}
    for g, entry in manifest["groups"].items():
        spec = env.spec.groups[g]
        assert entry["agents"] == list(spec.agents) and entry["obs_shape"] == [spec.num_agents, spec.obs_dim]
        assert entry["outputs"][0] == ("logits" if spec.discrete else "mean") and entry["action"]["size"] == \
            spec.action_dim
        sess = sessions[g] = ort.InferenceSession(str(tmp_path / "onnx" / entry["file"]))
        module, hidden, _ = graphs[g]
        for B in (1, 7):
            x = [torch.randn(B, spec.num_agents, spec.obs_dim)]
            if hidden is not None:
                x.append(torch.randn(B, spec.num_agents, hidden))
            got = sess.run(None, {n: t.numpy() for n, t in zip(entry["inputs"], x)})
            with torch.no_grad():
                want = module(*x)
            for a, b in zip(got, want if isinstance(want, tuple) else (want,)):
                np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-5)
    ts = env.reset(seed=2)
    carry = learner.initial_carry(4)
    h = {g: np.zeros((4, env.spec.groups[g].num_agents, e["hidden_size"]), np.float32)
         for g, e in manifest["groups"].items() if e["hidden_size"]}
    for _ in range(12):
        want, carry = learner.act(ts, carry, deterministic=True)
        for g, entry in manifest["groups"].items():
            if g in h:
                h[g] = np.where(ts.done.numpy()[:, None, None], 0.0, h[g]).astype(np.float32)
            feed = {"obs": ts.obs[g].numpy().astype(np.float32), **({"h": h[g]} if g in h else {})}
            out = sessions[g].run(None, feed)
            if g in h:
                h[g] = out[1]
            mask = ts.action_mask[g].numpy() if ts.action_mask is not None and g in ts.action_mask else None
            np.testing.assert_allclose(_deterministic(out[0], entry, mask), want[g].numpy(), rtol=0, atol=1e-5)
        ts = env.step(want)


def test_tabular_and_undeployable_runs_are_refused_with_the_reason(tmp_path):
    from fastmarl.config import TabularConfig
    from fastmarl.train.runner import train_tabular

    env = fastmarl.make("matrix_monotonic_v0", num_envs=4, seed=0)
    res = train_tabular(env, TabularConfig(total_steps=40, seed=0))
    with pytest.raises(ExportError, match="lookup table"):
        export_policy(res.learner, env.spec, tmp_path)
    with pytest.raises(ConfigError, match="message_bits=1.*BroadcastChannel"):
        check_deployable(TrainConfig(message_bits=1))
    with pytest.raises(ConfigError, match="comm_range=0.5: its actors need the agents' positions"):
        check_deployable(TrainConfig(comm_range=0.5, ppo=PPOConfig(comm="tarmac")))


def test_dial_is_refused_with_the_reason(tmp_path_factory, tmp_path):
    with pytest.raises(ExportError, match="--comm dial` cannot be exported: its message channel draws random"):
        export_run(trained("mappo_dial", tmp_path_factory), tmp_path)


def test_cli_export_and_its_errors(tmp_path_factory, tmp_path, capsys):
    def cli(*args: str):
        rc = main(["export", *args])
        out, err = capsys.readouterr()
        return rc, out, err.strip()

    run = tmp_path / "run"
    shutil.copytree(trained("qmix", tmp_path_factory), run)
    (latest_checkpoint(run / "checkpoints") / TRAINER).write_bytes(b"broken")  # export needs only the model
    rc, out, err = cli(str(run), "--format", "onnx")
    assert rc == 0, err
    assert (run / "export" / "agent.onnx").is_file() and (run / "export" / "manifest.json").is_file()
    assert "max |onnxruntime - torch|" in out
    rc, _, err = cli(str(run), "--format", "onxx")
    assert rc == 2 and "\n" not in err and "unknown --format: 'onxx' (did you mean 'onnx'?)" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc, _, err = cli(str(run), "--out", str(blocker / "sub"))
    assert rc == 2 and "\n" not in err and f"--out {blocker / 'sub'}: cannot write there" in err
    (latest_checkpoint(run / "checkpoints") / MODEL).write_bytes(b"broken")
    rc, _, err = cli(str(run))
    assert rc == 2 and "\n" not in err and "no valid checkpoint" in err and "model.safetensors" in err
    rc, _, err = cli(str(tmp_path))
    assert rc == 2 and "\n" not in err and "not a run directory" in err
