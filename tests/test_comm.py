"""Communication modules (fastmarl.nn.comm): shapes, topology, permutation
equivariance, exact decentralization (autograd), the discrete channel and its
noise, straight-through gradients, and a referential game that needs a message.

Messages sent as extra actions and heard at the next step (learned by a policy
gradient) are the env wrapper BroadcastChannel's: see tests/test_comm_wrappers.py."""

from __future__ import annotations

import math

import pytest
import torch

from fastmarl.envs.comm import all_to_all_mask, message_digits, message_index, range_mask, reachability
from fastmarl.nn.comm import CommNet, DialComm, DiscreteChannel, TarMAC, gumbel_softmax_st, make_comm, masked_softmax
from fastmarl.nn.layers import AgentLinear, AgentMLP


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _modules(H=8):
    torch.manual_seed(0)
    return {
        "commnet1": CommNet(H, rounds=1), "commnet2": CommNet(H, rounds=2),
        "tarmac1": TarMAC(H, key_dim=4, rounds=1), "tarmac2": TarMAC(H, key_dim=4, value_dim=6, rounds=2),
        "tarmac_broadcast": TarMAC(H, rounds=1, targeted=False),
    }


# -- topology ------------------------------------------------------------------

def test_all_to_all_and_range_masks():
    assert all_to_all_mask(3).all()
    assert torch.equal(all_to_all_mask(3, self_loops=False), ~torch.eye(3, dtype=torch.bool))
    # four agents on a line at x = 0, 0.5, 1.5, 3.0; radius 1: 0-1 and 1-2 in range (1.0 is inclusive)
    pos = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.5, 0.0], [3.0, 0.0]])
    want = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(range_mask(pos, 1.0), want)
    assert torch.equal(range_mask(pos, 1.0, self_loops=False), want & ~torch.eye(4, dtype=torch.bool))
    # batched positions and one radius per env
    batch = torch.stack([pos, pos * 10])
    m = range_mask(batch, torch.tensor([1.0, 16.0])[:, None, None])
    assert m.shape == (2, 4, 4)
    assert torch.equal(m[0], want)
    assert torch.equal(m[1], torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool))
    # chain 0-1-2-3: after r rounds, i is reachable from j iff |i - j| <= r
    chain = range_mask(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]), 1.0)
    idx = torch.arange(4)
    for r in (1, 2, 3):
        assert torch.equal(reachability(chain, r), (idx[:, None] - idx[None]).abs() <= r)


# -- CommNet / TarMAC ------------------------------------------------------------

@pytest.mark.parametrize("name", list(_modules()))
def test_shapes_leading_dims(name):
    mod = _modules()[name]
    for lead in [(), (5,), (3, 5)]:
        h = torch.randn(*lead, 4, 8)
        out = mod(h)
        assert out.shape == h.shape
        mask = torch.rand(*lead, 4, 4) < 0.5
        assert mod(h, mask).shape == h.shape
        assert mod(h, all_to_all_mask(4)).shape == h.shape  # an (A, A) mask broadcasts over the batch
        if name.startswith("tarmac"):
            out, attn = mod(h, mask, return_attention=True)
            assert attn.shape == (*lead, mod.rounds, 4, 4)
            heard = mask.any(-1)
            sums = attn.sum(-1)  # rows: 1 where the receiver hears someone, 0 otherwise
            torch.testing.assert_close(sums, heard[..., None, :].expand_as(sums).float())
            assert (attn[~mask[..., None, :, :].expand_as(attn)] == 0).all()


@pytest.mark.parametrize("name", list(_modules()))
def test_permutation_equivariance(name):
    """Shared weights: permuting the agents (and the mask's rows and columns)
    permutes the outputs, and the attention, the same way."""
    mod = _modules()[name]
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 5, 8, generator=g)
    mask = torch.rand(6, 5, 5, generator=g) < 0.6
    perm = torch.tensor([3, 0, 4, 1, 2])
    for m in (None, mask):
        out = mod(h, m)
        mp = None if m is None else m[:, perm][:, :, perm]
        torch.testing.assert_close(mod(h[:, perm], mp), out[:, perm], atol=1e-6, rtol=1e-5)
    if name.startswith("tarmac"):
        _, attn = mod(h, mask, return_attention=True)
        _, attn_p = mod(h[:, perm], mask[:, perm][:, :, perm], return_attention=True)
        torch.testing.assert_close(attn_p, attn[..., perm, :][..., perm], atol=1e-6, rtol=1e-5)


def test_commnet_matches_hand_computation():
    """One round: h + tanh(W [h, mean of heard others]); nobody heard -> c = 0."""
    torch.manual_seed(0)
    net = CommNet(3, rounds=1)
    h = torch.randn(4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    c = torch.stack([(h[1] + h[2]) / 2, torch.zeros(3), (h[0] + h[3]) / 2, (h[0] + h[1] + h[2]) / 3])
    lin = net.layers[0]
    want = h + torch.tanh(torch.cat([h, c], -1) @ lin.weight[0] + lin.bias[0])
    torch.testing.assert_close(net(h, mask), want)
    # with mask None, everyone hears all the others
    c_all = (h.sum(0, keepdim=True) - h) / 3
    torch.testing.assert_close(net(h), h + torch.tanh(torch.cat([h, c_all], -1) @ lin.weight[0] + lin.bias[0]))


def test_tarmac_attention_matches_hand_computation():
    torch.manual_seed(0)
    net = TarMAC(5, key_dim=3, value_dim=4, rounds=1)
    h = torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    _, attn = net(h, mask, return_attention=True)
    e = h @ net.emit[0].weight[0] + net.emit[0].bias[0]
    q, k = e[:, :3], e[:, 3:6]
    s = q @ k.T / math.sqrt(3)
    want = torch.zeros(3, 3)
    want[0, :2] = torch.softmax(s[0, :2], 0)
    want[1, [0, 2]] = torch.softmax(s[1, [0, 2]], 0)
    torch.testing.assert_close(attn[0], want)  # receiver 2 hears nobody: a row of zeros
    # broadcast: uniform over the senders heard
    bc = TarMAC(5, rounds=2, targeted=False)
    _, attn = bc(h, mask, return_attention=True)
    uniform = mask.float() / mask.float().sum(-1, keepdim=True).clamp_min(1)
    torch.testing.assert_close(attn, uniform.expand(2, 3, 3))
    # masked_softmax without a mask is the plain softmax
    torch.testing.assert_close(masked_softmax(s, None), torch.softmax(s, -1))


def _dependence(fn, x: torch.Tensor) -> torch.Tensor:
    """(A_out, A_in) bool: output agent i has a non-zero gradient w.r.t. input agent j
    (x (A, F) -> fn(x) (A, G)), from the exact Jacobian."""
    J = torch.autograd.functional.jacobian(fn, x)  # (A, G, A, F)
    return J.abs().sum((1, 3)) > 0


@pytest.mark.parametrize("name", list(_modules()))
def test_decentralized_by_construction(name):
    """Agent i's output has a zero gradient w.r.t. agent j's input exactly when j
    cannot reach i within the module's rounds (1 round: i does not hear j), and a
    non-zero one when it can."""
    mod = _modules()[name].double()
    g = torch.Generator().manual_seed(3)
    chain = range_mask(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [9.0, 0.0]]), 1.0)
    one_way = torch.eye(5, dtype=torch.bool)
    one_way[0, 1] = one_way[1, 2] = one_way[3, 0] = True  # directed: 0 hears 1, 1 hears 2, 3 hears 0
    for mask in (chain, one_way, all_to_all_mask(5)):
        h = torch.randn(5, 8, generator=g, dtype=torch.float64)
        dep = _dependence(lambda x: mod(x, mask), h)
        want = reachability(mask, mod.rounds)
        if name.startswith("commnet"):  # CommNet never uses the diagonal, but always keeps itself
            want = reachability(mask & ~torch.eye(5, dtype=torch.bool), mod.rounds)
        assert torch.equal(dep, want), f"{name}: dependence\n{dep.int()}\nexpected\n{want.int()}"
    # envs of a batch never mix
    h = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda x: mod(x, chain), h)  # (3, 5, 8, 3, 5, 8)
    cross = J.abs().sum((1, 2, 4, 5))
    assert (cross - torch.diag(torch.diag(cross)) == 0).all() and (torch.diag(cross) > 0).all()


def test_make_comm():
    assert isinstance(make_comm("commnet", 8, rounds=3), CommNet) and make_comm("commnet", 8, rounds=3).rounds == 3
    assert make_comm("tarmac", 8).targeted and not make_comm("tarmac_broadcast", 8).targeted
    with pytest.raises(ValueError, match="commnet"):
        make_comm("gnn", 8)


# -- discrete channel -----------------------------------------------------------

def test_message_index_roundtrip():
    digits = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]])
    idx = message_index(digits, 2)
    assert idx.tolist() == [0, 1, 6, 7]
    assert torch.equal(message_digits(idx, 2, 3), digits)
    all_idx = torch.arange(27)
    assert torch.equal(message_index(message_digits(all_idx, 3, 3), 3), all_idx)


def test_channel_message_distribution():
    """Samples follow softmax(logits) per digit; the forward value is exactly
    one-hot; deterministic messages are the most likely digits."""
    torch.manual_seed(0)
    ch = DiscreteChannel(6, vocab_size=3, message_length=2)
    with torch.no_grad():
        ch.head.weight.mul_(300)  # make the distribution far from uniform
    h = torch.randn(1, 2, 6).expand(20000, 2, 6)
    gen = torch.Generator().manual_seed(0)
    msg = ch(h, generator=gen)
    assert msg.onehot.shape == (20000, 2, 2, 3) and msg.index.shape == (20000, 2)
    assert torch.equal(msg.onehot.argmax(-1), msg.digits)
    assert torch.equal(msg.onehot.detach().sum(-1), torch.ones(20000, 2, 2))  # exactly one-hot forward
    assert torch.equal(msg.index, message_index(msg.digits, 3))
    p = torch.softmax(msg.logits[0], -1).detach()  # (2, 2, 3)
    freq = torch.nn.functional.one_hot(msg.digits, 3).float().mean(0)
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)
    # deterministic: the most likely digit
    assert torch.equal(ch(h[:2], deterministic=True).digits, msg.logits[:2].argmax(-1))
    assert ch.num_messages == 9 and ch.message_dim == 6 and ch.received_dim(4) == 18


def test_deliver_order_mask_and_links():
    ch = DiscreteChannel(4, vocab_size=3, message_length=1)
    digits = torch.tensor([[[0], [1], [2]]])  # (1, A=3, L=1)
    onehot = torch.nn.functional.one_hot(digits, 3).float()
    rec = ch.deliver(onehot).view(1, 3, 2, 3)  # receiver, slot (the others in order), one-hot
    assert rec.argmax(-1).tolist() == [[[1, 2], [0, 2], [0, 1]]]
    mask = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1]], dtype=torch.bool)
    rec = ch.deliver(onehot, mask).view(1, 3, 2, 3)
    heard = rec.sum(-1)
    assert heard.tolist() == [[[0, 1], [0, 0], [1, 1]]]
    # a certain drop: nothing arrives; a certain flip of bits: every bit inverted
    assert (DiscreteChannel(4, drop_prob=1.0).deliver(torch.ones(2, 3, 1, 2) / 2) == 0).all()
    bits = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [1, 1], [0, 0]]]), 2).float()  # (1, 3, L=2, 2)
    flipped = DiscreteChannel(4, message_length=2, flip_prob=1.0).deliver(bits).view(1, 3, 2, 2, 2)
    sent = bits.argmax(-1)[0]
    others = torch.tensor([[1, 2], [0, 2], [0, 1]])
    assert torch.equal(flipped.argmax(-1)[0], 1 - sent[others])
    # without noise=True the links are perfect
    assert torch.equal(DiscreteChannel(4, drop_prob=1.0).deliver(bits[..., :1, :], noisy=False).view(1, 3, 2, 2),
                       bits[0, others][None, :, :, 0])


def test_channel_noise_rates():
    """flip_prob p: a digit changes with probability p, to each other value with
    probability p / (V - 1); drop_prob q: a link is silent with probability q."""
    ch = DiscreteChannel(4, vocab_size=4, flip_prob=0.3, drop_prob=0.2)
    N = 20000
    onehot = torch.nn.functional.one_hot(torch.zeros(N, 3, 1, dtype=torch.long), 4).float()
    gen = torch.Generator().manual_seed(0)
    rec = ch.deliver(onehot, generator=gen).view(N, 3, 2, 4)
    alive = rec.sum(-1) > 0
    assert abs(1 - alive.float().mean().item() - 0.2) < 0.01
    values = rec.argmax(-1)[alive]
    freq = torch.bincount(values, minlength=4).float() / values.numel()
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.1, 0.1, 0.1]), atol=0.01, rtol=0)


def test_gumbel_straight_through_gradient():
    """Forward: an exact one-hot sample; backward: the gradient of the relaxed
    sample softmax((logits + g) / tau) for the same Gumbel noise g."""
    torch.manual_seed(0)
    logits = torch.randn(64, 5, requires_grad=True)
    w = torch.randn(64, 5)
    tau = 0.7
    hard, idx = gumbel_softmax_st(logits, tau, torch.Generator().manual_seed(42))
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(idx, 5).float())
    (g_st,) = torch.autograd.grad((hard * w).sum(), logits)
    u = torch.rand(64, 5, generator=torch.Generator().manual_seed(42))  # the same noise
    gumbel = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
    assert torch.equal(idx, (logits + gumbel).argmax(-1))
    soft = torch.softmax((logits + gumbel) / tau, -1)
    (g_soft,) = torch.autograd.grad((soft * w).sum(), logits)
    torch.testing.assert_close(g_st, g_soft)
    assert g_st.abs().sum() > 0
    # through a flipping link the gradient still reaches the speaker's logits, permuted
    ch = DiscreteChannel(3, vocab_size=2, flip_prob=1.0)
    h = torch.randn(1, 2, 3, requires_grad=True)
    msg = ch(h, generator=torch.Generator().manual_seed(0))
    rec = ch.deliver(msg.onehot)  # (1, 2, 2): each agent gets the other's flipped bit
    (g,) = torch.autograd.grad(rec[0, 1, 0], h)  # agent 1's received "0" = agent 0's "1"
    assert g[0, 0].abs().sum() > 0 and (g[0, 1] == 0).all()


@pytest.mark.parametrize("rounds", [1, 2])
def test_dial_comm_decentralized(rounds):
    """Agent i's output depends on agent j's input exactly when j reaches i within
    the rounds over a directed mask, and only through the messages: with the sent
    messages detached, every agent depends on itself alone."""
    torch.manual_seed(0)
    A, H = 4, 5
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    comm = DialComm(H, A, rounds=rounds, vocab_size=2, message_length=2).double()
    noise = comm.sample_noise(generator=torch.Generator().manual_seed(7))  # one message sample for every evaluation
    h = torch.randn(A, H, dtype=torch.float64)

    def run(transform=None):
        return lambda x: comm(x, mask, noise, message_transform=transform)[0]

    assert torch.equal(_dependence(run(), h), reachability(mask, rounds))
    assert torch.equal(_dependence(run(lambda m: m.detach()), h), torch.eye(A, dtype=torch.bool))


# -- learning: a referential game needs the message ---------------------------------

def referential_success(K: int = 4, bits: int = 3, iters: int = 300, seed: int = 0, **channel) -> float:
    """Agent 0 (speaker) sees a target in [0, K); agent 1 (listener) sees nothing and
    must name the target; both get reward 1 when it does. The network is per agent
    (an MLP body, :class:`DialComm`, a linear head): the listener's outputs are
    Q-values learned by regression on the reward of an epsilon-greedy answer, and
    the speaker learns only through the channel (DIAL: the Q-loss differentiated
    through the straight-through message, temperature 2), 128 games a batch.
    Returns the greedy success rate on 2000 fresh games.

    Messages have ``bits`` bits, one more than log2(K) = 2 for K = 4: a spare bit
    guards against two targets settling on one message (success 0.75); with this
    network 2 bits also reached 1.0 on seeds 0-5."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    E = 128
    body = AgentMLP(2, K, 32, 1, "tanh")
    comm = DialComm(body.out_features, 2, num_nets=2, vocab_size=2, message_length=bits, temperature=2.0, **channel)
    head = AgentLinear(2, body.out_features, K, gain=0.01)
    opt = torch.optim.Adam([*body.parameters(), *comm.parameters(), *head.parameters()], lr=1e-2)

    def play(n: int, deterministic: bool):
        target = torch.randint(0, K, (n,), generator=gen)
        obs = torch.zeros(n, 2, K)
        obs[:, 0] = torch.nn.functional.one_hot(target, K).float()
        h, _ = comm(body(obs), deterministic=deterministic, generator=gen)
        return target, head(h)[:, 1]

    for _ in range(iters):
        target, q = play(E, False)
        explore = torch.rand(E, generator=gen) < 0.1
        a = torch.where(explore, torch.randint(0, K, (E,), generator=gen), q.argmax(-1))
        r = (a == target).float()
        loss = ((q.gather(-1, a[:, None])[:, 0] - r) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        target, q = play(2000, True)
        return (q.argmax(-1) == target).float().mean().item()


def test_referential_game_learns_to_communicate():
    K = 4
    success = referential_success(K)
    assert success > 0.9, f"success {success:.3f} (chance {1 / K})"


def test_referential_game_noisy_channel_and_no_channel():
    """With 10% bit flips per link the listener still does far better than chance
    but is capped by the noise; with every message dropped it is at chance."""
    K = 4
    noisy = referential_success(K, flip_prob=0.1)
    assert 0.7 < noisy < 0.9, noisy  # measured 0.79-0.82 over seeds 0-5
    silent = referential_success(K, iters=100, drop_prob=1.0)
    assert abs(silent - 1 / K) < 0.06, silent
