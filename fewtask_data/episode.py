"""The contract between fewtask_data and trainer: FamilyEpisode and FamilyBatch.

One FamilyEpisode carries everything Algorithm 1 of MALTML needs for one sampled
family j_d:

    meta_x, meta_y   [L, N*(K+Q), ...]  L meta-finetuning tasks; per task the first
                                         N*K examples are the support (task step),
                                         the next N*Q the query (meta step)
    goal_x, goal_y   [C, N*(K+V), ...]  C goal tasks; first N*K support (finetune
                                         with gamma), next N*V validation (outer loss)
    family           str                 the family id
    identity         dict                JSON-serializable replay info (split,
                                         classes, sample ids, seed, ...)

Classification labels are int64 in 0..N-1 inside each task; regression targets are
float tensors with a trailing output dimension and N = 1. A FamilyBatch stacks B
episodes on a new leading axis. Every source produces these; every algorithm
consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

from fewtask_data.errors import FewtaskError

if TYPE_CHECKING:  # torch is imported where tensors are checked or stacked, so the CLI starts without it
    import torch


@dataclass(frozen=True)
class EpisodeShape:
    """Sizes of one family episode: N ways, K shots, Q queries, V validation
    examples per class, L meta-finetuning tasks, C goal tasks."""

    ways: int
    shots: int
    queries: int
    val: int
    meta_tasks: int
    goal_tasks: int

    def __post_init__(self) -> None:
        minimum = {"ways": 1, "shots": 1, "queries": 1, "val": 1, "meta_tasks": 0, "goal_tasks": 1}
        for name, low in minimum.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise FewtaskError(f"episode shape: {name} must be an integer >= {low}, got {value!r}")

    @property
    def support_size(self) -> int:
        return self.ways * self.shots

    @property
    def meta_size(self) -> int:
        """Examples per meta-finetuning task: N*(K+Q)."""
        return self.ways * (self.shots + self.queries)

    @property
    def goal_size(self) -> int:
        """Examples per goal task: N*(K+V)."""
        return self.ways * (self.shots + self.val)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("ways", "shots", "queries", "val", "meta_tasks", "goal_tasks")}


def _check(name: str, tensor: Any, lead: tuple[int, ...]) -> None:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise FewtaskError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    got = tuple(tensor.shape[: len(lead)])
    if got != lead:
        raise FewtaskError(f"{name} has leading shape {got}, expected {lead} from the episode shape")


def _check_pair(prefix: str, x: torch.Tensor, y: torch.Tensor, lead: tuple[int, ...], ways: int) -> None:
    import torch

    _check(f"{prefix}_x", x, lead)
    _check(f"{prefix}_y", y, lead)
    if y.dtype == torch.int64:
        if y.dim() != len(lead):
            raise FewtaskError(f"{prefix}_y: class labels must have shape {lead}, got {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ways):
            raise FewtaskError(f"{prefix}_y: labels must lie in 0..{ways - 1} (remapped per task)")
    elif not y.is_floating_point():
        raise FewtaskError(f"{prefix}_y must be int64 class labels or float regression targets, got {y.dtype}")


@dataclass
class FamilyEpisode:
    """One family j_d: L meta-finetuning tasks and C goal tasks (see module doc)."""

    meta_x: torch.Tensor
    meta_y: torch.Tensor
    goal_x: torch.Tensor
    goal_y: torch.Tensor
    shape: EpisodeShape
    family: str
    identity: dict = field(default_factory=dict)
    meta_info: torch.Tensor | None = None  # [L, P] true task parameters, for oracles
    goal_info: torch.Tensor | None = None  # [C, P]

    def __post_init__(self) -> None:
        s = self.shape
        _check_pair("meta", self.meta_x, self.meta_y, (s.meta_tasks, s.meta_size), s.ways)
        _check_pair("goal", self.goal_x, self.goal_y, (s.goal_tasks, s.goal_size), s.ways)
        if self.meta_x.shape[2:] != self.goal_x.shape[2:]:
            raise FewtaskError(
                f"meta_x example shape {tuple(self.meta_x.shape[2:])} differs from goal_x {tuple(self.goal_x.shape[2:])}"
            )
        if self.meta_info is not None:
            _check("meta_info", self.meta_info, (s.meta_tasks,))
        if self.goal_info is not None:
            _check("goal_info", self.goal_info, (s.goal_tasks,))


@dataclass
class FamilyBatch:
    """B family episodes stacked on a leading axis: meta_x is [B, L, N*(K+Q), ...]."""

    meta_x: torch.Tensor
    meta_y: torch.Tensor
    goal_x: torch.Tensor
    goal_y: torch.Tensor
    shape: EpisodeShape
    families: list[str]
    identities: list[dict] = field(default_factory=list)
    meta_info: torch.Tensor | None = None  # [B, L, P]
    goal_info: torch.Tensor | None = None  # [B, C, P]

    def __post_init__(self) -> None:
        s, b = self.shape, len(self.families)
        if b < 1:
            raise FewtaskError("a FamilyBatch needs at least one family")
        _check_pair("meta", self.meta_x, self.meta_y, (b, s.meta_tasks, s.meta_size), s.ways)
        _check_pair("goal", self.goal_x, self.goal_y, (b, s.goal_tasks, s.goal_size), s.ways)
        if self.identities and len(self.identities) != b:
            raise FewtaskError(f"identities has {len(self.identities)} entries for {b} families")
        if self.meta_info is not None:
            _check("meta_info", self.meta_info, (b, s.meta_tasks))
        if self.goal_info is not None:
            _check("goal_info", self.goal_info, (b, s.goal_tasks))

    def __len__(self) -> int:
        return len(self.families)

    # Views on the four parts Algorithm 1 uses; slicing keeps them cheap.
    def _part(self, x: torch.Tensor, y: torch.Tensor, support: bool) -> tuple[torch.Tensor, torch.Tensor]:
        cut = slice(None, self.shape.support_size) if support else slice(self.shape.support_size, None)
        return x[:, :, cut], y[:, :, cut]

    def meta_support(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._part(self.meta_x, self.meta_y, support=True)

    def meta_query(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._part(self.meta_x, self.meta_y, support=False)

    def goal_support(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._part(self.goal_x, self.goal_y, support=True)

    def goal_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._part(self.goal_x, self.goal_y, support=False)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "FamilyBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(
            self,
            meta_x=move(self.meta_x),
            meta_y=move(self.meta_y),
            goal_x=move(self.goal_x),
            goal_y=move(self.goal_y),
            meta_info=move(self.meta_info),
            goal_info=move(self.goal_info),
        )

    def episodes(self) -> list[FamilyEpisode]:
        """Split back into the FamilyEpisodes it was stacked from."""
        out = []
        for i, fam in enumerate(self.families):
            out.append(
                FamilyEpisode(
                    self.meta_x[i],
                    self.meta_y[i],
                    self.goal_x[i],
                    self.goal_y[i],
                    self.shape,
                    fam,
                    self.identities[i] if self.identities else {},
                    None if self.meta_info is None else self.meta_info[i],
                    None if self.goal_info is None else self.goal_info[i],
                )
            )
        return out


def collate(episodes: Sequence[FamilyEpisode]) -> FamilyBatch:
    """Stack FamilyEpisodes of one shape into a FamilyBatch (usable as a DataLoader collate_fn)."""
    import torch

    if not episodes:
        raise FewtaskError("cannot collate an empty list of family episodes")
    shape = episodes[0].shape
    for e in episodes[1:]:
        if e.shape != shape:
            raise FewtaskError(f"cannot collate episodes of different shapes: {shape} vs {e.shape}")

    def stack_info(name: str) -> torch.Tensor | None:
        infos = [getattr(e, name) for e in episodes]
        if all(i is None for i in infos):
            return None
        if any(i is None for i in infos):
            raise FewtaskError(f"cannot collate: some episodes have {name} and some do not")
        return torch.stack(infos)

    return FamilyBatch(
        meta_x=torch.stack([e.meta_x for e in episodes]),
        meta_y=torch.stack([e.meta_y for e in episodes]),
        goal_x=torch.stack([e.goal_x for e in episodes]),
        goal_y=torch.stack([e.goal_y for e in episodes]),
        shape=shape,
        families=[e.family for e in episodes],
        identities=[dict(e.identity) for e in episodes],
        meta_info=stack_info("meta_info"),
        goal_info=stack_info("goal_info"),
    )
