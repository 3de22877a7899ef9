import pytest
import torch

from fewtask_data import EpisodeShape, FamilyEpisode, FewtaskError, collate


def make_episode(shape: EpisodeShape, family: str = "f") -> FamilyEpisode:
    labels = torch.arange(shape.ways).repeat_interleave
    meta_y = torch.cat([labels(shape.shots), labels(shape.queries)]).expand(shape.meta_tasks, -1).clone()
    goal_y = torch.cat([labels(shape.shots), labels(shape.val)]).expand(shape.goal_tasks, -1).clone()
    return FamilyEpisode(
        meta_x=torch.randn(shape.meta_tasks, shape.meta_size, 1, 4, 4),
        meta_y=meta_y,
        goal_x=torch.randn(shape.goal_tasks, shape.goal_size, 1, 4, 4),
        goal_y=goal_y,
        shape=shape,
        family=family,
        identity={"family": family},
    )


def test_collate_and_split_roundtrip():
    shape = EpisodeShape(ways=3, shots=2, queries=4, val=5, meta_tasks=2, goal_tasks=1)
    eps = [make_episode(shape, f"f{i}") for i in range(4)]
    batch = collate(eps)
    assert batch.meta_x.shape == (4, 2, 18, 1, 4, 4)
    sx, sy = batch.meta_support()
    qx, _ = batch.meta_query()
    assert sx.shape[2] == 6 and qx.shape[2] == 12
    vx, vy = batch.goal_val()
    assert vx.shape[2] == 15 and vy.shape == (4, 1, 15)
    back = batch.episodes()
    assert [e.family for e in back] == ["f0", "f1", "f2", "f3"]
    assert torch.equal(back[2].goal_x, eps[2].goal_x)


@pytest.mark.parametrize("field", ["ways", "shots", "queries", "val", "goal_tasks"])
def test_shape_rejects_zero(field):
    kwargs = dict(ways=1, shots=1, queries=1, val=1, meta_tasks=1, goal_tasks=1)
    kwargs[field] = 0
    with pytest.raises(FewtaskError, match=field):
        EpisodeShape(**kwargs)


def test_inconsistent_tensors_are_named():
    shape = EpisodeShape(ways=2, shots=1, queries=1, val=1, meta_tasks=3, goal_tasks=1)
    ep = make_episode(shape)
    with pytest.raises(FewtaskError, match="meta_x"):
        FamilyEpisode(ep.meta_x[:2], ep.meta_y, ep.goal_x, ep.goal_y, shape, "f")
    bad = ep.goal_y.clone()
    bad[0, 0] = 7
    with pytest.raises(FewtaskError, match="labels must lie in 0..1"):
        FamilyEpisode(ep.meta_x, ep.meta_y, ep.goal_x, bad, shape, "f")


def test_collate_rejects_mixed_shapes():
    a = make_episode(EpisodeShape(2, 1, 1, 1, 1, 1))
    b = make_episode(EpisodeShape(2, 1, 2, 1, 1, 1))
    with pytest.raises(FewtaskError, match="different shapes"):
        collate([a, b])
