"""subpix_xp against kornia 0.9.0 on CPU: the workloads of issue 5, side by side in one process.

Run (from the repository root)::

    python benchmarks/bench_kornia.py --out benchmarks/results/cpu.json

It writes ``cpu.json`` (every sample) and ``cpu.md`` (the table) beside each other. See
``benchmarks/README.md`` for the method. ``--only W2b,W6a --rounds 5 --no-memory`` gives a quick look.

Method, in short:

* Every workload runs three implementations -- subpix_xp on NumPy, subpix_xp on PyTorch CPU and
  kornia 0.9.0 on PyTorch CPU -- plus a "copy" reference (``torch.clone`` of the input), on the same
  float32 data from fixed seeds, with ``torch.set_num_threads(2)``.
* Warm-up first (at least 3 calls and 0.3 s per implementation), which also calibrates how many
  calls make one sample (about 30 ms). Then ``--rounds`` rounds; in each round every implementation
  takes one sample, in an order that rotates from round to round (interleaved). The table shows
  the median per call over the rounds, its spread (25th-75th percentile), and the ratio
  ours/kornia as the median of the per-round ratios (paired, so drift on a shared machine cancels).
* Peak memory: each (workload, implementation) runs in a fresh subprocess with
  ``MALLOC_MMAP_THRESHOLD_=65536`` (every block of 64 KiB or more is its own mmap, returned to the
  system on free, so the resident set follows live memory). After one warm-up call the kernel's
  peak-RSS counter is reset (``/proc/self/clear_refs``); the peak is VmHWM after one more call minus
  VmRSS before it: the temporaries and the outputs of the call. NumPy runs also report
  ``tracemalloc``'s peak as a cross-check.
* Per-call overhead: a call on a (1, 1, 8, 8) input against the same arithmetic written directly
  in the array library (no validation, no dispatch), for several functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2
# Timing runs with a steady allocator: blocks below 32 MiB come from the heap and the heap is never
# trimmed, so after the warm-up no call pays the first-touch page faults of freshly mapped memory
# (costly in a VM, and dependent on what ran before in the process). Both libraries get the same.
_STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def _threads() -> int:
    return int(os.environ.get("SUBPIX_BENCH_THREADS", THREADS))


IMPLS = ("copy", "kornia", "ours_numpy", "ours_torch")
LABELS = {
    "copy": "copy (torch clone)",
    "kornia": "kornia 0.9.0 (torch)",
    "ours_numpy": "subpix_xp (NumPy)",
    "ours_torch": "subpix_xp (torch)",
}


# ---------------------------------------------------------------------------------------------
# Inputs


def _dog_source() -> tuple[np.ndarray, str]:
    """A (480, 640) grayscale photograph in [0, 1], and where it comes from.

    scikit-image's bundled ``astronaut`` photograph (no network needed), converted to gray,
    scaled by 1.25 and cropped to 480 x 640. Without scikit-image: a deterministic smooth
    synthetic scene (seeded blobs and gratings), and the JSON says so.
    """
    try:
        from skimage import data, transform
        from skimage.color import rgb2gray

        gray = rgb2gray(data.astronaut())
        big = transform.resize(gray, (640, 640), order=1, anti_aliasing=True)
        return big[80:560].astype(
            np.float64
        ), "scikit-image data.astronaut (gray, resized to 640x640, rows 80:560)"
    except Exception:  # pragma: no cover - depends on what is installed
        rng = np.random.default_rng(7)
        yy, xx = np.mgrid[0:480, 0:640].astype(np.float64)
        img = 0.3 + 0.1 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
        for _ in range(400):
            cy, cx = rng.uniform(0, 480), rng.uniform(0, 640)
            s, a = rng.uniform(1.5, 12.0), rng.uniform(-0.5, 0.5)
            img += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        return (
            img,
            "synthetic smooth scene (400 seeded Gaussian blobs on a grating; scikit-image not installed)",
        )


def dog_octave() -> tuple[np.ndarray, str]:
    """A difference-of-Gaussians octave (1, 1, 6, 480, 640) float32: sigma_i = 1.6 * 2**(i/3)."""
    from scipy.ndimage import gaussian_filter

    img, source = _dog_source()
    blurs = [gaussian_filter(img, 1.6 * 2 ** (i / 3), mode="nearest") for i in range(7)]
    dog = np.stack([blurs[i + 1] - blurs[i] for i in range(6)])[None, None]
    return np.ascontiguousarray(dog, dtype=np.float32), source


def _randn(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    make: Callable[[], dict[str, np.ndarray]]
    ours: Callable[[Any, dict[str, Any]], Any]
    kornia: Callable[[Any, dict[str, Any]], Any]
    kornia_ms: float  # the reference number, for scale
    # A lower bound for our NumPy call, timed in the same rounds: (what it is, inputs -> zero-argument call).
    numpy_floor: tuple[str, Callable[[dict[str, np.ndarray]], Callable[[], Any]]] | None = None


def _x(shape: tuple[int, ...], seed: int) -> Callable[[], dict[str, np.ndarray]]:
    return lambda: {"x": _randn(shape, seed)}


def _gauss_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "mean": rng.uniform(-1.0, 1.0, (32, 17, 2)).astype(np.float32),
        "std": np.full((32, 17, 2), 0.1, dtype=np.float32),
    }


def _gauss_outer_floor(arrays: dict[str, np.ndarray]) -> Callable[[], Any]:
    """W7's last step alone: the C-contiguous (544, 64, 48) outer product of the two per-axis
    weight arrays, by ``np.einsum``, the fastest NumPy way found (broadcast ``multiply`` 1.4x
    slower, stacked ``matmul`` 4x, ``repeat`` + ``tile`` + ``multiply`` no faster, two threads no
    faster: NumPy keeps the GIL or pays per row)."""
    mean, std = (arrays[k].reshape(-1, 2).astype(np.float64) for k in ("mean", "std"))
    floor = np.sqrt(np.finfo(np.float32).smallest_normal)

    def axis(n: int, i: int) -> np.ndarray:
        w = np.exp(-((np.linspace(-1.0, 1.0, n) - mean[:, i : i + 1]) ** 2) / (2 * std[:, i : i + 1] ** 2))
        w /= w.sum(axis=-1, keepdims=True)
        return np.where(w <= floor, 0.0, w).astype(np.float32)

    gauss_y, gauss_x = axis(64, 1), axis(48, 0)
    return lambda: np.einsum("bi,bj->bij", gauss_y, gauss_x)


_DOG_CACHE: dict[str, Any] = {}


def _dog_inputs() -> dict[str, np.ndarray]:
    if "x" not in _DOG_CACHE:
        _DOG_CACHE["x"], _DOG_CACHE["source"] = dog_octave()
    return {"x": _DOG_CACHE["x"]}


WORKLOADS = [
    Workload(
        "W1",
        "spatial_soft_argmax2d (32,17,64,48)",
        _x((32, 17, 64, 48), 1),
        lambda S, a: S.spatial_soft_argmax2d(a["x"]),
        lambda K, a: K.spatial_soft_argmax2d(a["x"]),
        1.4,
    ),
    Workload(
        "W2a",
        "conv_soft_argmax2d (20,16,50,32) k3 s2 p1 value",
        _x((20, 16, 50, 32), 2),
        lambda S, a: S.conv_soft_argmax2d(a["x"], (3, 3), (2, 2), (1, 1), output_value=True),
        lambda K, a: K.conv_soft_argmax2d(a["x"], (3, 3), (2, 2), (1, 1), output_value=True),
        6.8,
    ),
    Workload(
        "W2b",
        "conv_soft_argmax2d (8,1,512,512) defaults value",
        _x((8, 1, 512, 512), 3),
        lambda S, a: S.conv_soft_argmax2d(a["x"], output_value=True),
        lambda K, a: K.conv_soft_argmax2d(a["x"], output_value=True),
        150.0,
    ),
    Workload(
        "W3",
        "conv_soft_argmax3d (1,1,6,256,256) defaults",
        _x((1, 1, 6, 256, 256), 4),
        lambda S, a: S.conv_soft_argmax3d(a["x"]),
        lambda K, a: K.conv_soft_argmax3d(a["x"]),
        113.0,
    ),
    Workload(
        "W4a",
        "nms2d (8,1,512,512) (3,3) mask_only",
        _x((8, 1, 512, 512), 5),
        lambda S, a: S.nms2d(a["x"], (3, 3), True),
        lambda K, a: K.nms2d(a["x"], (3, 3), True),
        4.5,
    ),
    Workload(
        "W4b",
        "nms2d (8,1,512,512) (5,5) mask_only",
        _x((8, 1, 512, 512), 5),
        lambda S, a: S.nms2d(a["x"], (5, 5), True),
        lambda K, a: K.nms2d(a["x"], (5, 5), True),
        13.0,
    ),
    Workload(
        "W5a",
        "nms3d (1,1,6,640,800) (3,3,3) mask_only",
        _x((1, 1, 6, 640, 800), 6),
        lambda S, a: S.nms3d(a["x"], (3, 3, 3), True),
        lambda K, a: K.nms3d(a["x"], (3, 3, 3), True),
        15.0,
    ),
    Workload(
        "W5b",
        "nms3d_minmax (1,1,6,640,800)",
        _x((1, 1, 6, 640, 800), 6),
        lambda S, a: S.nms3d_minmax(a["x"]),
        lambda K, a: K.nms3d_minmax(a["x"]),
        32.0,
    ),
    Workload(
        "W6a",
        "conv_quad_interp3d DoG (1,1,6,480,640) bonus 0",
        _dog_inputs,
        lambda S, a: S.conv_quad_interp3d(a["x"], strict_maxima_bonus=0.0),
        lambda K, a: K.conv_quad_interp3d(a["x"]),
        15.0,
    ),
    Workload(
        "W6b",
        "iterative_quad_interp3d DoG (1,1,6,480,640) bonus 0",
        _dog_inputs,
        lambda S, a: S.iterative_quad_interp3d(a["x"], strict_maxima_bonus=0.0),
        lambda K, a: K.iterative_quad_interp3d(a["x"]),
        14.0,
    ),
    Workload(
        "W7",
        "render_gaussian2d (32,17,2) std 0.1 size (64,48)",
        _gauss_inputs,
        lambda S, a: S.render_gaussian2d(a["mean"], a["std"], (64, 48)),
        lambda K, a: K.render_gaussian2d(a["mean"], a["std"], (64, 48)),
        0.19,
        ("NumPy's outer product of the two per-axis weight arrays alone (np.einsum)", _gauss_outer_floor),
    ),
]
BY_KEY = {w.key: w for w in WORKLOADS}


def _setup_torch() -> Any:
    import torch

    torch.set_num_threads(_threads())
    torch.set_grad_enabled(False)
    return torch


def callables(w: Workload) -> dict[str, Callable[[], Any]]:
    """The zero-argument calls of one workload, keyed by implementation."""
    torch = _setup_torch()
    import kornia.geometry.subpix as K

    import subpix_xp as S

    arrays = w.make()
    np_args = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    t_args = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    first = next(iter(t_args.values()))
    calls = {
        "copy": lambda: first.clone(),
        "kornia": lambda: w.kornia(K, t_args),
        "ours_numpy": lambda: w.ours(S, np_args),
        "ours_torch": lambda: w.ours(S, t_args),
    }
    if w.numpy_floor is not None:
        calls["numpy_floor"] = w.numpy_floor[1](np_args)
    return calls


# ---------------------------------------------------------------------------------------------
# Timing


def _sample(fn: Callable[[], Any], n: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _calibrate(fn: Callable[[], Any], target: float, warmup_s: float) -> int:
    """Warm up (at least 3 calls and ``warmup_s``) and return the calls per sample for ``target`` s."""
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < warmup_s:
        times.append(_sample(fn, 1))
        if len(times) >= 50:
            break
    per_call = statistics.median(times[1:])
    return max(1, min(10_000, round(target / max(per_call, 1e-7))))


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _cpu_snapshot() -> tuple[int, int]:
    """(CPU time used by the whole machine, by this process), in clock ticks (Linux ``/proc``)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:8]]
        with open("/proc/self/stat") as f:
            mine = f.read().rsplit(")", 1)[1].split()
        return sum(fields) - fields[3] - fields[4], int(mine[11]) + int(mine[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


def _others_load(before: tuple[int, int], after: tuple[int, int], seconds: float) -> float:
    """Cores' worth of CPU time that other processes used between two snapshots."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / ticks / max(seconds, 1e-9))


def time_workload(
    w: Workload,
    rounds: int,
    target: float,
    warmup_s: float,
    quiet: float = 0.25,
    max_rounds: int | None = None,
    patience_s: float = 180.0,
) -> dict[str, Any]:
    """Interleaved rounds; a round during which other processes used more than ``quiet`` of a core
    is contended (2-thread torch timings then measure the scheduler, not the code). Rounds go on
    until ``rounds`` quiet ones are in (at most ``max_rounds`` rounds or ``patience_s`` seconds,
    pausing a second after each contended round); the statistics use the quiet rounds when at
    least 5 are in, else all rounds (and say so)."""
    calls = callables(w)
    impls = list(calls)
    counts = {name: _calibrate(calls[name], target, warmup_s) for name in impls}
    samples: dict[str, list[float]] = {name: [] for name in impls}
    load: list[float] = []
    limit = max_rounds or 10 * rounds
    r, start = 0, time.perf_counter()
    while r < rounds or (
        sum(x <= quiet for x in load) < rounds and r < limit and time.perf_counter() - start < patience_s
    ):
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        before, t0 = _cpu_snapshot(), time.perf_counter()
        for name in order:
            samples[name].append(_sample(calls[name], counts[name]))
        load.append(_others_load(before, _cpu_snapshot(), time.perf_counter() - t0))
        if load[-1] > quiet:
            time.sleep(1.0)
        r += 1
    keep = [i for i, x in enumerate(load) if x <= quiet]
    source = "quiet rounds"
    if len(keep) < 5:
        keep, source = list(range(len(load))), "all rounds (too few quiet ones)"
    out: dict[str, Any] = {
        "title": w.title,
        "issue_kornia_ms": w.kornia_ms,
        "rounds": len(load),
        "rounds_used": len(keep),
        "statistics_from": source,
        "quiet_threshold_cores": quiet,
        "others_load_per_round": load,
        "impls": {},
    }
    for name in impls:
        s = [samples[name][i] for i in keep]
        out["impls"][name] = {
            "calls_per_sample": counts[name],
            "median_ms": 1e3 * statistics.median(s),
            "p25_ms": 1e3 * _quantile(s, 0.25),
            "p75_ms": 1e3 * _quantile(s, 0.75),
            "min_ms": 1e3 * min(s),
            "samples_ms": [1e3 * t for t in samples[name]],
        }
    if w.numpy_floor is not None:
        out["numpy_floor_title"] = w.numpy_floor[0]
    for name in [n for n in ("ours_numpy", "ours_torch", "copy", "numpy_floor") if n in impls]:
        paired = [samples[name][i] / samples["kornia"][i] for i in keep]
        out["impls"][name]["ratio_vs_kornia"] = statistics.median(paired)
        out["impls"][name]["ratio_vs_kornia_p25"] = _quantile(paired, 0.25)
        out["impls"][name]["ratio_vs_kornia_p75"] = _quantile(paired, 0.75)
    return out


# ---------------------------------------------------------------------------------------------
# Peak memory (one subprocess per workload and implementation)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_probe(key: str, impl: str) -> dict[str, Any]:
    """Runs inside the subprocess: peak extra resident memory of one call, in MiB."""
    fn = callables(BY_KEY[key])[impl]
    result = fn()  # warm-up: imports, caches, first-touch of the code paths
    del result
    gc.collect()
    rss_before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    result = fn()
    peak = _status_kib("VmHWM")
    del result
    out = {"rss_peak_mib": (peak - rss_before) / 1024.0}
    if impl == "ours_numpy":
        import tracemalloc

        gc.collect()
        tracemalloc.start()
        result = fn()
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        del result
    return out


def measure_memory(keys: list[str]) -> dict[str, dict[str, Any]]:
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_="65536",
        MALLOC_TRIM_THRESHOLD_="0",
        OMP_NUM_THREADS=str(_threads()),
    )
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        out[key] = {}
        for impl in IMPLS:
            proc = subprocess.run(
                [sys.executable, __file__, "--_memory-probe", key, impl],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                out[key][impl] = {"error": proc.stderr.strip().splitlines()[-1:]}
                continue
            out[key][impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"  memory {key}: "
            + ", ".join(f"{i}={out[key][i].get('rss_peak_mib', float('nan')):.1f}" for i in IMPLS),
            flush=True,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Per-call overhead: the public call on a tiny input against the same arithmetic written directly.


def _bare_numpy() -> dict[str, Callable[[np.ndarray], Any]]:
    def softmax(a: np.ndarray, axis: int) -> np.ndarray:
        e = np.exp(a - a.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def spatial_soft_argmax2d(x: np.ndarray) -> np.ndarray:
        b, n, h, w = x.shape
        p = softmax(x.reshape(b, n, h * w), -1).reshape(b, n, h, w)
        xs = np.linspace(-1, 1, w, dtype=x.dtype)
        ys = np.linspace(-1, 1, h, dtype=x.dtype)
        return np.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], -1)

    def nms2d(x: np.ndarray) -> np.ndarray:
        c = x[..., 1:-1, 1:-1]
        m = c > x[..., :-2, :-2]
        for dy in range(3):
            for dx in range(3):
                if (dy, dx) not in ((0, 0), (1, 1)):
                    m &= c > x[..., dy : dy + x.shape[-2] - 2, dx : dx + x.shape[-1] - 2]
        return np.pad(m, ((0, 0), (0, 0), (1, 1), (1, 1)))

    def conv_soft_argmax2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, c, h, w = x.shape
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        v = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(2, 3)).reshape(b, c, h, w, 9)
        val = np.lib.stride_tricks.sliding_window_view(v, (3, 3), axis=(2, 3)).reshape(b, c, h, w, 9)
        wt = softmax(win, -1)
        oy = np.repeat(np.arange(3, dtype=x.dtype), 3) - 1
        ox = np.tile(np.arange(3, dtype=x.dtype), 3) - 1
        cx = (wt * ox).sum(-1) + np.arange(w, dtype=x.dtype)
        cy = (wt * oy).sum(-1) + np.arange(h, dtype=x.dtype)[:, None]
        coords = np.stack([cx * (2 / (w - 1)) - 1, cy * (2 / (h - 1)) - 1], 2)
        return coords, (wt * val).sum(-1)

    return {
        "spatial_soft_argmax2d": spatial_soft_argmax2d,
        "nms2d": nms2d,
        "conv_soft_argmax2d": conv_soft_argmax2d,
    }


def _bare_torch() -> dict[str, Callable[[Any], Any]]:
    torch = _setup_torch()
    import torch.nn.functional as F

    def spatial_soft_argmax2d(x: Any) -> Any:
        b, n, h, w = x.shape
        p = torch.softmax(x.reshape(b, n, h * w), -1).reshape(b, n, h, w)
        xs = torch.linspace(-1, 1, w, dtype=x.dtype)
        ys = torch.linspace(-1, 1, h, dtype=x.dtype)
        return torch.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], -1)

    def nms2d(x: Any) -> Any:
        c = x[..., 1:-1, 1:-1]
        m = c > x[..., :-2, :-2]
        for dy in range(3):
            for dx in range(3):
                if (dy, dx) not in ((0, 0), (1, 1)):
                    m &= c > x[..., dy : dy + x.shape[-2] - 2, dx : dx + x.shape[-1] - 2]
        return F.pad(m.to(torch.uint8), (1, 1, 1, 1)).bool()

    def conv_soft_argmax2d(x: Any) -> tuple[Any, Any]:
        b, c, h, w = x.shape
        flat = x.reshape(b * c, 1, h, w)
        logits = F.unfold(F.pad(flat, [1, 1, 1, 1], value=float("-inf")), 3)
        wt = torch.softmax(logits, 1)
        offs = torch.stack(
            torch.meshgrid(torch.arange(3.0) - 1, torch.arange(3.0) - 1, indexing="xy")
        ).reshape(2, 9)
        grid = torch.stack(
            torch.meshgrid(torch.arange(float(w)), torch.arange(float(h)), indexing="xy")
        ).reshape(2, -1)
        coords = (offs @ wt + grid) * torch.tensor([[2 / (w - 1)], [2 / (h - 1)]]) - 1
        vals = (wt * F.unfold(F.pad(flat, [1, 1, 1, 1]), 3)).sum(1)
        return coords.reshape(b, c, 2, h, w), vals.reshape(b, c, h, w)

    return {
        "spatial_soft_argmax2d": spatial_soft_argmax2d,
        "nms2d": nms2d,
        "conv_soft_argmax2d": conv_soft_argmax2d,
    }


def _kernels() -> dict[str, Callable[[Any], Any]] | None:
    """The same arithmetic as the public calls, minus validation and dispatch: each operation's kernel,
    called with the namespace resolved beforehand. ``None`` if the internals have moved."""
    import array_api_compat

    try:
        from subpix_xp import _conv_soft_argmax, _nms, _spatial
    except ImportError:
        return None
    names = ("_soft_argmax_kernel", "_nms_kernel", "_conv_kernel")
    if not all(hasattr(m, n) for m, n in zip((_spatial, _nms, _conv_soft_argmax), names)):
        return None

    def ns(a: Any) -> Any:
        return array_api_compat.array_namespace(a)

    cache: dict[int, Any] = {}

    def xp_of(a: Any) -> Any:
        if id(type(a)) not in cache:
            cache[id(type(a))] = ns(a)
        return cache[id(type(a))]

    return {
        "spatial_soft_argmax2d": lambda a: _spatial._soft_argmax_kernel(a, 1.0, normalized=True, xp=xp_of(a)),
        "nms2d": lambda a: _nms._nms_kernel(a, window=(3, 3), mask_only=True, xp=xp_of(a)),
        "conv_soft_argmax2d": lambda a: _conv_soft_argmax._conv_kernel(
            a,
            1.0,
            window=(3, 3),
            strides=(1, 1),
            widths=((1, 1), (1, 1)),
            first=(-1, -1),
            sizes=tuple(a.shape[2:]),
            normalized=True,
            output_value=True,
            bonus=0.0,
            xp=xp_of(a),
        ),
    }


def measure_overhead(rounds: int) -> dict[str, Any]:
    """Per-call overhead on a (1, 1, 8, 8) input.

    ``ours`` is the public call; ``kernel`` the same arithmetic without validation and dispatch
    (the operation's kernel called directly); overhead = ours - kernel, paired per round. ``bare``
    is the operation written directly in the library by hand (a different, minimal sequence of
    operations) and ``kornia`` kornia's call, for scale.
    """
    torch = _setup_torch()
    import kornia.geometry.subpix as K

    import subpix_xp as S

    x = _randn((1, 1, 8, 8), 21)
    t = torch.from_numpy(x.copy())
    ours = {
        "spatial_soft_argmax2d": lambda a: S.spatial_soft_argmax2d(a),
        "nms2d": lambda a: S.nms2d(a, (3, 3), True),
        "conv_soft_argmax2d": lambda a: S.conv_soft_argmax2d(a, output_value=True),
    }
    kornia = {
        "spatial_soft_argmax2d": lambda a: K.spatial_soft_argmax2d(a),
        "nms2d": lambda a: K.nms2d(a, (3, 3), True),
        "conv_soft_argmax2d": lambda a: K.conv_soft_argmax2d(a, output_value=True),
    }
    bare = {"numpy": _bare_numpy(), "torch": _bare_torch()}
    kernels = _kernels()
    out: dict[str, Any] = {}
    for name in ours:
        calls = {
            "ours_numpy": lambda f=ours[name]: f(x),
            "ours_torch": lambda f=ours[name]: f(t),
            "bare_numpy": lambda f=bare["numpy"][name]: f(x),
            "bare_torch": lambda f=bare["torch"][name]: f(t),
            "kornia": lambda f=kornia[name]: f(t),
        }
        if kernels is not None:
            calls["kernel_numpy"] = lambda f=kernels[name]: f(x)
            calls["kernel_torch"] = lambda f=kernels[name]: f(t)
        counts = {k: _calibrate(fn, 0.02, 0.2) for k, fn in calls.items()}
        samples: dict[str, list[float]] = {k: [] for k in calls}
        keys = list(calls)
        for r in range(rounds):
            for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                samples[k].append(_sample(calls[k], counts[k]))
        med = {k: 1e6 * statistics.median(v) for k, v in samples.items()}
        ref = "kernel" if kernels is not None else "bare"
        out[name] = {
            "median_us": med,
            "reference": ref,
            "overhead_numpy_us": statistics.median(
                1e6 * (a - b) for a, b in zip(samples["ours_numpy"], samples[f"{ref}_numpy"])
            ),
            "overhead_torch_us": statistics.median(
                1e6 * (a - b) for a, b in zip(samples["ours_torch"], samples[f"{ref}_torch"])
            ),
        }
        print(f"  overhead {name}: " + ", ".join(f"{k}={v:.1f}us" for k, v in med.items()), flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, Any]:
    import kornia
    import torch

    import subpix_xp

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "subpix_xp"],
            capture_output=True,
            text=True,
            cwd=root,
            check=False,
        ).stdout.strip()
        commit += "+dirty" if dirty else ""
    except OSError:
        commit = "unknown"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": _threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "subpix_xp": subpix_xp.__version__,
        "commit": commit,
        "platform": platform.platform(),
    }


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked on this run."""
    wl = result["workloads"]
    torch_r = {k: v["impls"]["ours_torch"]["ratio_vs_kornia"] for k, v in wl.items()}
    numpy_r = {k: v["impls"]["ours_numpy"]["ratio_vs_kornia"] for k, v in wl.items()}
    out: dict[str, Any] = {
        "torch_max_ratio": max(torch_r.values()),
        "torch_all_le_1": all(r <= 1.0 for r in torch_r.values()),
        "torch_geomean": _geomean(list(torch_r.values())),
        "numpy_all_ok": all(r <= (1.5 if k in ("W1", "W7") else 1.0) for k, r in numpy_r.items()),
        "numpy_over_limit": {k: r for k, r in numpy_r.items() if r > (1.5 if k in ("W1", "W7") else 1.0)},
        "torch_over_limit": {k: r for k, r in torch_r.items() if r > 1.0},
    }
    out["torch_geomean_le_0_5"] = out["torch_geomean"] <= 0.5
    if result.get("overhead"):
        worst = max(max(v["overhead_numpy_us"], v["overhead_torch_us"]) for v in result["overhead"].values())
        out["overhead_max_us"] = worst
        out["overhead_le_50us"] = worst <= 50.0
    if result.get("memory"):
        mem = {}
        for k, m in result["memory"].items():
            ref = m.get("kornia", {}).get("rss_peak_mib")
            for impl in ("ours_numpy", "ours_torch"):
                ours = m.get(impl, {}).get("rss_peak_mib")
                if ref and ours is not None:
                    mem[f"{k}/{impl}"] = ours / ref
        out["memory_ratios"] = mem
        out["memory_max_ratio"] = max(mem.values()) if mem else float("nan")
        out["memory_all_le_1_5"] = all(r <= 1.5 for r in mem.values())
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# subpix_xp vs kornia 0.9.0, CPU",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; Python {m['python']}, "
        f"torch {m['torch']}, numpy {m['numpy']}, kornia {m['kornia']}, subpix_xp {m['subpix_xp']} ({m['commit']}).",
        f"Rounds: {result['settings']['rounds']} quiet interleaved rounds per workload (a round is quiet when other "
        f"processes used at most {result['settings']['quiet']} of a core during it; *rounds used* = quiet/total); "
        "medians per call in ms (25th-75th percentile); ratio = median of per-round ours/kornia. DoG input: "
        + result["dog_source"]
        + ".",
        "",
        "| workload | copy | kornia | ours NumPy | ours torch | NumPy / kornia | torch / kornia | rounds used |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(s: dict[str, Any]) -> str:
        return f"{s['median_ms']:.3g} ({s['p25_ms']:.3g}-{s['p75_ms']:.3g})"

    for key, w in result["workloads"].items():
        i = w["impls"]
        lines.append(
            f"| {key} {w['title']} | {i['copy']['median_ms']:.3g} | {cell(i['kornia'])} | {cell(i['ours_numpy'])} | "
            f"{cell(i['ours_torch'])} | {i['ours_numpy']['ratio_vs_kornia']:.2f} | {i['ours_torch']['ratio_vs_kornia']:.2f} | "
            f"{w.get('rounds_used', '?')}/{w.get('rounds', '?')}{'' if w.get('statistics_from', 'quiet').startswith('quiet') else ' (all)'} |"
        )
    t = result["targets"]
    lines += ["", f"Geometric mean of torch / kornia: {t['torch_geomean']:.2f}.", ""]
    for key, w in result["workloads"].items():
        if "numpy_floor" in w["impls"]:
            f = w["impls"]["numpy_floor"]
            lines += [
                f"Lower bound for NumPy on {key}: {w['numpy_floor_title']}: {cell(f)} ms, "
                f"{f['ratio_vs_kornia']:.2f}x kornia's whole call, in the same rounds.",
                "",
            ]
    if result.get("memory"):
        lines += [
            "Peak extra resident memory of one call, MiB (RSS high-water mark minus RSS before the call, fresh "
            "subprocess, every block >= 64 KiB mmapped); NumPy also by tracemalloc.",
            "",
            "| workload | copy | kornia | ours NumPy | ours NumPy (tracemalloc) | ours torch | NumPy / kornia | torch / kornia |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key, mm in result["memory"].items():

            def g(impl: str, field: str = "rss_peak_mib", mm: dict[str, Any] = mm) -> float:
                return float(mm.get(impl, {}).get(field, float("nan")))

            ref = g("kornia")
            lines.append(
                f"| {key} | {g('copy'):.1f} | {ref:.1f} | {g('ours_numpy'):.1f} | {g('ours_numpy', 'tracemalloc_peak_mib'):.1f} | "
                f"{g('ours_torch'):.1f} | {g('ours_numpy') / ref:.2f} | {g('ours_torch') / ref:.2f} |"
            )
        lines.append("")
    if result.get("overhead"):
        lines += [
            "Per-call overhead on a (1, 1, 8, 8) input, µs (medians). *kernel*: the same arithmetic without "
            "validation and dispatch (the operation's kernel called with the namespace resolved); overhead = public "
            "call - kernel, median of per-round differences. *hand-written*: a minimal version written directly in "
            "the library; kornia for scale.",
            "",
            "| function | kernel NumPy | ours NumPy | overhead NumPy | kernel torch | ours torch | overhead torch "
            "| hand-written NumPy | hand-written torch | kornia |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, o in result["overhead"].items():
            md = o["median_us"]
            ref = o.get("reference", "bare")
            lines.append(
                f"| {name} | {md[ref + '_numpy']:.1f} | {md['ours_numpy']:.1f} | {o['overhead_numpy_us']:.1f} | "
                f"{md[ref + '_torch']:.1f} | {md['ours_torch']:.1f} | {o['overhead_torch_us']:.1f} | "
                f"{md['bare_numpy']:.1f} | {md['bare_torch']:.1f} | {md['kornia']:.1f} |"
            )
        lines.append("")
    lines += ["Targets:", ""]
    lines.append(
        f"- torch <= 1.0x kornia on every workload: {'yes' if t['torch_all_le_1'] else 'no'} "
        f"(max {t['torch_max_ratio']:.2f}{'; over: ' + str({k: round(v, 2) for k, v in t['torch_over_limit'].items()}) if t['torch_over_limit'] else ''})"
    )
    lines.append(
        f"- torch geometric mean <= 0.5: {'yes' if t['torch_geomean_le_0_5'] else 'no'} ({t['torch_geomean']:.2f})"
    )
    lines.append(
        f"- NumPy <= 1.0x kornia (W1, W7 <= 1.5x): {'yes' if t['numpy_all_ok'] else 'no'}"
        f"{' (over: ' + str({k: round(v, 2) for k, v in t['numpy_over_limit'].items()}) + ')' if t['numpy_over_limit'] else ''}"
    )
    if "overhead_max_us" in t:
        lines.append(
            f"- overhead <= 50 µs per small call: {'yes' if t['overhead_le_50us'] else 'no'} (max {t['overhead_max_us']:.1f} µs)"
        )
    if "memory_max_ratio" in t:
        lines.append(
            f"- peak memory <= 1.5x kornia: {'yes' if t['memory_all_le_1_5'] else 'no'} (max {t['memory_max_ratio']:.2f})"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu.json"))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument(
        "--target-ms", type=float, default=30.0, help="time per sample (calls are repeated to fill it)"
    )
    p.add_argument("--warmup-s", type=float, default=0.3)
    p.add_argument("--only", default="", help="comma-separated workload keys (default: all)")
    p.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads (the issue fixes 2)")
    p.add_argument(
        "--quiet",
        type=float,
        default=0.25,
        help="a round is quiet when other processes used at most this many cores during it",
    )
    p.add_argument(
        "--max-rounds", type=int, default=None, help="stop waiting for quiet rounds here (10 x --rounds)"
    )
    p.add_argument(
        "--patience", type=float, default=180.0, help="seconds per workload to wait for quiet rounds"
    )
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-overhead", action="store_true")
    p.add_argument("--_memory-probe", nargs=2, metavar=("KEY", "IMPL"), help=argparse.SUPPRESS)
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="time with glibc's adaptive malloc settings instead of the steady ones (see README)",
    )
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")

    if args._memory_probe:
        print(json.dumps(memory_probe(*args._memory_probe)))
        return 0
    if (
        not args.default_malloc
        and os.environ.get("MALLOC_TRIM_THRESHOLD_") != _STEADY_MALLOC["MALLOC_TRIM_THRESHOLD_"]
    ):
        # glibc reads these at start-up: run again with them (same arguments).
        os.execve(
            sys.executable,
            [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)],
            dict(os.environ, **_STEADY_MALLOC),
        )

    keys = [k for k in args.only.split(",") if k] or [w.key for w in WORKLOADS]
    os.environ["SUBPIX_BENCH_THREADS"] = str(args.threads)  # read by _threads(), here and in the probes
    _setup_torch()
    result: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "rounds": args.rounds,
            "target_ms": args.target_ms,
            "warmup_s": args.warmup_s,
            "quiet": args.quiet,
            "malloc": "default" if args.default_malloc else _STEADY_MALLOC,
            "torch_threads": _threads(),
            "dtype": "float32",
        },
        "workloads": {},
    }
    for key in keys:
        w = BY_KEY[key]
        r = time_workload(
            w, args.rounds, args.target_ms / 1e3, args.warmup_s, args.quiet, args.max_rounds, args.patience
        )
        result["workloads"][key] = r
        i = r["impls"]
        print(
            f"{key:4s} {w.title:52s} kornia {i['kornia']['median_ms']:8.3f} ms | numpy {i['ours_numpy']['median_ms']:8.3f} "
            f"({i['ours_numpy']['ratio_vs_kornia']:.2f}x) | torch {i['ours_torch']['median_ms']:8.3f} "
            f"({i['ours_torch']['ratio_vs_kornia']:.2f}x) | copy {i['copy']['median_ms']:.3f} | "
            f"{r['rounds_used']}/{r['rounds']} rounds",
            flush=True,
        )
    result["dog_source"] = _DOG_CACHE.get("source") or dog_octave()[1]
    if not args.no_overhead:
        result["overhead"] = measure_overhead(max(5, args.rounds))
    if not args.no_memory:
        result["memory"] = measure_memory(keys)
    result["targets"] = targets(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
