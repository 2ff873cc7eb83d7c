"""Image-global operations of a network run in tiles: recorded on the whole (downscaled) image, replayed
in every tile, so each tile normalises and pools with the whole image's statistics (see the module
docstring of :mod:`dehazelab.tiling`)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["GlobalOpRecorder"]


def _is_global(output_size) -> bool:
    if isinstance(output_size, int):
        return output_size == 1
    return tuple(output_size) in ((1, 1), (1,))


class GlobalOpRecorder:
    """Intercepts image-global ``torch.nn.functional`` ops: records them in ``record()``, replays
    them (in the same call order) in ``replay()``. See the module docstring."""

    def __init__(self):
        self.records: list[tuple[str, object]] = []
        self._i = 0

    def __len__(self) -> int:
        return len(self.records)

    @contextlib.contextmanager
    def _patched(self, mode: str):
        orig = {n: getattr(F, n) for n in ("instance_norm", "adaptive_avg_pool2d", "adaptive_max_pool2d")}

        def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                          use_input_stats=True, momentum=0.1, eps=1e-5):
            if not use_input_stats:  # running statistics: local
                return orig["instance_norm"](input, running_mean, running_var, weight, bias, use_input_stats,
                                             momentum, eps)
            dims = tuple(range(2, input.dim()))
            if mode == "record":
                var, mean = torch.var_mean(input, dim=dims, keepdim=True, correction=0)
                self.records.append(("instance_norm", (mean, var)))
                return orig["instance_norm"](input, running_mean, running_var, weight, bias, use_input_stats,
                                             momentum, eps)
            mean, var = self._next("instance_norm")
            y = (input - mean) * torch.rsqrt(var + eps)
            shape = (1, -1) + (1,) * len(dims)
            if weight is not None:
                y = y * weight.reshape(shape)
            if bias is not None:
                y = y + bias.reshape(shape)
            return y

        def adaptive_avg_pool2d(input, output_size):
            if not _is_global(output_size):
                raise NotImplementedError(f"adaptive_avg_pool2d to {output_size} is not tile-safe")
            if mode == "record":
                out = orig["adaptive_avg_pool2d"](input, output_size)
                self.records.append(("adaptive_avg_pool2d", out))
                return out
            return self._next("adaptive_avg_pool2d")

        def adaptive_max_pool2d(input, output_size, return_indices=False):
            if not _is_global(output_size) or return_indices:
                raise NotImplementedError(f"adaptive_max_pool2d to {output_size} (indices {return_indices}) "
                                          "is not tile-safe")
            if mode == "record":
                out = orig["adaptive_max_pool2d"](input, output_size)
                self.records.append(("adaptive_max_pool2d", out))
                return out
            return self._next("adaptive_max_pool2d")

        F.instance_norm = instance_norm
        F.adaptive_avg_pool2d = adaptive_avg_pool2d
        F.adaptive_max_pool2d = adaptive_max_pool2d
        try:
            yield self
        finally:
            for n, f in orig.items():
                setattr(F, n, f)

    def _next(self, kind: str):
        if self._i >= len(self.records):
            raise RuntimeError(f"tile made more global ops than the statistics pass ({len(self.records)})")
        got, value = self.records[self._i]
        if got != kind:
            raise RuntimeError(f"global op #{self._i}: statistics pass recorded {got}, tile calls {kind}")
        self._i += 1
        return value

    def record(self):
        """Context: run the model once on the statistics image; its global ops are stored."""
        self.records.clear()
        return self._patched("record")

    @contextlib.contextmanager
    def replay(self):
        """Context for one tile: global ops return the stored values, in order."""
        self._i = 0
        with self._patched("replay"):
            yield self
        if self._i != len(self.records):
            raise RuntimeError(f"tile made {self._i} global ops, the statistics pass {len(self.records)}")
