"""Emergent-communication measures (fastmarl.analysis.comm) on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from fastmarl.analysis.comm import (
    LOG2,
    attention_entropy,
    causal_influence,
    entropy,
    instantaneous_coordination,
    lagged_pairs,
    message_ablation,
    message_entropy,
    mutual_information,
    random_messages,
    shuffle_messages,
    speaker_consistency,
    zero_messages,
)
from fastmarl.nn.comm import TarMAC


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- estimators ------------------------------------------------------------------

def test_entropy_plugin_and_miller_madow_by_hand():
    x = torch.tensor([0, 0, 1, 1, 1, 2])
    plug = -(2 / 6 * math.log(2 / 6) + 3 / 6 * math.log(3 / 6) + 1 / 6 * math.log(1 / 6))
    assert entropy(x, correction=None).item() == pytest.approx(plug, abs=1e-12)
    assert entropy(x).item() == pytest.approx(plug + (3 - 1) / (2 * 6), abs=1e-12)  # Miller-Madow
    assert entropy(torch.zeros(50, dtype=torch.long)).item() == 0.0  # one value seen: no correction
    # uniform over 8 values, many samples: log 8
    u = torch.randint(0, 8, (50000,), generator=_gen())
    assert entropy(u).item() == pytest.approx(math.log(8), abs=2e-3)
    # columns are independent estimates
    cols = torch.stack([torch.zeros(1000, dtype=torch.long), torch.randint(0, 2, (1000,), generator=_gen())], 1)
    h = entropy(cols)
    assert h.shape == (2,) and h[0] == 0 and h[1].item() == pytest.approx(LOG2, abs=0.01)
    with pytest.raises(ValueError, match="non-negative"):
        entropy(torch.tensor([0, -1]))


def test_mutual_information_by_hand():
    x = torch.tensor([0, 0, 1, 1, 0, 1, 0, 0])
    y = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1])
    p = torch.zeros(2, 2, dtype=torch.float64)
    for a, b in zip(x.tolist(), y.tolist()):
        p[a, b] += 1 / 8
    px, py = p.sum(1), p.sum(0)
    plug = sum(p[a, b] * math.log(p[a, b] / (px[a] * py[b])) for a in range(2) for b in range(2) if p[a, b] > 0)
    assert mutual_information(x, y, correction=None).item() == pytest.approx(plug.item(), abs=1e-9)
    # Miller-Madow: + (m_x + m_y - m_xy - 1) / (2N), here (2 + 2 - 3 - 1) / 16 = 0
    assert mutual_information(x, y).item() == pytest.approx(plug.item(), abs=1e-9)
    assert mutual_information(x, x).item() == pytest.approx(-(px * px.log()).sum().item() + 1 / 16, abs=1e-9)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_perfect_channel_scores_log2_per_bit(bits):
    N = 40000
    m = torch.randint(0, 2**bits, (N,), generator=_gen(bits))
    mi = mutual_information(m, m).item()
    assert mi == pytest.approx(bits * LOG2, abs=0.005), mi
    # a relabelled copy is just as informative
    perm = torch.randperm(2**bits, generator=_gen())
    assert mutual_information(m, perm[m]).item() == pytest.approx(mi, abs=1e-12)


def test_random_channel_scores_zero_and_the_correction_removes_the_bias():
    """Independent bits, 400 repetitions of N = 200 samples: the plug-in MI is
    biased up by about (m_x - 1)(m_y - 1) / (2N) = 1/400; Miller-Madow removes it."""
    N, R = 200, 400
    x = torch.randint(0, 2, (N, R), generator=_gen(1))
    y = torch.randint(0, 2, (N, R), generator=_gen(2))
    plug = mutual_information(x, y, correction=None)
    mm = mutual_information(x, y)
    assert plug.shape == (R,) and (plug >= -1e-12).all()  # plug-in MI >= 0 up to rounding
    assert plug.mean().item() == pytest.approx(1 / (2 * N), rel=0.25)
    assert abs(mm.mean().item()) < 0.15 * plug.mean().item()
    # many samples: about 0 for a 1-bit and a 3-bit random channel
    big = 40000
    for k in (2, 8):
        a = torch.randint(0, k, (big,), generator=_gen(3))
        b = torch.randint(0, k, (big,), generator=_gen(4))
        assert abs(mutual_information(a, b).item()) < 2e-3


def test_noisy_bit_channel_matches_capacity_formula():
    """A bit through a binary symmetric channel with flip probability e:
    I = log 2 - H_b(e)."""
    N, e = 100000, 0.1
    x = torch.randint(0, 2, (N,), generator=_gen(5))
    flip = torch.rand(N, generator=_gen(6)) < e
    y = torch.where(flip, 1 - x, x)
    hb = -(e * math.log(e) + (1 - e) * math.log(1 - e))
    assert mutual_information(x, y).item() == pytest.approx(LOG2 - hb, abs=0.005)


# -- rollout measures ------------------------------------------------------------

def test_message_entropy_per_agent():
    T, E = 50, 100
    m = torch.stack([torch.full((T, E), 3), torch.randint(0, 2, (T, E), generator=_gen(1)),
                     torch.randint(0, 4, (T, E), generator=_gen(2))], -1)
    h = message_entropy(m)
    assert h.shape == (3,)
    assert h[0].item() == 0.0
    assert h[1].item() == pytest.approx(LOG2, abs=0.01)
    assert h[2].item() == pytest.approx(math.log(4), abs=0.01)


def test_lagged_pairs_respect_episode_ends():
    m = torch.arange(5)[:, None, None]  # (T=5, E=1, A=1): message t at step t
    a = 10 + torch.arange(5)[:, None, None]
    dones = torch.tensor([False, True, False, False, True])[:, None]  # episodes: steps 0-1 and 2-4
    mm, aa = lagged_pairs(m, a, 1, dones)
    assert mm[:, 0].tolist() == [0, 2, 3] and aa[:, 0].tolist() == [11, 13, 14]
    mm, aa = lagged_pairs(m, a, 2, dones)
    assert mm[:, 0].tolist() == [2] and aa[:, 0].tolist() == [14]
    mm, aa = lagged_pairs(m, a, 0)
    assert torch.equal(mm[:, 0], torch.arange(5))


def _rollout(T=60, E=400, dones_every=None, seed=0):
    """Three agents. Agent 0's next action repeats its message (consistent
    speaker) and agent 1's next action copies agent 0's message (a listener);
    agent 2 talks and acts at random. Episodes end every ``dones_every`` steps,
    and the first action of an episode is random (no message to act on)."""
    g = _gen(seed)
    m = torch.randint(0, 2, (T, E, 3), generator=g)
    a = torch.randint(0, 2, (T, E, 3), generator=g)
    dones = torch.zeros(T, E, dtype=torch.bool)
    if dones_every:
        dones[dones_every - 1::dones_every] = True
    follow = torch.ones(T, E, dtype=torch.bool)
    follow[0] = False
    follow[1:] = ~dones[:-1]  # the step after an episode end starts fresh
    a[..., 0] = torch.where(follow, torch.roll(m[..., 0], 1, 0), a[..., 0])
    a[..., 1] = torch.where(follow, torch.roll(m[..., 0], 1, 0), a[..., 1])
    return m, a, dones


def test_speaker_consistency():
    m, a, _ = _rollout()
    sc = speaker_consistency(m, a)
    assert sc.shape == (3,)
    assert sc[0].item() == pytest.approx(LOG2, abs=0.01)
    assert abs(sc[1].item()) < 0.003 and abs(sc[2].item()) < 0.003  # agent 1 follows agent 0, not itself
    # across episode boundaries the link breaks: with dones the measure is exact, without it is diluted
    m, a, dones = _rollout(dones_every=2)
    assert speaker_consistency(m, a, dones=dones)[0].item() == pytest.approx(LOG2, abs=0.01)
    diluted = speaker_consistency(m, a)[0].item()
    assert 0.05 < diluted < 0.4  # half of the pairs cross an episode end (measured about 0.13 nats)
    # the same step carries no information here
    assert abs(speaker_consistency(m, a, lag=0)[0].item()) < 0.003


def test_instantaneous_coordination():
    m, a, _ = _rollout()
    ic = instantaneous_coordination(m, a)
    assert ic.shape == (3, 3)
    assert torch.isnan(ic.diagonal()).all()
    assert ic[0, 1].item() == pytest.approx(LOG2, abs=0.01)  # agent 1 acts on agent 0's message
    off = ic[~torch.eye(3, dtype=torch.bool)]
    others = torch.cat([off[:0], off[1:]])  # every pair but (0, 1)
    assert others.abs().max().item() < 0.003
    # speakers and listeners in different groups: a full (A_s, A_l) matrix
    ic2 = instantaneous_coordination(m[..., :1], a[..., 1:])
    assert ic2.shape == (1, 2) and not torch.isnan(ic2).any()
    assert ic2[0, 0].item() == pytest.approx(LOG2, abs=0.01)


# -- causal influence ------------------------------------------------------------

def test_causal_influence_hand_made_listeners():
    N, M = 32, 4
    states = torch.randn(N, 3, generator=_gen())
    eye = torch.eye(M)

    def copier(s, msg):  # the action is the message
        return eye[msg]

    def deaf(s, msg):  # ignores the message, acts on the state
        return torch.softmax(s.sum(-1, keepdim=True) * torch.arange(M), -1)

    def coarse(s, msg):  # hears only the message's high bit
        return torch.nn.functional.one_hot(msg // 2, 2).float()

    torch.testing.assert_close(causal_influence(copier, states, M), torch.full((N,), math.log(4), dtype=torch.float64))
    assert causal_influence(deaf, states, M).abs().max().item() < 1e-12
    torch.testing.assert_close(causal_influence(coarse, states, M), torch.full((N,), LOG2, dtype=torch.float64))
    # the speaker always says the same thing: no variation, no influence
    one = eye[torch.zeros(N, dtype=torch.long)]
    assert causal_influence(copier, states, M, message_probs=one).abs().max().item() < 1e-12
    # a speaker that says 0 or 1 with probability (p, 1 - p): the copier's influence is H(p)
    p = torch.rand(N, generator=_gen(1))
    probs = torch.stack([p, 1 - p, torch.zeros(N), torch.zeros(N)], -1)
    hp = -(p * p.log() + (1 - p) * (1 - p).log())
    torch.testing.assert_close(causal_influence(copier, states, M, message_probs=probs), hp.double())
    # logits input, and several listeners at once (extra dims are kept)
    two = causal_influence(lambda s, msg: torch.stack([eye[msg] * 50, torch.zeros(len(msg), M)], 1), states, M,
                           logits=True)
    assert two.shape == (N, 2)
    assert two[:, 0].mean().item() == pytest.approx(math.log(4), abs=1e-6)
    assert two[:, 1].abs().max().item() < 1e-12


def test_causal_influence_state_dependent_listener():
    """The listener copies the message in half the states and ignores it in the
    others: influence log M there and 0 elsewhere."""
    N, M = 10, 3
    states = torch.arange(N).float()[:, None]
    eye = torch.eye(M)

    def listener(s, msg):
        listens = (s[:, 0] % 2 == 0)[:, None]
        return torch.where(listens, eye[msg], torch.full((len(msg), M), 1 / M))

    ci = causal_influence(listener, states, M)
    want = torch.tensor([math.log(3) if i % 2 == 0 else 0.0 for i in range(N)], dtype=torch.float64)
    torch.testing.assert_close(ci, want)


# -- ablations ---------------------------------------------------------------------

def test_ablation_transforms():
    g = _gen()
    idx = torch.randint(0, 4, (100, 3, 2), generator=g)  # (E, A, L)
    m = torch.nn.functional.one_hot(idx, 4).float()  # (E, A, L, V)
    assert (zero_messages(m) == 0).all()
    r = random_messages(m, _gen(1))
    assert r.shape == m.shape and torch.equal(r.sum(-1), torch.ones(100, 3, 2))
    s = shuffle_messages(m, _gen(2))
    assert s.shape == m.shape
    # the marginal is kept (a permutation of the senders), the pairing with the sender is not
    assert torch.equal(s.sum((0, 1)), m.sum((0, 1)))
    assert not torch.equal(s, m)
    w = shuffle_messages(m, _gen(3), within_env=True)
    assert torch.equal(w.sum(1), m.sum(1))  # each env keeps its messages...
    moved = (w.argmax(-1) != m.argmax(-1)).any(-1)  # ...but every agent gets another agent's
    same_msgs = (m[:, :, None].argmax(-1) == m[:, None].argmax(-1)).all(-1).sum(-1) > 1  # unless duplicated
    assert (moved | same_msgs).all()


def test_message_ablation_on_a_referential_game():
    """A listener that reads the speaker's one-hot symbol: intact messages give
    success 1; zeroed, shuffled or random ones give chance (1/4)."""
    K, N = 4, 20000
    target = torch.randint(0, K, (N,), generator=_gen(7))
    sent = torch.nn.functional.one_hot(target, K).float()[:, None, None]  # (N, A=1, L=1, V=K)
    calls = []

    def evaluate(transform):
        calls.append(transform)
        m = sent if transform is None else transform(sent)
        guess = torch.where(m.sum(-1) > 0, m.argmax(-1), torch.randint(0, K, (N, 1, 1), generator=_gen(8)))
        return (guess[:, 0, 0] == target).float().mean().item()

    out = message_ablation(evaluate)
    assert calls[0] is None and len(calls) == 4
    assert out["intact"] == 1.0
    for name in ("zeroed", "shuffled", "random"):
        assert out[name] == pytest.approx(1 / K, abs=0.015), (name, out[name])
        assert out[f"drop/{name}"] == pytest.approx(out["intact"] - out[name])
    with pytest.raises(ValueError, match="unknown ablation"):
        message_ablation(evaluate, ablations=("intact", "scrambled"))


# -- attention -------------------------------------------------------------------

def test_attention_entropy():
    attn = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    h = attention_entropy(attn)
    torch.testing.assert_close(h, torch.tensor([math.log(4), 0.0, LOG2, 0.0]))
    torch.testing.assert_close(attention_entropy(attn, normalized=True), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # TarMAC's broadcast mode is uniform over the heard senders: normalized entropy 1
    mask = torch.rand(8, 5, 5, generator=_gen()) < 0.7
    mask |= torch.eye(5, dtype=torch.bool)
    _, a = TarMAC(6, targeted=False)(torch.randn(8, 5, 6), mask, return_attention=True)
    hn = attention_entropy(a[:, 0], normalized=True)
    several = mask.sum(-1) > 1
    torch.testing.assert_close(hn[several], torch.ones(int(several.sum())))
    torch.testing.assert_close(attention_entropy(a[:, 0]), mask.sum(-1).float().log())
