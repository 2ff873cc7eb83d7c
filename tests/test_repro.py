import numpy as np
import torch

from dehazelab import repro


def _train(seed):
    g = repro.seed_everything(seed, threads=1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(3):
        x = torch.rand(2, 3, 8, 8, generator=g)
        loss = (net(x) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()], np.random.rand()


def test_same_seed_same_weights():
    a, ra = _train(3)
    b, rb = _train(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert ra == rb


def test_different_seed_different_weights():
    a, _ = _train(3)
    b, _ = _train(4)
    assert not all(torch.equal(x, y) for x, y in zip(a, b))


def test_threads_are_set():
    repro.seed_everything(0, threads=1)
    assert torch.get_num_threads() == 1


def test_pick_device_never_requires_cuda():
    dev = repro.pick_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
