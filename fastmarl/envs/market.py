"""market_v0: market makers quote around a moving fair price; traders with private values arrive.

A mixed-motive game: makers compete for order flow (the tightest quote trades)
yet all gain when spreads stay wide, and all carry inventory risk. Prices are
relative to the initial fair price (0). Per step, in every env at once:

1. Each maker of group ``"maker"`` (``num_makers`` M) picks one action of the
   grid ``half_spreads x skews`` (``Discrete(len(half_spreads) * len(skews))``,
   ``a = i_spread * len(skews) + i_skew``) and quotes ``bid = r - h + k``,
   ``ask = r + h + k`` around the reference ``r``: the fair price when
   ``observe_fair`` (default), else the public mid (the mean price of the last
   step that had trades). Defaults: ``h`` in (0.5, 1, 2), ``k`` in (-0.5, 0, 0.5);
   ``max |k| <= min h`` is required so no two quotes ever cross. With
   ``continuous_actions=True`` every group's action is a ``Box(0, 1, (n,))``
   weight vector over its n discrete actions, and its argmax is taken.
2. The fair price moves: ``p' = p + volatility * N(0, 1)``, plus a jump
   ``jump_size * N(0, 1)`` with probability ``jump_prob``. Quotes are posted
   before the move, so fast moves are adverse selection.
3. Orders of one unit each are cleared at once, each side separately. A
   scripted noise trader arrives in each of ``trader_slots`` slots with
   probability ``arrival_rate``, with value ``v = p' + value_noise * N(0, 1)``;
   it buys if ``v`` is above the best ask, sells if below the best bid. A
   learning trader of group ``"trader"`` (``num_traders``, absent when 0) takes
   its action as a market order (0 hold, 1 buy, 2 sell); it sees a private
   signal ``shock + signal_noise * N(0, 1)`` of the coming move. Buy orders are
   filled best first (learning traders in index order, then by value, highest
   first), each taking one unit from the cheapest ask with capacity left, as
   long as the ask is below the order's value; a maker can sell ``inventory +
   inventory_limit`` units in a step and buy ``inventory_limit - inventory``, so
   inventories stay within the limit. Sells mirror this (lowest values first,
   highest bids). Equal quotes are ordered uniformly at random (seeded).
   Scripted traders form one tracked counterparty, so over all agents and it,
   cash and inventory changes sum to 0 exactly.

Reward of every agent: the change of its mark-to-market value ``cash +
inventory * p`` over the step (spread capture plus inventory revaluation); makers
also pay ``inventory_penalty * inventory'^2`` (inventory risk; learning traders
are risk-neutral speculators). The default 0.05 charges 0.8 per step for 4 units
held, about what one trade earns, so inventory has to be managed. No
termination; truncation after ``max_cycles`` steps.

Observations (prices divided by ``u = max(half_spreads)``; ``c`` = recent
changes of ``r``, newest first, ``HISTORY`` = 3 of them; ``fb``, ``fa`` = last
step's best bid / ask distance from that step's reference)::

    maker (E, M, 12): [inventory / limit, (cash + inventory * r) / (10 u), c / u (3),
                       fb / u, fa / u, own last bid and ask distance / u (2),
                       last step's buys and sells / rounds (2), t / max_cycles]
    trader (E, T, 6): [signal / u, inventory / limit, fb / u, fa / u, c[0] / u, t / max_cycles]

State (E, 9 + 4 M + 2 T): ``c / u`` (3), coming shock / u, maker inventories /
limit (M), maker values / (10 u) (M), makers' last bid and ask distances / u
(2 M), fb / u, fa / u, last buys and sells / rounds, trader inventories / limit
(T), trader values / (10 u) (T), t / max_cycles.

Baseline (:func:`baseline_policy`): every maker quotes the middle half-spread
with no skew (a symmetric fixed-spread maker, ``skew_inventory=True`` leans
against its inventory); learning traders buy when the signal exceeds twice the
last best ask distance, sell when below minus twice the best bid distance (at
the default noise levels half the signal is noise).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    FieldsState,
    GroupSpec,
    TimeStep,
    require_reset,
    reset_mask,
    reset_timestep,
    validate_actions,
)
from fastmarl.envs.mpe.core import check_kwargs

BASELINE = "scripted symmetric fixed-spread makers (middle half-spread, no skew); traders follow their signal"
HISTORY = 3
KWARGS: dict[str, Any] = dict(num_makers=2, num_traders=0, trader_slots=4, arrival_rate=0.5, volatility=0.5,
                              jump_prob=0.0, jump_size=3.0, value_noise=1.0, signal_noise=0.5,
                              half_spreads=(0.5, 1.0, 2.0), skews=(-0.5, 0.0, 0.5), inventory_limit=10,
                              inventory_penalty=0.05, observe_fair=True, max_cycles=50, continuous_actions=False,
                              dtype=torch.float32, validate=True, render_mode=None)


def _check(env_id: str, kw: dict[str, Any]) -> None:
    for name, lo in (("num_makers", 1), ("num_traders", 0), ("trader_slots", 0), ("inventory_limit", 1),
                     ("max_cycles", 1)):
        v = kw[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{env_id}: {name} must be an int >= {lo}, got {v!r}")
    for name, lo, hi in (("arrival_rate", 0, 1), ("jump_prob", 0, 1), ("volatility", 0, math.inf),
                         ("jump_size", 0, math.inf), ("value_noise", 0, math.inf), ("signal_noise", 0, math.inf),
                         ("inventory_penalty", 0, math.inf)):
        v = kw[name]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{env_id}: {name} must be a number in [{lo}, {hi}], got {v!r}")
    hs, sk = kw["half_spreads"], kw["skews"]
    if not isinstance(hs, (tuple, list)) or not hs or not all(isinstance(h, (int, float)) and h > 0 for h in hs):
        raise ValueError(f"{env_id}: half_spreads must be a non-empty tuple of positive numbers, got {hs!r}")
    if not isinstance(sk, (tuple, list)) or not sk or not all(isinstance(k, (int, float)) for k in sk):
        raise ValueError(f"{env_id}: skews must be a non-empty tuple of numbers, got {sk!r}")
    if max(abs(k) for k in sk) > min(hs):
        raise ValueError(f"{env_id}: skews must satisfy max |skew| <= min half_spread (no crossed quotes), "
                         f"got skews {sk!r} with half_spreads {hs!r}")
    if kw["trader_slots"] + kw["num_traders"] == 0:
        raise ValueError(f"{env_id}: trader_slots and num_traders are both 0: nobody would ever trade")
    if kw["dtype"] not in (torch.float32, torch.float64):
        raise ValueError(f"{env_id}: dtype must be torch.float32 or torch.float64, got {kw['dtype']}")
    if kw["render_mode"] not in (None, "rgb_array"):
        raise ValueError(f"{env_id}: render_mode {kw['render_mode']!r} is not supported: use None or 'rgb_array'")


class MarketEnv(FieldsState):
    """``num_envs`` copies of the market-making game; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    _STATE = ("fair", "mid", "hist", "shock", "signal", "inv", "cash", "noise_inv", "noise_cash", "quotes",
              "own", "best", "flow", "t")

    def __init__(self, num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None, **kw: Any):
        env_id = self.env_id = "market_v0"
        _check(env_id, kw)
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"{env_id}: num_envs must be a positive int, got {num_envs!r}")
        self.device = torch.empty(0, device=device).device
        self.num_envs, self.M, self.NT, self.S = num_envs, kw["num_makers"], kw["num_traders"], kw["trader_slots"]
        self.rounds, self.limit, self.T = self.NT + self.S, kw["inventory_limit"], kw["max_cycles"]
        for name in ("arrival_rate", "volatility", "jump_prob", "jump_size", "value_noise", "signal_noise",
                     "inventory_penalty"):
            setattr(self, name, float(kw[name]))
        self.continuous_actions = bool(kw["continuous_actions"])
        self.observe_fair, self.dtype, self.validate, self.render_mode = (bool(kw["observe_fair"]), kw["dtype"],
                                                                          kw["validate"], kw["render_mode"])
        f = dict(dtype=self.dtype, device=self.device)
        self.half_spreads, self.skews = torch.tensor(kw["half_spreads"], **f), torch.tensor(kw["skews"], **f)
        self.unit = float(max(kw["half_spreads"]))
        act = (lambda n: gym.spaces.Box(0.0, 1.0, (n,), np.float32)) if self.continuous_actions else gym.spaces.Discrete
        groups = {"maker": GroupSpec("maker", tuple(f"maker_{i}" for i in range(self.M)),
                                     gym.spaces.Box(-np.inf, np.inf, (12,), np.float32),
                                     act(len(kw["half_spreads"]) * len(kw["skews"])))}
        if self.NT:
            groups["trader"] = GroupSpec("trader", tuple(f"trader_{i}" for i in range(self.NT)),
                                         gym.spaces.Box(-np.inf, np.inf, (6,), np.float32), act(3))
        # makers and traders are paid by each other's trades, with different objectives (general-sum)
        self.spec = EnvSpec(env_id, groups, state_dim=9 + 4 * self.M + 2 * self.NT, max_episode_steps=self.T,
                            teams=tuple((g,) for g in groups))
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        E, P, li = num_envs, self.M + self.NT, dict(dtype=torch.long, device=self.device)
        self.fair, self.mid, self.shock = torch.zeros(E, **f), torch.zeros(E, **f), torch.zeros(E, **f)
        self.hist, self.signal = torch.zeros(E, HISTORY, **f), torch.zeros(E, self.NT, **f)
        self.inv, self.cash = torch.zeros(E, P, **li), torch.zeros(E, P, **f)  # makers then learning traders
        self.noise_inv, self.noise_cash = torch.zeros(E, **li), torch.zeros(E, **f)  # scripted traders, together
        self.quotes = torch.zeros(E, self.M, 2, **f)  # last absolute bid, ask of every maker
        self.own = torch.zeros(E, self.M, 2, **f)  # their distances below / above the reference
        self.best, self.flow = torch.zeros(E, 2, **f), torch.zeros(E, 2, **f)  # last fb, fa; buys, sells
        self.t = torch.zeros(E, **li)
        self.reset()  # allocates the state; step() still needs a reset() of its own
        self._was_reset = False

    @property
    def reference(self) -> Tensor:
        """(E,) the price quotes are placed around this step."""
        return self.fair if self.observe_fair else self.mid

    def _draw_shock(self, E: int) -> tuple[Tensor, Tensor]:
        g, f = self._gen, dict(dtype=self.dtype, device=self.device)
        z = torch.randn(E, 2, generator=g, **f)
        jump = torch.rand(E, generator=g, **f) < self.jump_prob
        shock = self.volatility * z[:, 0] + torch.where(jump, self.jump_size * z[:, 1], 0.0)
        return shock, shock[:, None] + self.signal_noise * torch.randn(E, self.NT, generator=g, **f)

    def _orders(self, fair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """This step's scripted orders: arrivals (E, S) bool, values (E, S) around ``fair`` (E,), and
        tie-break priorities (E, M)."""
        E, g, f = self.num_envs, self._gen, dict(dtype=self.dtype, device=self.device)
        arrive = torch.rand(E, self.S, generator=g, **f) < self.arrival_rate
        value = fair[:, None] + self.value_noise * torch.randn(E, self.S, generator=g, **f)
        return arrive, value, torch.rand(E, self.M, generator=g, **f)

    # -- observations and state -----------------------------------------------------
    def _obs(self) -> dict[str, Tensor]:
        E, M, u = self.num_envs, self.M, self.unit
        r = self.reference
        t = (self.t.to(self.dtype) / self.T)[:, None]
        inv = self.inv.to(self.dtype) / self.limit
        value = (self.cash + self.inv.to(self.dtype) * r[:, None]) / (10 * u)
        ex = lambda x, n: x[:, None].expand(E, n, x.shape[-1])  # noqa: E731
        maker = torch.cat([inv[:, :M, None], value[:, :M, None], ex(self.hist / u, M), ex(self.best / u, M),
                           self.own / u, ex(self.flow / max(self.rounds, 1), M), ex(t, M)], -1)
        out = {"maker": maker}
        if self.NT:
            out["trader"] = torch.cat([self.signal[..., None] / u, inv[:, M:, None], ex(self.best / u, self.NT),
                                       ex(self.hist[:, :1] / u, self.NT), ex(t, self.NT)], -1)
        return out

    def state(self) -> Tensor:
        """(E, 9 + 4 M + 2 T); layout in the module docstring."""
        u, M = self.unit, self.M
        value = (self.cash + self.inv.to(self.dtype) * self.reference[:, None]) / (10 * u)
        inv = self.inv.to(self.dtype) / self.limit
        return torch.cat([self.hist / u, self.shock[:, None] / u, inv[:, :M], value[:, :M],
                          self.own.flatten(1) / u, self.best / u, self.flow / max(self.rounds, 1),
                          inv[:, M:], value[:, M:], (self.t.to(self.dtype) / self.T)[:, None]], 1)

    # -- dynamics ---------------------------------------------------------------------
    def _reset_where(self, mask: Tensor) -> None:
        shock, signal = self._draw_shock(self.num_envs)
        m1 = mask[:, None]
        for name in ("fair", "mid", "noise_inv", "noise_cash", "t"):
            setattr(self, name, torch.where(mask, 0, getattr(self, name)))
        for name in ("hist", "inv", "cash", "best", "flow"):
            setattr(self, name, torch.where(m1, 0, getattr(self, name)))
        m2 = mask[:, None, None]
        self.quotes, self.own = torch.where(m2, 0, self.quotes), torch.where(m2, 0, self.own)
        self.shock, self.signal = torch.where(mask, shock, self.shock), torch.where(m1, signal, self.signal)

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) bool is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._reset_where(reset_mask(mask, self.num_envs, self.device))
        self._was_reset = True
        return reset_timestep(self.spec, self._obs(), self.dtype)

    def _ladder(self, quote: Tensor, capacity: Tensor, priority: Tensor, limit_price: Tensor,
                sign: float) -> tuple[Tensor, Tensor, Tensor]:
        """One side of the book. ``quote`` (E, M) prices, ``capacity`` (E, M) units each maker can still
        trade, ``priority`` (E, M) tie-breaks, ``limit_price`` (E, R) the orders' limit prices, best order
        first (buyers by value descending for sign 1, sellers ascending for -1). Order k takes unit k of
        the ladder of quotes, best first. Returns (maker (E, R) long, traded (E, R) bool, price (E, R))."""
        E, M = quote.shape
        by_prio = priority.argsort(dim=-1, descending=True)
        order = torch.gather(by_prio, 1, torch.gather(sign * quote, 1, by_prio).argsort(dim=-1, stable=True))
        price = torch.gather(quote, 1, order)  # best first: asks ascending (sign 1), bids descending (-1)
        cum = torch.gather(capacity, 1, order).cumsum(1)
        k = torch.arange(limit_price.shape[1], device=quote.device).expand(E, -1).contiguous()
        slot = torch.searchsorted(cum, k, right=True)  # (E, R) which maker in the ladder holds unit k
        ok = slot < M
        slot = slot.clamp(max=M - 1)
        price = torch.gather(price, 1, slot)
        traded = ok & (sign * limit_price > sign * price)
        return torch.gather(order, 1, slot), traded, torch.where(traded, price, 0.0)

    def match(self, bid: Tensor, ask: Tensor, trader_action: Tensor, arrive: Tensor, value: Tensor,
              priority: Tensor) -> Tensor:
        """Clear one step's orders against quotes ``bid``, ``ask`` (E, M); update inventories and cash.

        trader_action (E, T) long (0 hold, 1 buy, 2 sell): market orders; arrive (E, S) bool and
        value (E, S) of the scripted slots: limit orders, buying above the best ask, selling below the
        best bid; priority (E, M) tie-breaks between equal quotes (highest first). Buy orders are
        filled best value first (market orders first, then by index), each from the cheapest maker
        with capacity left (``inventory + limit`` units at the step's start), so inventories stay in
        ``[-limit, limit]``; sells mirror this. Returns (E, 4): buys, sells, summed buy and sell prices."""
        M, NT, inf = self.M, self.NT, math.inf
        inv = self.inv[:, :M]
        can_sell, can_buy = inv + self.limit, self.limit - inv  # makers' capacity, (E, M)
        best_ask = torch.where(can_sell > 0, ask, inf).min(1).values[:, None]
        best_bid = torch.where(can_buy > 0, bid, -inf).max(1).values[:, None]
        tinv = self.inv[:, M:]
        want_buy = torch.cat([(trader_action == 1) & (tinv < self.limit), arrive & (value > best_ask)], 1)
        want_sell = torch.cat([(trader_action == 2) & (tinv > -self.limit), arrive & (value < best_bid)], 1)
        market = torch.full_like(tinv, inf, dtype=self.dtype)  # learning traders' orders take any price
        dinv_m, dcash_m = torch.zeros_like(inv), torch.zeros_like(self.cash[:, :M])
        units, money = [], []
        for sign, want, quote, cap, limit in ((1.0, want_buy, ask, can_sell, torch.cat([market, value], 1)),
                                              (-1.0, want_sell, bid, can_buy, torch.cat([-market, value], 1))):
            key = torch.where(want, sign * limit, -inf)  # best order first: highest buy limit, lowest sell
            rank = key.argsort(dim=-1, descending=True, stable=True)
            maker, traded, price = self._ladder(quote, cap, priority, torch.gather(sign * key, 1, rank), sign)
            dinv_m = dinv_m.scatter_add(1, maker, -int(sign) * traded.long())  # a buy order: the maker sells
            dcash_m = dcash_m.scatter_add(1, maker, sign * price)
            units.append(torch.zeros_like(traded).scatter(1, rank, traded).long())  # back to order index
            money.append(torch.zeros_like(price).scatter(1, rank, price))
        (bought, sold), (pay, get) = units, money  # (E, T + S) per order
        self.inv = self.inv + torch.cat([dinv_m, bought[:, :NT] - sold[:, :NT]], 1)
        self.cash = self.cash + torch.cat([dcash_m, get[:, :NT] - pay[:, :NT]], 1)
        self.noise_inv = self.noise_inv + (bought[:, NT:] - sold[:, NT:]).sum(1)
        self.noise_cash = self.noise_cash + (get[:, NT:] - pay[:, NT:]).sum(1)
        return torch.stack([bought.sum(1), sold.sum(1), pay.sum(1), get.sum(1)], 1).to(self.dtype)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Step every env; see :mod:`fastmarl.envs.api`. Auto-resets ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        E, M = self.num_envs, self.M
        actions = {g: a.argmax(-1) if self.continuous_actions else a.long() for g, a in actions.items()}
        a = actions["maker"]
        nk = self.skews.numel()
        h, k = self.half_spreads[a // nk], self.skews[a % nk]
        r = self.reference
        bid, ask = r[:, None] - h + k, r[:, None] + h + k
        before = self.cash + self.inv.to(self.dtype) * self.fair[:, None]
        self.fair = self.fair + self.shock
        arrive, value, priority = self._orders(self.fair)
        trader_action = actions["trader"] if self.NT else torch.zeros(E, 0, dtype=torch.long, device=self.device)
        flow = self.match(bid, ask, trader_action, arrive, value, priority)
        after = self.cash + self.inv.to(self.dtype) * self.fair[:, None]
        reward = after - before
        reward[:, :M] -= self.inventory_penalty * self.inv[:, :M].to(self.dtype) ** 2
        n = flow[:, 0] + flow[:, 1]
        self.mid = torch.where(n > 0, (flow[:, 2] + flow[:, 3]) / n.clamp(min=1), self.mid)
        self.hist = torch.cat([(self.reference - r)[:, None], self.hist[:, :-1]], 1)
        self.quotes, self.own = torch.stack([bid, ask], -1), torch.stack([h - k, h + k], -1)
        self.best = torch.stack([r - bid.max(1).values, ask.min(1).values - r], -1)
        self.flow = flow[:, :2]
        self.shock, self.signal = self._draw_shock(E)
        self.t = self.t + 1
        trunc = self.t >= self.T
        obs = final_obs = self._obs()
        final_state = None
        if bool(trunc.any()):
            final_state = self.state()
            self._reset_where(trunc)
            obs = self._obs()
        rew = {"maker": reward[:, :M]}
        if self.NT:
            rew["trader"] = reward[:, M:]
        return TimeStep(obs=obs, reward=rew, terminated=torch.zeros_like(trunc), truncated=trunc,
                        final_obs=final_obs, final_state=final_state, info={"trades": n})

    # -- rendering and exact resume -----------------------------------------------------
    def render(self, env_index: int = 0, height: int = 200) -> np.ndarray:
        """RGB (height, 40 (M + 1), 3): per maker a column with its last ask (red) and bid (green)
        around the fair price (black line), and its inventory as a bar from the middle (blue long,
        orange short)."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        M, w = self.M, 40
        img = np.full((height, w * (M + 1), 3), 245, np.uint8)
        fair = float(self.fair[env_index])
        q = self.quotes[env_index].double().cpu().numpy()
        inv = self.inv[env_index, :M].cpu().numpy() / self.limit
        span = 2.0 * self.unit + 3.0 * max(self.volatility, 1e-3)
        def y(price: float) -> int:
            return int(np.clip(height / 2 - (price - fair) / span * (height / 2 - 4), 1, height - 2))
        img[height // 2, :] = (0, 0, 0)
        for m in range(M):
            x0 = w // 2 + m * w
            img[y(q[m, 1]) - 1:y(q[m, 1]) + 2, x0:x0 + w - 8] = (210, 40, 40)
            img[y(q[m, 0]) - 1:y(q[m, 0]) + 2, x0:x0 + w - 8] = (30, 160, 60)
            top = int(height / 2 - inv[m] * (height / 2 - 4))
            lo, hi = sorted((top, height // 2))
            img[lo:hi + 1, x0 + w // 2 - 6:x0 + w // 2 - 2] = (40, 80, 220) if inv[m] > 0 else (240, 140, 20)
        return img


def make_market(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                **kwargs: Any) -> MarketEnv:
    return MarketEnv(num_envs, device, seed, **check_kwargs("market_v0", kwargs, KWARGS))


class FixedSpreadMaker:
    """Scripted makers (``Policy`` protocol): quote the middle entry of ``half_spreads`` with the skew
    closest to 0; with ``skew_inventory`` take the lowest skew when long more than a third of the limit
    and the highest when short. Learning traders buy when their signal exceeds twice the last best ask
    distance, sell when it is below minus twice the last best bid distance, else hold. Pass the env's
    ``half_spreads`` / ``skews`` when they differ from the defaults."""

    def __init__(self, spec: EnvSpec, half_spreads: tuple = KWARGS["half_spreads"], skews: tuple = KWARGS["skews"],
                 skew_inventory: bool = False):
        n = spec.groups["maker"].action_dim
        if n != len(half_spreads) * len(skews):
            raise ValueError(f"FixedSpreadMaker: Discrete({n}) makers do not match half_spreads={half_spreads!r} "
                             f"x skews={skews!r}; pass the env's grid")
        self.nk, self.skew_inventory = len(skews), skew_inventory
        self.spread_index = len(half_spreads) // 2
        self.zero_skew = min(range(len(skews)), key=lambda i: abs(skews[i]))
        self.low_skew, self.high_skew = int(np.argmin(skews)), int(np.argmax(skews))
        self.has_traders = "trader" in spec.groups
        self.continuous = not spec.groups["maker"].discrete
        self.sizes = [g.action_dim for g in spec.groups.values()]

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        o = ts.obs["maker"]
        skew = torch.full(o.shape[:2], self.zero_skew, dtype=torch.long, device=o.device)
        if self.skew_inventory:
            skew = torch.where(o[..., 0] > 1 / 3, self.low_skew, torch.where(o[..., 0] < -1 / 3, self.high_skew, skew))
        out = {"maker": self.spread_index * self.nk + skew}
        if self.has_traders:
            tr = ts.obs["trader"]
            sig, fb, fa = tr[..., 0], tr[..., 2], tr[..., 3]
            out["trader"] = torch.where(sig > 2 * fa, 1, torch.where(sig < -2 * fb, 2, 0))
        if self.continuous:
            out = {g: torch.nn.functional.one_hot(a, n).to(o.dtype) for (g, a), n in zip(out.items(), self.sizes)}
        return out, carry


def baseline_policy(spec: EnvSpec, half_spreads: tuple = KWARGS["half_spreads"],
                    skews: tuple = KWARGS["skews"]) -> FixedSpreadMaker:
    """The baseline trained makers must beat (:data:`BASELINE`): symmetric fixed spread."""
    return FixedSpreadMaker(spec, half_spreads, skews)
