"""experiments/spread_comm.py: its measurement helpers on constructed cases, and the
whole pipeline (train, checkpoints, measure, report) on a tiny run."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sc(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("spread_comm", ROOT / "experiments" / "spread_comm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.OUT = tmp_path_factory.mktemp("spread_comm")
    mod.FIGURES = tmp_path_factory.mktemp("figures")
    return mod


def test_substitute_senders_matches_commnet_by_hand(sc):
    """Receiver i keeps its state and hears the substituted senders: with the real
    states it is the module itself; otherwise h_i + tanh(W [h_i, mean_{j != i} s_j] + b)."""
    from fastmarl.nn.comm import CommNet

    torch.manual_seed(0)
    comm = CommNet(4, rounds=1)
    h, s = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    torch.testing.assert_close(sc.substitute_senders(comm, h, h), comm(h))
    got = sc.substitute_senders(comm, h, s)
    layer = comm.layers[0]
    for i in range(3):
        c = (s.sum(1) - s[:, i]) / 2
        want = h[:, i] + torch.tanh(torch.cat([h[:, i], c], -1) @ layer.weight[0] + layer.bias[0])
        torch.testing.assert_close(got[:, i], want)
    # "zeroed": nobody else is heard, so CommNet's message is 0
    z = sc.continuous_comm(comm, h, "zeroed", torch.Generator())
    torch.testing.assert_close(z, h + torch.tanh(torch.cat([h, torch.zeros_like(h)], -1) @ layer.weight[0]
                                                 + layer.bias[0]))


def test_message_stats_on_constructed_messages(sc):
    """Agent 0 says the sign of its x, agent 1 says the sign of its y, agent 2 says
    coin flips: the MIs are log 2 where they should be and about 0 elsewhere."""
    g = torch.Generator().manual_seed(0)
    T, E, A = 25, 400, 3
    pos = torch.rand(T, E, A, 2, generator=g) * 2 - 1
    lm = torch.rand(T, E, 3, 2, generator=g) * 2 - 1
    msg = torch.stack([(pos[..., 0, 0] > 0), (pos[..., 1, 1] > 0),
                       torch.rand(T, E, generator=g) < 0.5], -1).long()
    data = {"msg": msg, "move": torch.randint(0, 5, (T, E, A), generator=g), "done": torch.zeros(T, E, dtype=bool),
            "pos": pos, "lm": lm}
    s = sc.message_stats(data, lag=0)
    assert s["mi_x_sign"][0] == pytest.approx(math.log(2), abs=1e-3)
    assert s["mi_y_sign"][1] == pytest.approx(math.log(2), abs=1e-3)
    for v in (s["mi_x_sign"][1], s["mi_x_sign"][2], s["mi_y_sign"][0], s["mi_y_sign"][2],
              s["mi_nearest_landmark"][2], s["consistency"][0], s["coordination"]):
        assert abs(v) < 2e-3, s
    assert s["corr_x"][0] > 0.8 and abs(s["corr_x"][2]) < 0.05
    assert s["p_one"][2] == pytest.approx(0.5, abs=0.02)
    assert s["entropy"][2] == pytest.approx(math.log(2), abs=1e-3)


@pytest.mark.slow
def test_pipeline_on_a_tiny_run(sc):
    """Train the bit-channel and DIAL variants briefly, measure the initial weights and
    both checkpoints, and build the report from the saved measurements."""
    for v in ("bit", "dial"):
        sc.train_run(v, 0, 10_000, 2)
        r = sc.measure_run(v, 0, 24, 40)
        assert [p["step"] for p in r["points"]] == [0, 5000, 10_000]
        for p in r["points"]:
            ret = p["returns"]
            assert set(ret) >= {"intact", "zeroed", "shuffled", "random"}
            assert ret["drop/zeroed"] == pytest.approx(ret["intact"] - ret["zeroed"])
            assert -1e-9 <= p["causal"]["ci"] <= math.log(2) and -1e-9 <= p["causal"]["ci_uniform"] <= math.log(2)
            assert len(p["causal"]["ci_pairs"]) == 6
            assert all(0 <= e <= math.log(2) + 1e-2 for e in p["messages"]["entropy"])
    # the initial weights are the run's: the same return as a policy built the runner's way
    run = sc.OUT / "dial_s0"
    pol, cfg, env = sc.load_at(run, None, 24)
    pol2, _, _ = sc.load_at(run, None, 24)
    assert all(torch.equal(a, b) for a, b in zip(pol.weights().values(), pol2.weights().values()))

    class Args:
        steps, points, episodes, states = 10_000, 2, 24, 40

    text = sc.report(["bit", "dial"], [0], Args)
    final = sc.load_measures(["dial"], [0])["dial"][0]["points"][-1]["returns"]["intact"]
    assert f"{final:.2f}" in text and "## Conclusion" in text and "Verdict" in text
