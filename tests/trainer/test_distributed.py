"""DDP semantics on CPU: 2 gloo processes stay in lock-step while seeing different data."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from trainer.training import distributed as D


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from trainer.models.convnets import Conv4

    info = D.init_from_env(torch.device("cpu"))
    torch.manual_seed(100 + rank)  # different initial weights on purpose: broadcast must fix them
    model = Conv4(ways=3, hidden=4, image_size=16)
    params = list(model.parameters())
    D.broadcast_(params, info)
    opt = torch.optim.Adam(params, lr=1e-2)
    gen = torch.Generator().manual_seed(rank)  # each rank its own data
    for _ in range(3):
        x, y = torch.rand(6, 1, 16, 16, generator=gen), torch.randint(0, 3, (6,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        D.average_gradients_(params, info)
        opt.step()
    out[rank] = (torch.cat([p.detach().reshape(-1) for p in params]), D.all_gather_objects(rank * 10, info))
    D.shutdown(info)


def test_two_ranks_hold_identical_parameters():
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        (p0, g0), (p1, g1) = out[0], out[1]
    assert torch.equal(p0, p1), "ranks diverged: gradients were not averaged"
    assert g0 == g1 == [0, 10]


def test_single_process_is_a_noop(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = D.init_from_env(torch.device("cpu"))
    assert not info.enabled and info.is_main
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    D.average_gradients_([p], info)
    assert torch.equal(p.grad, torch.full((2,), 3.0))


def test_bad_environment_is_a_clear_error(monkeypatch):
    from fewtask_data import FewtaskError

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(FewtaskError, match="WORLD_SIZE"):
        D.init_from_env(torch.device("cpu"))


def _fit_worker(rank: int, world: int, port: int, data: str, out: str, result: dict) -> None:
    """Runs the real `fit` on one rank, spying on the batches it trains on and its final parameters."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import trainer.experiments.fit as F

    real_train, seen = F.train, []

    def spy(model, algo, make_batches, cfg, **kw):
        def recorded(start):
            for batch in make_batches(start):
                seen.extend(batch.families)
                yield batch

        res = real_train(model, algo, recorded, cfg, **kw)
        result[rank] = (torch.cat([p.reshape(-1) for p in res.params.values()]), seen)
        return res

    F.train = spy
    F.fit(F.FitConfig(data=data, out=out, ways=3, shots=1, queries=2, val=2, meta_tasks=2, batch=2, steps=3,
                      hidden=4, alpha=0.1, beta=0.1, gamma=0.1, seed=0, progress=False, log_every=1))


@pytest.mark.slow
def test_fit_under_two_ranks_stays_identical_on_disjoint_families(tmp_path):
    import json

    import toydata

    toydata.build_toy(tmp_path / "data", n_classes=40, per_class=8, side=16)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_fit_worker, args=(2, _free_port(), str(tmp_path / "data"), str(tmp_path / "run"), out), nprocs=2, join=True)
        (p0, seen0), (p1, seen1) = out[0], out[1]
    assert torch.equal(p0, p1), "ranks diverged"
    assert len(seen0) == len(seen1) == 6
    assert not set(seen0) & set(seen1), f"ranks shared families: {set(seen0) & set(seen1)}"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2
