"""Export a run's actors to ONNX, to run a policy without PyTorch (``fastmarl export RUN_DIR``).

``export_run(run_dir, out)`` writes into ``out`` (default ``RUN_DIR/export/``) one ONNX graph per
group, ``<group>.onnx``, and ``manifest.json`` describing them. Each graph is the group's actor as
the run's learner acts with it, for a batch of ``B`` copies of the task (``B`` dynamic):

=============  =====================  ==================================================================
name           shape                  what
=============  =====================  ==================================================================
``obs``        (B, A_g, obs_dim)      float32, the group's agents' observations, flattened, in agent order
``h``          (B, A_g, H)            recurrent actors only: the hidden state (zeros at an episode start)
``logits``     (B, A_g, n)            discrete actions: the policy's logits (PPO family, SAC, DDPG), or
                                      the Q-values (IQL/VDN/QMIX); the deterministic action is the
                                      argmax over the legal actions
``mean``       (B, A_g, act_dim)      continuous actions: the mean action in the env's units (PPO: the
                                      Gaussian's mean, ``log_std`` in the manifest; SAC/DDPG: the
                                      squashed mean mapped onto the box); the deterministic action is
                                      ``clip(mean, low, high)``
``h_out``      (B, A_g, H)            recurrent actors only: the next hidden state
=============  =====================  ==================================================================

An actor with learned communication (``fastmarl train --comm``) mixes its group's agents inside the graph; without
it, each agent's output depends on its own row only (the other rows may be zeros). Runs that need
more than observations (``fastmarl train --message-bits`` or ``--comm-range``) and DIAL actors
(``fastmarl train --comm dial``: they draw message noise inside the actor) are refused with the reason,
and so is tabular Q-learning (a lookup table over discretised observations, not a network; its tables are
``learner.tables``). After writing, each graph is run with onnxruntime (when installed) on a random
batch and compared with the torch actor; the largest difference is in the manifest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fastmarl.algos.ddpg import DDPGLearner
from fastmarl.algos.ppo import PPO
from fastmarl.algos.q_learning import QLearner
from fastmarl.algos.sac import SACLearner
from fastmarl.algos.tabular import TabularQ
from fastmarl.envs.api import EnvSpec, check_known_keys
from fastmarl.train.checkpoint import atomic_write_text
from fastmarl.train.deploy import check_deployable
from fastmarl.train.rundir import RunDir
from fastmarl.train.runner import load_run
from fastmarl.version import __version__

FORMATS = ("onnx",)
DEFAULT_OPSET = 18  # torch's ONNX exporter (torch.export based) implements opset 18 and later
MANIFEST = "manifest.json"


class ExportError(ValueError):
    """A run (or learner) cannot be exported, or the output folder cannot be written; says why."""


class _PPOActor(nn.Module):
    """PPO-family actor: obs -> head output, exactly as ``GroupActorCritic.actor_step``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def step(self, obs: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor | None]:
        starts = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
        return self.net.actor_step(self.net.actor_input(obs), h, starts, deterministic=True)

    def forward(self, obs: Tensor) -> Tensor:
        return self.step(obs, None)[0]


class _QActor(_PPOActor):
    """Q-network: obs -> Q-values (``GroupQNet.step``)."""

    def step(self, obs: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return self.net.step(obs, h)


class _Recurrent(nn.Module):
    """A recurrent actor: (obs, h) -> (output, h')."""

    def __init__(self, actor: _PPOActor):
        super().__init__()
        self.actor = actor

    def forward(self, obs: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.actor.step(obs, h)


class _OffPolicyActor(nn.Module):
    """SAC / DDPG actor: obs -> logits, or the mean action mapped onto the env's box."""

    def __init__(self, learner: SACLearner | DDPGLearner, name: str):
        super().__init__()
        self.actor, self.sac, self.name = learner.actors[name], isinstance(learner, SACLearner), name
        self.discrete = learner.spec.groups[name].discrete
        self.codec = learner.codec

    def forward(self, obs: Tensor) -> Tensor:
        out = self.actor(obs)
        if self.discrete:
            return out
        mean = out.chunk(2, -1)[0] if self.sac else out
        return self.codec.to_env({self.name: torch.tanh(mean)})[self.name]


def actor_graphs(learner: Any, spec: EnvSpec) -> dict[str, tuple[nn.Module, int | None, dict[str, Any]]]:
    """group -> (its actor as a module of obs [, h], hidden size or None, extra manifest entries)."""
    out = {}
    for name, g in spec.groups.items():
        extra: dict[str, Any] = {}
        if isinstance(learner, PPO):  # HAPPO too
            net = learner.nets[name]
            if net.dial:
                raise ExportError("a run of `fastmarl train --comm dial` cannot be exported: its message channel "
                                  "draws random numbers inside the actor (message noise), which ONNX graphs of a "
                                  "dynamic batch do not support; load it with fastmarl.load_policy instead, or train "
                                  "with `fastmarl train --comm commnet` (or tarmac)")
            module, hidden = _PPOActor(net), learner.p.hidden_size if learner.p.recurrent else None
            module = _Recurrent(module) if hidden is not None else module
            if net.log_std is not None:
                extra["log_std"] = net.log_std.detach().cpu().tolist()  # (K, act_dim): K = 1 shared, or A_g
                extra["sampling"] = "mean + exp(log_std) * N(0, 1), then clip to the box"
        elif isinstance(learner, QLearner):
            net = learner.agents[name]
            module, hidden = _QActor(net), learner.cfg.hidden_size if learner.cfg.recurrent else None
            module = _Recurrent(module) if hidden is not None else module
            extra["outputs_are"] = "Q-values (greedy action: argmax)"
        elif isinstance(learner, (SACLearner, DDPGLearner)):
            module, hidden = _OffPolicyActor(learner, name), None
        elif isinstance(learner, TabularQ):
            raise ExportError("tabular Q-learning has no network to export: its policy is a lookup table over "
                              "discretised observations (learner.tables, with learner.discretizers); save the tables "
                              "with torch.save or numpy, or wrap the learner in fastmarl.train.deploy.DeployedPolicy")
        else:
            raise ExportError(f"no ONNX export for a {type(learner).__name__} learner")
        out[name] = (module.eval(), hidden, extra)
    return out


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's exporter logs and warns about its internals (torchvision ops, tree specs)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ExportError(f"--out {out}: cannot write there ({e.strerror or e}); choose a writable folder") from None


def export_policy(learner: Any, spec: EnvSpec, out: str | Path, opset: int = DEFAULT_OPSET,
                  info: dict[str, Any] | None = None) -> Path:
    """Write ``<group>.onnx`` for every group of a learner's policy and ``manifest.json`` into ``out``
    (see the module docstring); returns the manifest's path. Raises ExportError."""
    out = Path(out)
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: pip install 'fastmarl[export]'")
    graphs = actor_graphs(learner, spec)
    _check_out(out)
    groups = {}
    for name, (module, hidden, extra) in graphs.items():
        g = spec.groups[name]
        B = 3  # any batch > 1: the batch axis is exported as dynamic
        gen = torch.Generator().manual_seed(0)
        args = (torch.randn(B, g.num_agents, g.obs_dim, generator=gen),)
        if hidden is not None:
            args += (torch.randn(B, g.num_agents, hidden, generator=gen),)
        inputs = ["obs", "h"][:len(args)]
        outputs = ["logits" if g.discrete else "mean"] + (["h_out"] if hidden is not None else [])
        batch = torch.export.Dim("batch", min=1)
        path = out / f"{name}.onnx"
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                              dynamic_shapes=tuple({0: batch} for _ in args), dynamo=True, verbose=False,
                              external_data=False)
        entry = {"file": path.name, "agents": list(g.agents), "inputs": inputs, "outputs": outputs,
                 "obs_shape": [g.num_agents, g.obs_dim], "source_obs_shape": list(g.source_shape or ()) or None,
                 "hidden_size": hidden,
                 "action": {"kind": "discrete" if g.discrete else "continuous", "size": g.action_dim,
                            **({} if g.discrete else {"low": np.asarray(g.action_space.low).tolist(),
                                                      "high": np.asarray(g.action_space.high).tolist()})},
                 "deterministic_action": ("argmax(logits) over the legal actions" if g.discrete
                                          else "clip(mean, low, high)"),
                 **extra}
        entry["max_abs_error_vs_torch"] = _check_graph(path, module, args)
        groups[name] = entry
    manifest = {"format": "fastmarl-onnx-v1", "fastmarl_version": __version__, "opset": opset,
                "torch_version": torch.__version__, "env": spec.env_id, **(info or {}), "groups": groups}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out / MANIFEST


def _check_graph(path: Path, module: nn.Module, args: tuple[Tensor, ...]) -> float | None:
    """Largest |onnxruntime - torch| over the outputs on ``args`` batched to 5 (None without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    gen = torch.Generator().manual_seed(1)
    feed = [torch.randn(5, *a.shape[1:], generator=gen) for a in args]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), feed)})
    with torch.no_grad():
        want = module(*feed)
    want = want if isinstance(want, tuple) else (want,)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


def export_run(run_dir: str | Path, out: str | Path | None = None, fmt: str = "onnx",
               checkpoint: str | Path | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Export a run's policy (its newest checkpoint whose model verifies, or ``checkpoint``) into ``out``
    (default ``RUN_DIR/export``); returns the manifest's path. Raises ExportError, ConfigError (not a run
    directory, a run that cannot be deployed) or CheckpointError (no valid model)."""
    check_known_keys([fmt], FORMATS, "--format", ExportError)
    run = RunDir.open(run_dir)
    check_deployable(run.read_config())
    learner, cfg, env, manifest = load_run(run_dir, checkpoint, num_envs=1, device="cpu")
    spec = env.spec
    if hasattr(env, "close"):
        env.close()
    info = {"run": str(run.path), "algo": cfg.algo, "env": cfg.env, "env_kwargs": cfg.env_kwargs, "step": int(manifest["step"])}
    return export_policy(learner, spec, Path(out) if out is not None else run.path / "export", opset, info)
