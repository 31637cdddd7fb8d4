"""Image observations: the CNN torso, uint8 rollouts, the critic's input, the memory estimate and
training through ``fastmarl train`` on a tiny image env (tests/image_env.py, ``pz:image_env``)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from image_env import ImageEnv
from pettingzoo import ParallelEnv

import fastmarl.config.base as config_base
from fastmarl.algos.actor_critic import GroupActorCritic
from fastmarl.cli.train import train_main
from fastmarl.config import ConfigError, PPOConfig, QConfig, SACConfig, TrainConfig, resolve, validate_q_config
from fastmarl.config.happo import HAPPOTrainConfig, resolve_happo
from fastmarl.config.images import ImageEncoderConfig, check_images
from fastmarl.config.offpolicy import validate_offpolicy
from fastmarl.envs import make
from fastmarl.envs.pz_vecenv import from_pettingzoo
from fastmarl.nn.encoders import ImageEncoder, auto_downsample, image_layout
from fastmarl.train import train
from fastmarl.train.deploy import load_policy
from fastmarl.train.export import export_run
from fastmarl.train.runner import build_learner

FLAGS = ["--threads", "1", "--no-gif", "--no-tensorboard", "--no-progress"]


# -- the encoder ------------------------------------------------------------------------------

def test_encoder_shapes_layouts_and_uint8_scaling():
    torch.manual_seed(0)
    E, A, H, W, C, F = 3, 2, 20, 24, 3, 32
    enc = ImageEncoder((H, W, C), (8, 16), (4, 3), (2, 2), downsample=1, features=F)
    frames = torch.randint(0, 256, (E, A, H, W, C), dtype=torch.uint8)
    out = enc(frames)
    assert out.shape == (E, A, F) and out.dtype == torch.float32
    assert torch.equal(enc(frames.reshape(E, A, H * W * C)), out)  # flattened frames, as batched envs carry them
    assert enc(frames[:0]).shape == (0, A, F)
    # uint8 frames are scaled by 1/255 inside the encoder: the same as float frames in [0, 1] without scaling
    as_float = ImageEncoder((H, W, C), (8, 16), (4, 3), (2, 2), downsample=1, features=F, scale=1.0)
    as_float.load_state_dict(enc.state_dict())
    torch.testing.assert_close(as_float(frames.float() / 255), out)
    # channels first gives the same features for the same pixels
    chw = ImageEncoder((C, H, W), (8, 16), (4, 3), (2, 2), downsample=1, features=F)
    chw.load_state_dict(enc.state_dict())
    torch.testing.assert_close(chw(frames.permute(0, 1, 4, 2, 3)), out)
    # subsampling keeps every n-th row and column, nothing else
    sub = ImageEncoder((H, W, C), (8,), (3,), (1,), downsample=4, features=F)
    small = sub.subsample(frames)
    assert small.shape == (E, A, C, 5, 6) and small.dtype == torch.uint8
    assert torch.equal(small, frames[:, :, ::4, ::4, :].permute(0, 1, 4, 2, 3))
    torch.testing.assert_close(sub.encode(small), sub(frames))
    with pytest.raises(ValueError, match="expected frames of shape"):
        enc(torch.zeros(E, A, 17))
    with pytest.raises(ValueError, match="too small"):
        ImageEncoder((H, W, C), (8, 8), (8, 8), (4, 4), downsample=2, features=F)
    assert image_layout((84, 84, 3)) == "hwc" and image_layout((1, 84, 84)) == "chw" and image_layout((84, 84)) == "hw"
    assert auto_downsample((457, 120, 3)) == 8 and auto_downsample((16, 16, 3)) == 1


# -- the env and the learner -----------------------------------------------------------------

def _ppo(algo: str = "mappo", n_agents: int = 2, size: int = 16, num_envs: int = 4, **ppo):
    env = from_pettingzoo(lambda: ImageEnv(n_agents=n_agents, size=size), num_envs, seed=0)
    cfg = TrainConfig(algo=algo, env="pz:image_env", num_envs=num_envs, total_steps=1000,
                      ppo=PPOConfig(num_steps=8, **ppo))
    return env, cfg, build_learner(cfg, env.spec, "cpu")


def test_frames_stay_uint8_from_the_env_to_the_rollout():
    env, cfg, learner = _ppo()
    g = env.spec.groups["agent"]
    assert g.source_shape == (16, 16, 3) and g.observation_space.dtype == np.uint8 and g.image_observations
    learner.begin(env, seed=0)
    assert learner.collect(env) == 8 * 4
    obs = learner.buffer.obs["agent"]
    assert obs.dtype == torch.uint8 and obs.shape == (8, 4, 2, 16 * 16 * 3)
    assert obs.nbytes == 8 * 4 * 2 * 768  # one byte per pixel: a quarter of float32's
    assert int(obs.max()) == 230 and int(obs.min()) == 20  # the frames' own values, unscaled
    assert learner.buffer.state is None and not learner.reads_state  # the CNN critic does not read env.state()
    assert isinstance(learner.nets["agent"].encoder, ImageEncoder)
    metrics = learner.update(0.0)
    assert np.isfinite(metrics["encoder_grad_norm/agent"]) and metrics["encoder_grad_norm/agent"] > 0


def test_the_critic_input_does_not_grow_with_pixels_or_agents():
    F = PPOConfig().images.cnn_features
    widths = {}
    for n_agents, size in [(2, 16), (6, 64)]:
        spec = from_pettingzoo(lambda: ImageEnv(n_agents=n_agents, size=size), 1).spec
        for algo, centralized in [("mappo", True), ("ippo", False)]:
            net = GroupActorCritic(spec.groups["agent"], spec.state_dim, PPOConfig(), centralized)
            widths[(algo, n_agents, size)] = net.critic_body.net[0].in_features
            if algo == "mappo":
                obs = torch.randint(0, 256, (3, n_agents, size * size * 3), dtype=torch.uint8)
                assert net.critic_input(obs, None).shape == (3, n_agents, 2 * F + n_agents)
    # own feature + the group's mean feature (+ one-hot id): 2F + A, never pixels x agents
    assert widths[("mappo", 2, 16)] == 2 * F + 2 and widths[("mappo", 6, 64)] == 2 * F + 6
    assert widths[("ippo", 2, 16)] == F + 2 and widths[("ippo", 6, 64)] == F + 6
    flat = GroupActorCritic(spec.groups["agent"], spec.state_dim,
                            PPOConfig(images=ImageEncoderConfig(encoder="mlp")), True)
    assert flat.critic_body.net[0].in_features == spec.state_dim + 64 * 64 * 3 + 6  # what the CNN avoids


# -- training through `fastmarl train` --------------------------------------------------------

@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_fastmarl_train_on_an_image_env(algo, tmp_path, capsys):
    rc = train_main(["--algo", algo, "--env", "pz:image_env", "--total-steps", "1024", "--num-steps", "32",
                     "--eval-interval", "0", "--eval-episodes", "4", "--runs-dir", str(tmp_path), "--name", algo,
                     *FLAGS])
    assert rc == 0, capsys.readouterr().err
    run = tmp_path / algo
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["num_envs"] == 8  # the image default (200 envs suit a vectorised MPE, not frames drawn in Python)
    assert cfg["ppo"]["images"]["encoder"] == "auto"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 1024 // (8 * 32) and "encoder_grad_norm/agent" in rows[0]
    assert "image observations" in capsys.readouterr().err


def test_a_cnn_learns_to_read_the_frames():
    """Random play earns 8 of 16 per agent; a few thousand steps of MAPPO read the square's side."""
    res = train(TrainConfig(env="pz:image_env", total_steps=8192, num_envs=8, runs_dir=None, threads=1,
                            eval_interval=0, eval_episodes=16, gif=False, tensorboard=False, progress=False,
                            ppo=PPOConfig(num_steps=32)))
    assert res.final_eval["return_det"] > 13.0


# -- what does not fit, or has no CNN ----------------------------------------------------------

class Pistons(ParallelEnv):
    """pistonball_v6's spaces (20 agents, 457x120x3 uint8 frames, a 560x880x3 state), no physics."""

    metadata = {"name": "pistons_v0"}
    SHAPE = (457, 120, 3)

    def __init__(self):
        self.possible_agents = [f"piston_{i}" for i in range(20)]
        self.agents = []

    def observation_space(self, agent):
        return gym.spaces.Box(0, 255, self.SHAPE, np.uint8)

    def action_space(self, agent):
        return gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return {a: np.zeros(self.SHAPE, np.uint8) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        obs, _ = self.reset()
        return obs, {a: 0.0 for a in self.agents}, dict.fromkeys(self.agents, False), \
            dict.fromkeys(self.agents, False), {a: {} for a in self.agents}

    def state(self):
        return np.zeros((560, 880, 3), np.uint8)


def test_pistonball_sized_frames_with_too_many_envs_are_refused_naming_a_num_envs_that_fits(monkeypatch, tmp_path):
    monkeypatch.setattr(config_base, "memory_available", lambda device: 4 * 2 ** 30)  # 4 GiB free
    spec = from_pettingzoo(Pistons, 1).spec

    def cfg(n):
        return TrainConfig(env="pz:pistons", num_envs=n, total_steps=100_000, ppo=PPOConfig(num_steps=24))

    with pytest.raises(ConfigError, match=r"mappo on pistons_v0 needs about \d+\.\d GiB, more than 80% of the 4\.0 "
                                          r"GiB free on cpu \(num_envs=200\): --num-envs (\d+) fits; frames of "
                                          r"\['piston'\] are stored as uint8") as info:
        resolve(cfg(200), spec)
    msg = str(info.value)
    assert "\n" not in msg and "--algo ippo" not in msg  # the CNN critic reads no state: ippo would not help
    fit = int(msg.split("--num-envs ")[1].split()[0])
    assert 8 <= fit < 200
    resolve(cfg(fit), spec)  # the advice holds
    with pytest.raises(ConfigError, match="fits"):
        resolve(cfg(fit + 2), spec)
    # flattened into MLP inputs (frames and the 1.5M-value state as floats), not even one env fits
    with pytest.raises(ConfigError, match=r"even one env does not fit, or --algo ippo .* images flattened into MLP"):
        resolve(TrainConfig(env="pz:pistons", num_envs=fit, total_steps=100_000,
                            ppo=PPOConfig(num_steps=24, images=ImageEncoderConfig(encoder="mlp"))), spec)
    # through `fastmarl train`: one line, before any run directory is written
    monkeypatch.setattr("fastmarl.train.runner.pettingzoo_factory", lambda env, kwargs: Pistons)
    monkeypatch.setattr(config_base, "memory_available", lambda device: 2 ** 30)
    assert train_main(["--env", "pz:pistons", "--num-envs", "64", "--runs-dir", str(tmp_path), *FLAGS]) == 2
    assert not any(tmp_path.iterdir())


def test_learners_without_a_cnn_refuse_image_observations():
    spec = from_pettingzoo(lambda: ImageEnv(), 1).spec
    with pytest.raises(ConfigError, match=r"iql has no convolutional encoder.*use --algo mappo or ippo"):
        validate_q_config(QConfig(algo="iql", env="pz:image_env"), spec)
    with pytest.raises(ConfigError, match=r"isac has no convolutional encoder"):
        validate_offpolicy(SACConfig(algo="isac", env="pz:image_env"), spec)
    with pytest.raises(ConfigError, match=r"happo .* use --algo mappo or ippo for image observations"):
        resolve_happo(HAPPOTrainConfig(algo="happo", env="pz:image_env", num_envs=4, total_steps=1000), spec)


def test_encoder_settings_are_checked():
    spec = from_pettingzoo(lambda: ImageEnv(), 1).spec
    mpe = make("simple_spread_v3").spec
    assert check_images(ImageEncoderConfig(), spec) == {"agent": True}
    assert check_images(ImageEncoderConfig(), mpe) == {"agent": False}
    assert check_images(ImageEncoderConfig(encoder="mlp"), spec) == {"agent": False}
    with pytest.raises(ConfigError, match=r"encoder='cnn' needs image observations.*use encoder 'auto'"):
        check_images(ImageEncoderConfig(encoder="cnn"), mpe)
    with pytest.raises(ConfigError, match=r"ppo.images.cnn_channels configure the CNN torso, but no group uses one"):
        check_images(ImageEncoderConfig(cnn_channels=(8, 8)), mpe)
    with pytest.raises(ConfigError, match="one entry per convolution"):
        check_images(ImageEncoderConfig(cnn_channels=(8,)), spec)
    with pytest.raises(ConfigError, match=r"16x16 frame subsampled by 4 is 4x4, too small"):
        check_images(ImageEncoderConfig(cnn_downsample=4), spec)
    assert ImageEncoderConfig(cnn_channels=[8, 16]).cnn_channels == (8, 16)  # a saved config.json's lists


@pytest.mark.slow
def test_pistonball_trains_with_its_image_defaults(tmp_path):
    """The real pistonball_v6 (20 pistons, 457x120x3 frames): `fastmarl train` with no other option
    than a short budget gets 8 envs and the CNN, and keeps its frames as uint8."""
    pytest.importorskip("pettingzoo.butterfly.pistonball_v6")
    res = train(TrainConfig(env="pz:pettingzoo.butterfly.pistonball_v6", total_steps=400, runs_dir=str(tmp_path),
                            threads=1, eval_interval=0, eval_episodes=2, gif=False, tensorboard=False,
                            progress=False))
    assert res.global_step == 400 and np.isfinite(res.final_eval["return_det"])
    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["num_envs"] == 8
    obs = res.learner.buffer.obs["piston"]
    assert obs.dtype == torch.uint8 and obs.shape == (25, 8, 20, 457 * 120 * 3)
    assert res.learner.buffer.state is None


def test_an_image_policy_plays_from_pettingzoo_dicts_and_exports_to_onnx(tmp_path):
    res = train(TrainConfig(env="pz:image_env", total_steps=512, num_envs=4, runs_dir=str(tmp_path), name="img",
                            threads=1, eval_interval=0, eval_episodes=2, gif=False, tensorboard=False,
                            progress=False, ppo=PPOConfig(num_steps=32)))
    policy = load_policy(res.run_dir)
    env = ImageEnv()
    obs, _ = env.reset(seed=3)  # uint8 frames straight from the PettingZoo env
    actions = policy.act(obs)
    assert set(actions) == set(env.agents) and all(int(a) in (0, 1) for a in actions.values())
    # the same frames through the learner's own (batched) acting give the same deterministic actions
    frames = torch.from_numpy(np.stack([obs[a] for a in env.possible_agents]).reshape(1, 2, -1))
    net = res.learner.nets["agent"]
    with torch.no_grad():
        logits, _ = net.actor_step(net.actor_input(frames), None, torch.zeros(1, dtype=torch.bool),
                                   deterministic=True)
    assert [int(actions[a]) for a in env.possible_agents] == logits.argmax(-1)[0].tolist()
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    manifest = json.loads(export_run(res.run_dir, tmp_path / "onnx").read_text())
    entry = manifest["groups"]["agent"]
    assert entry["source_obs_shape"] == [16, 16, 3] and entry["max_abs_error_vs_torch"] < 1e-4
