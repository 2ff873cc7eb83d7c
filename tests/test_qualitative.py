"""dehazelab.qualitative: the rows of a qualitative figure (real photographs written here; stand-in dehazers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dehazelab.qualitative import dehazed_rows, real_photo_rows


class _Scale(nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, x):
        return self.k * x


def test_dehazed_rows_put_hazy_then_each_dehazer_then_ground_truth():
    g = torch.Generator().manual_seed(0)
    hazy, clear = torch.rand(3, 6, 8, generator=g), torch.rand(3, 6, 8, generator=g)
    photo = torch.rand(3, 5, 7, generator=g)
    grid, titles = dehazed_rows([(hazy, clear, "scene 1"), (photo, None, "forest")],
                                {"same": nn.Identity(), "double": _Scale(2.0), "negative": _Scale(-1.0)})
    assert titles == ["scene 1", "forest"] and [len(r) for r in grid] == [5, 5]
    first = grid[0]
    assert first[0] is hazy and first[-1] is clear and grid[1][-1] is None
    assert torch.equal(first[1], hazy)
    assert torch.equal(first[2], (2 * hazy).clamp(0, 1)) and first[2].max() == 1.0  # clamped
    assert torch.equal(first[3], torch.zeros_like(hazy))
    assert grid[1][2].shape == photo.shape and not first[2].requires_grad
    with pytest.raises(ValueError, match="expected a 3xHxW image"):
        dehazed_rows([(hazy[None], clear, "batch")], {"same": nn.Identity()})


def test_real_photo_rows_have_no_ground_truth_and_name_their_files(tmp_path):
    folder = tmp_path / "real-hazy" / "set"
    folder.mkdir(parents=True)
    for name, side in (("one.png", (12, 8)), ("two.png", (40, 20))):
        Image.fromarray(np.full((side[1], side[0], 3), 128, np.uint8)).save(folder / name)
    rows, files = real_photo_rows(tmp_path, 5, 20, names=["set/missing.png", "set/two.png", "set/one.png"])
    assert files == ["real-hazy/set/two.png", "real-hazy/set/one.png"]  # in the order asked, missing skipped
    assert [(r[1], r[2]) for r in rows] == [(None, "two"), (None, "one")]
    assert tuple(rows[0][0].shape) == (3, 10, 20) and tuple(rows[1][0].shape) == (3, 8, 12)  # longer side ≤ 20
    assert real_photo_rows(tmp_path, 1, 20, names=["set/one.png", "set/two.png"])[1] == ["real-hazy/set/one.png"]
    assert real_photo_rows(None, 3, 20) == ([], []) and real_photo_rows(tmp_path / "none", 3, 20) == ([], [])
