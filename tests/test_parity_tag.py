"""simple_tag_v3 equals mpe2's, step for step (float64, shared initial state).

A scripted chase makes captures (collision rewards, contact forces) frequent;
terminate_on_success, the curriculum (changed mid-run on both sides, with envs
resetting at different times) and partial observability are checked too.
"""

import numpy as np
import pytest
import torch
from mpe_reference import assert_same_spaces, move_toward, run_lockstep

from fastmarl.envs.mpe.simple_tag import boundary_penalty

ENV = "simple_tag_v3"



class Chase:
    """Adversaries head for their nearest prey (20% random moves); prey move at random.

    Use ``before`` as run_lockstep's before_step, the instance as its action_fn
    and ``after`` as its after_step; ``captures`` counts (env, step)s with a
    positive adversary reward, ``prey_penalties`` prey rewards that are not
    a multiple of 10 (boundary penalty) and ``obstacle_contacts`` (env, step,
    agent, obstacle)s in contact."""

    def __init__(self, continuous: bool, prey_still: bool = False):
        self.continuous, self.prey_still = continuous, prey_still
        self.captures = self.prey_penalties = self.obstacle_contacts = 0

    def before(self, t, ours, penvs):
        self.ours = ours
        w, pos = ours.world, ours.world_state.pos
        d = (pos[:, :w.A, None] - pos[:, None, w.A:]).norm(dim=-1)  # (E, A, L)
        self.obstacle_contacts += int((d < w.size[:w.A, None] + w.size[None, w.A:]).sum())

    def after(self, t, ts):
        if "adversary" in ts.reward:
            self.captures += int((ts.reward["adversary"][:, 0] > 0).sum())
        if "agent" in ts.reward:
            r = ts.reward["agent"]
            self.prey_penalties += int((torch.remainder(r, 10.0).abs() > 1e-9).sum())

    def __call__(self, spec, num_envs, rng, t):
        nA = spec.groups["adversary"].num_agents if "adversary" in spec.groups else 0
        pos = self.ours.world_state.pos.numpy()
        acts = {}
        if "agent" in spec.groups:
            nG = spec.groups["agent"].num_agents
            if self.continuous:
                prey = rng.uniform(0, 1, (num_envs, nG, 5)).astype(np.float32)
            else:
                prey = rng.integers(0, 5, (num_envs, nG))
            acts["agent"] = np.zeros_like(prey) if self.prey_still else prey
        if nA:
            adv, prey_pos = pos[:, :nA], pos[:, nA:len(spec.agents)]
            rel = prey_pos[:, None] - adv[:, :, None]  # (E, nA, nG, 2)
            nearest = np.linalg.norm(rel, axis=-1).argmin(-1)  # (E, nA)
            delta = np.take_along_axis(rel, nearest[..., None, None], 2)[:, :, 0]
            chase = move_toward(delta, self.continuous)
            if self.continuous:
                rand = rng.uniform(0, 1, chase.shape).astype(np.float32)
                acts["adversary"] = np.where(rng.random((num_envs, nA, 1)) < 0.2, rand, chase)
            else:
                acts["adversary"] = np.where(rng.random((num_envs, nA)) < 0.2, rng.integers(0, 5, chase.shape), chase)
        return {g: acts[g] for g in spec.groups}


def lockstep(chase: Chase, steps: int, num_envs: int, **kw):
    return run_lockstep(ENV, steps=steps, num_envs=num_envs, continuous=chase.continuous, action_fn=chase,
                        before_step=chase.before, after_step=chase.after, **kw)


@pytest.mark.parametrize("good, adv, obs", [(1, 3, 2), pytest.param(2, 4, 1, marks=pytest.mark.slow),
                                           pytest.param(3, 6, 0, marks=pytest.mark.slow)])
@pytest.mark.parametrize("continuous", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_tag_lockstep(good, adv, obs, continuous):
    kw = dict(num_good=good, num_adversaries=adv, num_obstacles=obs)
    assert_same_spaces(ENV, continuous=continuous, **kw)
    chase = Chase(continuous)
    stats = lockstep(chase, 200, 2, **kw)
    assert stats["episode_ends"] == 2 * (200 // 25)
    assert chase.captures >= 30, f"only {chase.captures} capture steps: collision rewards barely tested"
    assert chase.prey_penalties > 0, "the boundary penalty never fired"
    if obs:
        assert chase.obstacle_contacts > 0, "no agent ever touched an obstacle"


def test_boundary_penalty_values():
    x = torch.tensor([0.0, 0.899, 0.95, 0.999, 1.0, 1.5, 2.0, 3.0, 50.0], dtype=torch.float64)
    want = [0.0, 0.0, 0.5, 0.99, 1.0, np.e, np.e ** 2, 10.0, 10.0]  # exp(2x - 2) capped at 10
    np.testing.assert_allclose(boundary_penalty(x).numpy(), want, rtol=1e-12, atol=1e-12)


def test_tag_rejects_bad_kwargs():
    import fastmarl

    with pytest.raises(ValueError, match="num_good"):
        fastmarl.make(ENV, num_good=-1)
    with pytest.raises(ValueError, match="num_agent_neighbors"):
        fastmarl.make(ENV, num_agent_neighbors=0)
    with pytest.raises(TypeError, match="num_obstacle"):
        fastmarl.make(ENV, num_obstacle=2)


def test_tag_random_actions():
    stats = run_lockstep(ENV, steps=100, num_envs=2)
    assert stats["episode_ends"] == 2 * (100 // 25)


@pytest.mark.parametrize("good, adv", [(2, 0), (0, 2)])
def test_tag_one_team_only(good, adv):
    kw = dict(num_good=good, num_adversaries=adv, num_obstacles=1)
    assert_same_spaces(ENV, **kw)
    assert run_lockstep(ENV, steps=30, num_envs=2, **kw)["episode_ends"] == 2


@pytest.mark.parametrize("continuous", [False, True])
def test_tag_terminate_on_success(continuous):
    # two still prey, four chasers: every prey caught at once ends the episode early
    chase = Chase(continuous, prey_still=True)
    stats = lockstep(chase, 150, 3, num_good=2, num_adversaries=4, num_obstacles=1, terminate_on_success=True)
    assert stats["terminations"] >= 3, stats
    assert stats["episode_ends"] > stats["terminations"], "some episodes should also run to max_cycles"


def fix_mpe2_curriculum(penv) -> None:
    """mpe2 1.1.1 bug: BaseScenario.curriculum_stage is a property with a no-op setter,
    so advance_curriculum() is silently ignored. A subclass attribute shadows it and
    gives mpe2 its documented behaviour (stage changes apply at the next reset)."""
    sc = penv.unwrapped.scenario
    sc.__class__ = type("StageFixedScenario", (type(sc),), {"curriculum_stage": 0})


def test_mpe2_curriculum_bug_is_still_there():
    # if this fails, mpe2 fixed its curriculum: drop fix_mpe2_curriculum and the docstring note
    from mpe_reference import mpe2_parallel

    p = mpe2_parallel(ENV, seed=0, curriculum=True)
    p.unwrapped.advance_curriculum()
    assert p.unwrapped.curriculum_stage == 0
    fix_mpe2_curriculum(p)
    p.unwrapped.advance_curriculum()
    p.reset(seed=1)
    assert p.unwrapped.curriculum_stage == 1 and p.unwrapped.world.agents[-1].max_speed == 1.3 * 0.75


@pytest.mark.parametrize("continuous", [False, True])
def test_tag_curriculum_stage0(continuous):
    # unpatched mpe2: curriculum=True means slow prey (stage 0) for good
    chase = Chase(continuous)
    speeds = []

    def before(t, ours, penvs):
        chase.before(t, ours, penvs)
        speeds.append(ours.world_state.vel[:, 3].norm(dim=-1).max().item())  # the prey agent_0 is entity 3

    stats = run_lockstep(ENV, steps=100, num_envs=2, continuous=continuous, curriculum=True, num_obstacles=1,
                         action_fn=chase, before_step=before, after_step=chase.after)
    assert stats["episode_ends"] == 2 * (100 // 25)
    assert max(speeds) <= 0.65 + 1e-9 and max(speeds) > 0.5, max(speeds)


def test_tag_curriculum_changes_at_each_envs_reset():
    # the stage advances mid-episode; envs end at different times (terminations), and each
    # must switch prey speed at its own next reset, exactly as each (fixed) mpe2 env does
    chase = Chase(False)
    stages = []

    def before(t, ours, penvs):
        chase.before(t, ours, penvs)
        if t == 0:
            for p in penvs:
                fix_mpe2_curriculum(p)
        if t in (40, 90):
            ours.scenario.advance_curriculum()
            for p in penvs:
                p.unwrapped.advance_curriculum()
        stages.append(ours.world_state.extra["max_speed"][:, 4].tolist())  # the prey (entity 4) max speed per env

    stats = run_lockstep(ENV, steps=160, num_envs=3, curriculum=True, terminate_on_success=True, num_good=1,
                         num_adversaries=4, num_obstacles=1, action_fn=chase, before_step=before,
                         after_step=chase.after)
    assert stats["terminations"] >= 2
    seen = {round(v, 6) for row in stages for v in row}
    assert seen == {0.65, 0.975, 1.3}, seen
    # at some step the envs were in different stages (the change is per env, at its reset)
    assert any(len(set(row)) > 1 for row in stages)


def test_tag_curriculum_stage_api():
    import fastmarl

    env = fastmarl.make(ENV, num_envs=2, seed=0, curriculum=True, dtype=torch.float64)
    sc = env.scenario
    sc.set_curriculum_stage(99)
    assert sc.curriculum_stage == 2
    sc.advance_curriculum()
    assert sc.curriculum_stage == 2
    sc.set_curriculum_stage(-3)
    assert sc.curriculum_stage == 0
    sc.set_curriculum_stage(1)
    env.reset(mask=torch.tensor([True, False]))
    assert env.world_state.extra["accel"][:, -1].tolist() == [3.0, 2.0]
    assert env.world_state.extra["max_speed"][:, 3].tolist() == [1.3 * 0.75, 1.3 * 0.5]
    # without curriculum the prey keeps full speed whatever the stage
    env = fastmarl.make(ENV, num_envs=2, seed=0, dtype=torch.float64)
    env.scenario.set_curriculum_stage(0)
    env.reset()
    assert "max_speed" not in env.world_state.extra
    assert float(env.world.max_speed[3]) == 1.3 and float(env.world.accel[3]) == 4.0


@pytest.mark.parametrize("agents, landmarks, obstacles", [(2, None, 2), (None, 1, 3), (3, 2, 0), (8, 4, 2)])
def test_tag_partial_observability(agents, landmarks, obstacles):
    kw = dict(num_good=2, num_adversaries=3, num_obstacles=obstacles, num_agent_neighbors=agents,
              num_landmark_neighbors=landmarks)
    assert_same_spaces(ENV, **kw)
    chase = Chase(False)
    stats = lockstep(chase, 50, 2, **kw)
    assert stats["episode_ends"] == 2 * (50 // 25)
