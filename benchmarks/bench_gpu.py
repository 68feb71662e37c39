"""subpix_xp on CuPy and on PyTorch CUDA against kornia 0.9.0 on the same GPU: workloads W1..W7 of issue 7.

Run from the repository root on a machine with an NVIDIA GPU, CUDA PyTorch, CuPy and kornia 0.9.0
(see ``docs/gpu.md``)::

    python benchmarks/bench_gpu.py

It writes ``benchmarks/results/gpu_<device>.json`` (every sample, the machine, the settings) and
``gpu_<device>.md`` (the tables) beside it; ``--out`` picks another JSON path. ``--only W6a,W6b
--rounds 5`` gives a quick look. Without a CUDA device (or without CuPy, CUDA PyTorch or kornia
0.9.0) it stops at once with exit status 2 and says what is missing; ``--impls`` runs a subset
(for example ``--impls kornia,ours_torch`` on a machine without CuPy).

Method:

* Four implementations per workload, on the same float32 data (fixed seeds) on one CUDA device:
  ``copy`` (``torch.clone`` of the first input: the cost of one pass over the data), kornia 0.9.0
  on torch CUDA tensors, subpix_xp on torch CUDA tensors, subpix_xp on CuPy arrays.
* Timing is CUDA-synchronised: the device is synchronised before a sample starts and after its
  last call, and the wall time between the two is divided by the number of calls. Warm-up first
  (at least 3 calls and ``--warmup-s`` per implementation; it also pays CuPy's kernel compilation
  and torch's lazy initialisation), which calibrates how many back-to-back calls fill one sample
  of ``--target-ms``. Then ``--rounds`` rounds; in each round every implementation takes one
  sample, in an order that rotates from round to round. Reported: the median per call and its
  25th-75th percentile spread; the ratio ours/kornia is the median of the per-round ratios.
* Before timing, every implementation's outputs are compared with kornia's and CuPy's with
  torch's (largest difference, or the number of differing mask entries): a sanity check that the
  timed calls compute the same thing, recorded in the JSON and the table.
* ``--cpu-smoke`` runs the same script on CPU stand-ins (torch CPU for torch CUDA, NumPy for
  CuPy) at small sizes, to check the script itself without a GPU; its numbers mean nothing.

The DoG octave (W6) is a deterministic synthetic scene: 400 Gaussian blobs of random position,
size and sign, blurred analytically (a Gaussian of variance ``s**2`` blurred by ``sigma`` is a
Gaussian of variance ``s**2 + sigma**2``) at ``sigma_i = 1.6 * 2**(i / 3)``, ``i = 0..6``, and
differenced into 6 levels of 480 x 640.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

IMPLS = ("copy", "kornia", "ours_torch", "ours_cupy")
LABELS = {
    "copy": "copy (torch clone)",
    "kornia": "kornia 0.9.0 (torch CUDA)",
    "ours_torch": "subpix_xp (torch CUDA)",
    "ours_cupy": "subpix_xp (CuPy)",
}
KORNIA_VERSION = "0.9.0"
EXIT_UNAVAILABLE = 2


# ---------------------------------------------------------------------------------------------
# Workloads (the table of issue 7)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row: ``inputs`` maps names to ``("randn", shape, seed)``, ``("dog", shape)`` or ``("gauss", shape)``."""

    key: str
    title: str
    inputs: dict[str, tuple[Any, ...]]
    call: Callable[[Any, dict[str, Any]], Any]  # (subpix_xp or kornia.geometry.subpix, arrays) -> outputs
    kornia_call: Callable[[Any, dict[str, Any]], Any] | None = None  # where kornia's call differs


WORKLOADS = (
    Workload(
        "W1",
        "spatial_soft_argmax2d (32, 17, 64, 48)",
        {"x": ("randn", (32, 17, 64, 48), 101)},
        lambda m, a: m.spatial_soft_argmax2d(a["x"]),
    ),
    Workload(
        "W2a",
        "conv_soft_argmax2d (20, 16, 50, 32), k (3, 3), s (2, 2), p (1, 1), output_value",
        {"x": ("randn", (20, 16, 50, 32), 102)},
        lambda m, a: m.conv_soft_argmax2d(a["x"], (3, 3), (2, 2), (1, 1), output_value=True),
    ),
    Workload(
        "W2b",
        "conv_soft_argmax2d (8, 1, 512, 512), defaults, output_value",
        {"x": ("randn", (8, 1, 512, 512), 103)},
        lambda m, a: m.conv_soft_argmax2d(a["x"], output_value=True),
    ),
    Workload(
        "W3",
        "conv_soft_argmax3d (1, 1, 6, 256, 256), defaults",
        {"x": ("randn", (1, 1, 6, 256, 256), 104)},
        lambda m, a: m.conv_soft_argmax3d(a["x"]),
    ),
    Workload(
        "W4a",
        "nms2d (8, 1, 512, 512), (3, 3), mask_only",
        {"x": ("randn", (8, 1, 512, 512), 105)},
        lambda m, a: m.nms2d(a["x"], (3, 3), mask_only=True),
    ),
    Workload(
        "W4b",
        "nms2d (8, 1, 512, 512), (5, 5), mask_only",
        {"x": ("randn", (8, 1, 512, 512), 105)},
        lambda m, a: m.nms2d(a["x"], (5, 5), mask_only=True),
    ),
    Workload(
        "W5a",
        "nms3d (1, 1, 6, 640, 800), (3, 3, 3), mask_only",
        {"x": ("randn", (1, 1, 6, 640, 800), 106)},
        lambda m, a: m.nms3d(a["x"], (3, 3, 3), mask_only=True),
    ),
    Workload(
        "W5b",
        "nms3d_minmax (1, 1, 6, 640, 800)",
        {"x": ("randn", (1, 1, 6, 640, 800), 106)},
        lambda m, a: m.nms3d_minmax(a["x"]),
    ),
    # kornia 0.9.0 ignores strict_maxima_bonus (and warns when given one): it runs its defaults, ours
    # runs with a bonus of 0, so both compute the same thing.
    Workload(
        "W6a",
        "conv_quad_interp3d, DoG octave (1, 1, 6, 480, 640), strict_maxima_bonus=0",
        {"x": ("dog", (1, 1, 6, 480, 640))},
        lambda m, a: m.conv_quad_interp3d(a["x"], strict_maxima_bonus=0.0),
        lambda m, a: m.conv_quad_interp3d(a["x"]),
    ),
    Workload(
        "W6b",
        "iterative_quad_interp3d, DoG octave (1, 1, 6, 480, 640), strict_maxima_bonus=0",
        {"x": ("dog", (1, 1, 6, 480, 640))},
        lambda m, a: m.iterative_quad_interp3d(a["x"], strict_maxima_bonus=0.0),
        lambda m, a: m.iterative_quad_interp3d(a["x"]),
    ),
    Workload(
        "W7",
        "render_gaussian2d, mean (32, 17, 2), std 0.1, size (64, 48)",
        {"mean": ("gauss_mean", (32, 17, 2)), "std": ("full", (32, 17, 2), 0.1)},
        lambda m, a: m.render_gaussian2d(a["mean"], a["std"], (64, 48)),
    ),
)
BY_KEY = {w.key: w for w in WORKLOADS}


def _small(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``--cpu-smoke`` sizes: batch and channels at most 2, spatial sides divided by 8 (at least 8)."""
    lead = tuple(min(n, 2) for n in shape[:2])
    return lead + tuple(n if n <= 8 else max(8, n // 8) for n in shape[2:])


def dog_octave(shape: tuple[int, ...], seed: int = 7, blobs: int = 400) -> np.ndarray:
    """A (B, C, 6, H, W) difference-of-Gaussians octave of a synthetic scene of Gaussian blobs, float32."""
    b, c, levels, h, w = shape
    sigmas = [1.6 * 2.0 ** (i / 3.0) for i in range(levels + 1)]
    rng = np.random.default_rng(seed)
    out = np.zeros((b * c, levels + 1, h, w))
    count = max(4, blobs * h * w // (480 * 640))
    for image in out:
        cy, cx = rng.uniform(0, h, count), rng.uniform(0, w, count)
        size = rng.uniform(1.5, 6.0, count)
        amp = rng.choice([-1.0, 1.0], count) * rng.uniform(0.2, 1.0, count)
        for y0, x0, s, a in zip(cy, cx, size, amp):
            for i, sigma in enumerate(sigmas):
                var = s * s + sigma * sigma
                r = math.ceil(4.0 * math.sqrt(var))
                ys = np.arange(max(0, int(y0) - r), min(h, int(y0) + r + 1))
                xs = np.arange(max(0, int(x0) - r), min(w, int(x0) + r + 1))
                g = np.exp(-((ys[:, None] - y0) ** 2 + (xs[None, :] - x0) ** 2) / (2.0 * var))
                image[i, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] += a * (s * s / var) * g
    dog = out[:, 1:] - out[:, :-1]
    return dog.reshape(b, c, levels, h, w).astype(np.float32)


def make_inputs(w: Workload, small: bool) -> dict[str, np.ndarray]:
    """The workload's inputs as float32 NumPy arrays (deterministic)."""
    arrays = {}
    for name, spec in w.inputs.items():
        kind, shape = spec[0], _small(spec[1]) if small else spec[1]
        if kind == "randn":
            arrays[name] = np.random.default_rng(spec[2]).standard_normal(shape, dtype=np.float32)
        elif kind == "dog":
            arrays[name] = dog_octave(shape)
        elif kind == "gauss_mean":
            arrays[name] = np.random.default_rng(107).uniform(-1.0, 1.0, shape).astype(np.float32)
        elif kind == "full":
            arrays[name] = np.full(shape, spec[2], dtype=np.float32)
        else:
            raise ValueError(f"unknown input kind {kind!r}")
    return arrays


# ---------------------------------------------------------------------------------------------
# The device: preflight (fail fast), implementations, synchronisation


class Unavailable(RuntimeError):
    """What this machine lacks for the benchmark."""


@dataclasses.dataclass
class Device:
    """Where the implementations run: a CUDA device, or the ``--cpu-smoke`` stand-ins."""

    smoke: bool
    index: int
    torch: Any
    cupy: Any  # the CuPy module, or NumPy in smoke mode
    kornia: Any  # kornia.geometry.subpix

    @property
    def torch_device(self) -> str:
        return "cpu" if self.smoke else f"cuda:{self.index}"

    def sync(self) -> None:
        if not self.smoke:
            self.torch.cuda.synchronize(self.index)  # cudaDeviceSynchronize: CuPy's streams too

    def to_torch(self, a: np.ndarray) -> Any:
        return self.torch.asarray(np.ascontiguousarray(a), device=self.torch_device)

    def to_cupy(self, a: np.ndarray) -> Any:
        if self.smoke:
            return np.ascontiguousarray(a)
        with self.cupy.cuda.Device(self.index):
            return self.cupy.asarray(a)


def preflight(impls: tuple[str, ...], index: int, smoke: bool) -> Device:
    """Import and check everything the chosen implementations need; raise :class:`Unavailable` listing what is missing."""
    problems: list[str] = []
    torch = cupy = kornia = None
    try:
        import torch
    except ImportError as exc:
        problems.append(f"PyTorch is not installed ({exc})")
    if torch is not None and not smoke:
        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (a CPU-only build)"
            problems.append(
                f"no CUDA device: torch {torch.__version__} reports torch.cuda.is_available() == False "
                f"(its CUDA build: {build})"
            )
        elif index >= torch.cuda.device_count():
            problems.append(f"no CUDA device {index}: torch sees {torch.cuda.device_count()}")
    if "ours_cupy" in impls and not smoke:
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
            if index >= count:
                problems.append(f"no CUDA device {index} for CuPy: it sees {count}")
        except ImportError as exc:
            problems.append(f"CuPy is not installed ({exc}); or leave it out: --impls copy,kornia,ours_torch")
        except Exception as exc:  # cupy installed, but no driver or no device
            problems.append(f"no CUDA device for CuPy ({type(exc).__name__}: {exc})")
    if smoke:
        cupy = np
    if "kornia" in impls:
        try:
            import kornia
            import kornia.geometry.subpix

            if kornia.__version__ != KORNIA_VERSION:
                problems.append(
                    f"kornia {kornia.__version__} is installed; the baseline is kornia=={KORNIA_VERSION}"
                )
            kornia = kornia.geometry.subpix
        except ImportError as exc:
            problems.append(f"kornia is not installed ({exc}); pip install kornia=={KORNIA_VERSION}")
    if problems:
        raise Unavailable("; ".join(problems))
    torch.set_grad_enabled(False)
    if not smoke:
        torch.cuda.set_device(index)
    return Device(smoke, index, torch, cupy, kornia)


def implementations(
    w: Workload, dev: Device, impls: tuple[str, ...], small: bool
) -> dict[str, Callable[[], Any]]:
    """The zero-argument calls of one workload, keyed by implementation."""
    import subpix_xp

    arrays = make_inputs(w, small)
    t_args = {k: dev.to_torch(v) for k, v in arrays.items()}
    first = next(iter(t_args.values()))
    calls: dict[str, Callable[[], Any]] = {}
    if "copy" in impls:
        calls["copy"] = first.clone
    if "kornia" in impls:
        kornia_call = w.kornia_call or w.call
        calls["kornia"] = lambda: kornia_call(dev.kornia, t_args)
    if "ours_torch" in impls:
        calls["ours_torch"] = lambda: w.call(subpix_xp, t_args)
    if "ours_cupy" in impls:
        c_args = {k: dev.to_cupy(v) for k, v in arrays.items()}
        calls["ours_cupy"] = lambda: w.call(subpix_xp, c_args)
    return calls


# ---------------------------------------------------------------------------------------------
# Agreement (a sanity check of the timed calls) and timing


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def _numpy(a: Any) -> np.ndarray:
    from subpix_xp.testing import to_numpy

    return to_numpy(a)


def difference(got: Any, want: Any) -> dict[str, Any]:
    """Largest absolute difference of floating outputs, differing entries of masks, per output."""
    got, want = _as_tuple(got), _as_tuple(want)
    if len(got) != len(want):
        return {"outputs": f"{len(got)} vs {len(want)}"}
    diffs = []
    for g, e in zip(got, want):
        g, e = _numpy(g), _numpy(e)
        if g.shape != e.shape:
            diffs.append(f"shape {g.shape} vs {e.shape}")
        elif g.dtype == bool or e.dtype == bool:
            diffs.append({"mask_entries_differ": int(np.count_nonzero(g != e))})
        else:
            g64, e64 = g.astype(np.float64), e.astype(np.float64)
            both_nan = np.isnan(g64) & np.isnan(e64)
            with np.errstate(invalid="ignore"):
                d = np.where(both_nan, 0.0, np.abs(g64 - e64))
            diffs.append({"max_abs_diff": float(np.nanmax(d)) if d.size else 0.0})
    return {"outputs": diffs}


def _sample(fn: Callable[[], Any], n: int, dev: Device) -> float:
    dev.sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    dev.sync()
    return (time.perf_counter() - start) / n


def _calibrate(fn: Callable[[], Any], dev: Device, target_s: float, warmup_s: float) -> int:
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < warmup_s:
        fn()
        dev.sync()
        calls += 1
    per_call = min(_sample(fn, 1, dev) for _ in range(3))
    return max(1, math.ceil(target_s / max(per_call, 1e-7)))


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def run_workload(
    w: Workload, dev: Device, impls: tuple[str, ...], args: argparse.Namespace
) -> dict[str, Any]:
    small = args.cpu_smoke
    entry: dict[str, Any] = {
        "title": w.title,
        "inputs": {k: list(_small(s[1]) if small else s[1]) for k, s in w.inputs.items()},
        "errors": {},
    }
    calls = implementations(w, dev, impls, small)
    outputs: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for impl, fn in list(calls.items()):
        try:
            counts[impl] = _calibrate(fn, dev, args.target_ms / 1e3, args.warmup_s)
            outputs[impl] = fn()
            dev.sync()
        except Exception as exc:
            entry["errors"][impl] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"  {w.key} {impl}: FAILED: {entry['errors'][impl]}", file=sys.stderr)
            del calls[impl]
    agreement = {}
    if "kornia" in outputs:
        for impl in ("ours_torch", "ours_cupy"):
            if impl in outputs:
                agreement[f"{impl}_vs_kornia"] = difference(outputs[impl], outputs["kornia"])
    if "ours_torch" in outputs and "ours_cupy" in outputs:
        agreement["ours_cupy_vs_ours_torch"] = difference(outputs["ours_cupy"], outputs["ours_torch"])
    entry["agreement"] = agreement
    del outputs
    samples: dict[str, list[float]] = {impl: [] for impl in calls}
    order = list(calls)
    for r in range(args.rounds):
        k = r % max(len(order), 1)
        for impl in order[k:] + order[:k]:
            samples[impl].append(_sample(calls[impl], counts[impl], dev))
    entry["calls_per_sample"] = counts
    entry["samples_ms"] = {impl: [s * 1e3 for s in xs] for impl, xs in samples.items()}
    entry["median_ms"] = {impl: statistics.median(xs) * 1e3 for impl, xs in samples.items() if xs}
    entry["p25_ms"] = {impl: _quantile(xs, 0.25) * 1e3 for impl, xs in samples.items() if xs}
    entry["p75_ms"] = {impl: _quantile(xs, 0.75) * 1e3 for impl, xs in samples.items() if xs}
    if "kornia" in samples:
        entry["ratio_vs_kornia"] = {
            impl: statistics.median(a / b for a, b in zip(samples[impl], samples["kornia"]))
            for impl in ("ours_torch", "ours_cupy")
            if samples.get(impl)
        }
    return entry


# ---------------------------------------------------------------------------------------------
# Report


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def machine(dev: Device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {n: _version(n) for n in ("subpix-xp", "numpy", "array-api-compat", "torch", "kornia")},
    }
    cupy_name = next(
        (n for n in ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x") if _version(n)), None
    )
    info["packages"]["cupy"] = _version(cupy_name) if cupy_name else None
    if dev.smoke:
        info["device"] = "cpu (--cpu-smoke: torch CPU and NumPy stand in for torch CUDA and CuPy)"
        return info
    torch = dev.torch
    props = torch.cuda.get_device_properties(dev.index)
    info.update(
        device=torch.cuda.get_device_name(dev.index),
        device_index=dev.index,
        compute_capability=f"{props.major}.{props.minor}",
        memory_gib=round(props.total_memory / 2**30, 1),
        torch_cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    if dev.cupy is not None and dev.cupy is not np:
        runtime = dev.cupy.cuda.runtime
        info.update(cupy_cuda_runtime=runtime.runtimeGetVersion(), cuda_driver=runtime.driverGetVersion())
    return info


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _cell(entry: dict[str, Any], impl: str) -> str:
    if impl in entry["errors"]:
        return "failed"
    if impl not in entry.get("median_ms", {}):
        return ""
    med, lo, hi = entry["median_ms"][impl], entry["p25_ms"][impl], entry["p75_ms"][impl]
    return f"{med:.3g} ({lo:.3g}-{hi:.3g})"


def _agreement_text(diff: dict[str, Any]) -> str:
    parts = []
    for d in diff.get("outputs", []):
        if isinstance(d, str):
            parts.append(d)
        elif "mask_entries_differ" in d:
            parts.append(f"mask: {d['mask_entries_differ']} differ")
        else:
            parts.append(f"{d['max_abs_diff']:.2g}")
    return ", ".join(parts) if parts else str(diff.get("outputs", ""))


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    impls = s["impls"]
    lines = [
        f"# subpix_xp on GPU: {m['device']}",
        "",
        "`" + " ".join(["python", "benchmarks/bench_gpu.py", *s["argv"]]) + "`",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + ".",
        f"Rounds: {s['rounds']}, about {s['target_ms']} ms per sample, warm-up {s['warmup_s']} s per "
        "implementation; CUDA-synchronised wall time per call, median (25th-75th percentile), in ms. "
        "Ratios: ours / kornia, median of the per-round ratios (below 1: faster than kornia).",
        "",
        "| key | workload | "
        + " | ".join(LABELS[i] for i in impls)
        + "".join(
            f" | {LABELS[i].split(' (')[1].rstrip(')')} / kornia"
            for i in ("ours_torch", "ours_cupy")
            if i in impls and "kornia" in impls
        )
        + " |",
        "| --- | --- |"
        + " ---: |"
        * (len(impls) + sum(1 for i in ("ours_torch", "ours_cupy") if i in impls and "kornia" in impls)),
    ]
    for key, e in result["workloads"].items():
        row = [key, e["title"]] + [_cell(e, i) for i in impls]
        for i in ("ours_torch", "ours_cupy"):
            if i in impls and "kornia" in impls:
                r = e.get("ratio_vs_kornia", {}).get(i)
                row.append(f"{r:.2f}" if r is not None else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Agreement of the timed calls",
        "",
        "Largest absolute difference per output (masks: differing entries).",
        "",
        "| key | comparison | per output |",
        "| --- | --- | --- |",
    ]
    for key, e in result["workloads"].items():
        for name, diff in e.get("agreement", {}).items():
            lines.append(f"| {key} | {name.replace('_', ' ')} | {_agreement_text(diff)} |")
    failures = [(k, i, msg) for k, e in result["workloads"].items() for i, msg in e["errors"].items()]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {k} {i}: `{msg}`" for k, i, msg in failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default: benchmarks/results/gpu_<device>.json); the .md goes beside it",
    )
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--only", default="", help="comma-separated workload keys (default: all of W1..W7)")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated subset of {','.join(IMPLS)}")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument(
        "--target-ms", type=float, default=50.0, help="time per sample (calls are repeated to fill it)"
    )
    p.add_argument("--warmup-s", type=float, default=0.5)
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="check the script without a GPU: torch CPU and NumPy stand in, small inputs; needs --out",
    )
    args = p.parse_args(argv)
    impls = tuple(i.strip() for i in args.impls.split(",") if i.strip())
    unknown = [i for i in impls if i not in IMPLS]
    keys = [k.strip() for k in args.only.split(",") if k.strip()] or list(BY_KEY)
    missing = [k for k in keys if k not in BY_KEY]
    if unknown or missing:
        p.error(
            f"unknown implementation(s) {unknown} or workload(s) {missing}; "
            f"known: {', '.join(IMPLS)} / {', '.join(BY_KEY)}"
        )
    if args.cpu_smoke and args.out is None:
        p.error("--cpu-smoke needs --out (its numbers must not land in benchmarks/results/)")
    try:
        dev = preflight(impls, args.device, args.cpu_smoke)
    except Unavailable as exc:
        print(
            f"bench_gpu: cannot run: {exc}.\nThis benchmark needs an NVIDIA GPU with CUDA PyTorch, CuPy and "
            f"kornia=={KORNIA_VERSION} (see docs/gpu.md); --cpu-smoke checks the script on CPU.",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    info = machine(dev)
    out = args.out or Path("benchmarks/results") / f"gpu_{slug(info['device'])}.json"
    print(
        f"bench_gpu: {info['device']}; workloads {', '.join(keys)}; implementations {', '.join(impls)}",
        file=sys.stderr,
    )
    result: dict[str, Any] = {
        "schema": 1,
        "machine": info,
        "settings": {
            "argv": list(sys.argv[1:] if argv is None else argv),
            "impls": list(impls),
            "rounds": args.rounds,
            "target_ms": args.target_ms,
            "warmup_s": args.warmup_s,
            "cpu_smoke": args.cpu_smoke,
            "dtype": "float32",
        },
        "workloads": {},
    }
    started = time.perf_counter()
    for key in keys:
        t0 = time.perf_counter()
        result["workloads"][key] = run_workload(BY_KEY[key], dev, impls, args)
        med = result["workloads"][key].get("median_ms", {})
        print(
            f"  {key}: "
            + ", ".join(f"{i} {v:.3g} ms" for i, v in med.items())
            + f"  [{time.perf_counter() - t0:.0f} s]",
            file=sys.stderr,
        )
    result["seconds"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"bench_gpu: wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 1 if any(e["errors"] for e in result["workloads"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
