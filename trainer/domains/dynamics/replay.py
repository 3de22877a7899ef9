"""Replay strategies of Kaplanis et al. (2020) as slot allocators, and stable-baselines3
replay buffers that use them.

A strategy owns ``capacity`` items stored in ``capacity + 1`` physical slots (one spare,
so a new item always has a slot before the strategy decides what leaves). ``insert()``
returns the slot to write the new item to, or None to drop it; ``occupied`` is the set
of slots holding items, which sampling draws from uniformly.

- ``fifo``: the newest ``capacity`` items.
- ``reservoir``: every item seen so far equally likely to be kept (Vitter's algorithm R).
- ``half``: half the capacity FIFO, half reservoir (Kaplanis's reservoir/FIFO mix).
- ``mtr``: the multi-timescale cascade: ``levels`` FIFO sub-buffers of capacity/levels
  each; an item pushed out of sub-buffer k moves into k + 1 with probability ``keep``
  (0.85), otherwise into an overflow FIFO, which holds whatever room the cascade does not
  use yet (the total stays ``capacity``). So sub-buffer k receives keep^k of the incoming
  flow and spans a time window about keep^-k as long as the first: memories at
  geometrically spaced timescales.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np

from fewtask_data import FewtaskError

STRATEGIES = ("fifo", "reservoir", "half", "mtr")


class SlotSet:
    """A set of ints with O(1) add, remove and uniform sampling."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.where: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, x: int) -> None:
        self.where[x] = len(self.items)
        self.items.append(x)

    def remove(self, x: int) -> None:
        i = self.where.pop(x)
        last = self.items.pop()
        if i < len(self.items):
            self.items[i], self.where[last] = last, i

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.items)[rng.integers(0, len(self.items), size=n)]


class Strategy:
    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 2:
            raise FewtaskError(f"replay capacity must be >= 2, got {capacity}")
        self.capacity, self.rng, self.seen = capacity, random.Random(seed), 0
        self.free = list(range(capacity, -1, -1))  # capacity + 1 slots; pop() gives 0 first
        self.occupied = SlotSet()

    def _take(self) -> int:
        slot = self.free.pop()
        self.occupied.add(slot)
        return slot

    def _release(self, slot: int) -> None:
        self.occupied.remove(slot)
        self.free.append(slot)

    def insert(self) -> int | None:
        raise NotImplementedError


class Fifo(Strategy):
    def __init__(self, capacity: int, seed: int = 0) -> None:
        super().__init__(capacity, seed)
        self.queue: deque[int] = deque()

    def insert(self) -> int | None:
        self.seen += 1
        slot = self._take()
        self.queue.append(slot)
        if len(self.queue) > self.capacity:
            self._release(self.queue.popleft())
        return slot


class Reservoir(Strategy):
    def __init__(self, capacity: int, seed: int = 0) -> None:
        super().__init__(capacity, seed)
        self.kept: list[int] = []

    def insert(self) -> int | None:
        self.seen += 1
        if len(self.kept) < self.capacity:
            self.kept.append(self._take())
            return self.kept[-1]
        j = self.rng.randrange(self.seen)
        if j >= self.capacity:
            return None
        self._release(self.kept[j])
        self.kept[j] = self._take()
        return self.kept[j]


class Half(Strategy):
    """Every item goes to the FIFO half and is also offered to the reservoir half."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        super().__init__(capacity, seed)
        self.fifo, self.reservoir = Fifo(capacity // 2, seed), Reservoir(capacity - capacity // 2, seed + 1)
        self.slots: dict[tuple[str, int], int] = {}

    def insert(self) -> int | None:
        raise FewtaskError("the half/half strategy writes each item to two slots; use insert_many")

    def insert_many(self) -> list[int]:
        self.seen += 1
        out = []
        for name, part in (("fifo", self.fifo), ("reservoir", self.reservoir)):
            before = set(part.occupied.items)
            local = part.insert()
            gone = before - set(part.occupied.items)
            if local in before:  # the part reused the slot it just freed
                gone.add(local)
            for slot in gone:
                self._release(self.slots.pop((name, slot)))
            if local is not None:
                self.slots[(name, local)] = self._take()
                out.append(self.slots[(name, local)])
        return out


class Cascade(Strategy):
    """The MTR cascade (module doc). ``entered[k]`` counts the items that entered sub-buffer k."""

    def __init__(self, capacity: int, seed: int = 0, levels: int = 20, keep: float = 0.85) -> None:
        super().__init__(capacity, seed)
        if not 1 <= levels <= capacity or not 0 <= keep <= 1:
            raise FewtaskError(f"MTR needs 1 <= levels <= capacity and 0 <= keep <= 1, got {levels}, {keep}")
        self.size, self.keep = capacity // levels, keep
        self.levels = [deque() for _ in range(levels)]
        self.overflow: deque[int] = deque()
        self.entered = [0] * levels

    def _push(self, level: int, slot: int) -> None:
        while True:
            self.levels[level].append(slot)
            self.entered[level] += 1
            if len(self.levels[level]) <= self.size:
                return
            slot = self.levels[level].popleft()
            if level + 1 < len(self.levels) and self.rng.random() < self.keep:
                level += 1
            else:
                self.overflow.append(slot)
                return

    def insert(self) -> int | None:
        self.seen += 1
        slot = self._take()
        self._push(0, slot)
        room = self.capacity - sum(len(q) for q in self.levels)
        while len(self.overflow) > room:
            self._release(self.overflow.popleft())
        return slot


def make_strategy(name: str, capacity: int, seed: int = 0, levels: int = 20, keep: float = 0.85) -> Strategy:
    if name not in STRATEGIES:
        raise FewtaskError(f"unknown replay strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    if name == "mtr":
        return Cascade(capacity, seed, levels, keep)
    return {"fifo": Fifo, "reservoir": Reservoir, "half": Half}[name](capacity, seed)


def strategy_buffer_class():
    """A stable-baselines3 ReplayBuffer whose slots a `Strategy` allocates (``strategy`` and
    ``seed`` come through SAC's ``replay_buffer_kwargs``); one environment."""
    from stable_baselines3.common.buffers import ReplayBuffer

    class StrategyReplayBuffer(ReplayBuffer):
        def __init__(self, buffer_size, observation_space, action_space, device="auto", n_envs=1,
                     optimize_memory_usage=False, handle_timeout_termination=True, strategy="fifo", seed=0, **kw):  # fmt: skip
            if n_envs != 1:
                raise FewtaskError("the replay strategies store one environment's transitions; use one env for SAC")
            super().__init__(buffer_size + 1, observation_space, action_space, device, n_envs,
                             False, handle_timeout_termination)  # fmt: skip
            self.strategy = make_strategy(strategy, buffer_size, seed, **kw)
            self.sample_rng = np.random.default_rng(seed)

        def add(self, *args, **kwargs) -> None:
            slots = self.strategy.insert_many() if isinstance(self.strategy, Half) else [self.strategy.insert()]
            for slot in slots:
                if slot is not None:
                    self.pos = slot
                    super().add(*args, **kwargs)
            self.full, self.pos = False, len(self.strategy.occupied)

        def sample(self, batch_size: int, env=None):
            return self._get_samples(self.strategy.occupied.sample(batch_size, self.sample_rng), env=env)

    return StrategyReplayBuffer
