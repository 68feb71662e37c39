"""``detect_blobs`` against OpenCV SIFT's ``detect`` on photographs: the speed targets of issue 11.

Run (from the repository root)::

    python benchmarks/bench_detect_speed.py                       # this checkout
    python benchmarks/bench_detect_speed.py --baseline ../main    # and a baseline checkout, side by side
    python benchmarks/bench_detect_speed.py --threads 1 --clock cpu \
        --image camera,coins,astronaut,hubble_deep_field          # the photographs of bench_real.py

What is timed, on scikit-image's ``camera`` (512x512; ``--image`` takes a comma-separated list of
bundled photographs, colour ones converted to grey):

* ``sift``: ``cv2.SIFT_create(nfeatures=500).detect(image_uint8, None)`` (it also assigns
  orientations);
* ``numpy`` / ``torch``: ``detect_blobs(image, 500)`` on the float32 ``(1, 1, H, W)`` image in
  ``[0, 1]``, as a NumPy array and as a torch CPU tensor;
* ``numpy pyramid`` / ``torch pyramid``: the Gaussian scale pyramid alone, with ``detect_blobs``'s
  defaults (the part of the time that the ``separable_filter`` hook serves).

Method: every checkout runs in its own worker process (``PYTHONPATH`` set to it), started with the
same thread count for everything: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` (NumPy's BLAS), ``torch.set_num_threads`` and ``cv2.setNumThreads`` all equal
``--threads``. Each worker warms every call up, then runs ``--repeats`` rounds in which every call
takes one sample, in an order that rotates from round to round. With ``--baseline`` the workers of
the two checkouts alternate, ``--blocks`` times each, so both share the machine's drift (``--clock
cpu`` times the process's CPU instead of the elapsed time: with ``--threads 1`` on a machine that
other jobs share, it counts only this process's work, page faults included). The table
shows medians (ms) over all samples and each ratio to SIFT as the median of the per-round ratios
(paired samples from the same round). Targets (issue 11): ``numpy <= 3x`` and ``torch <= 2x`` SIFT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"numpy": 3.0, "torch": 2.0}
CALLS = ("sift", "numpy", "torch", "numpy pyramid", "torch pyramid")


def _worker(args: argparse.Namespace) -> None:
    """Time every call on every photograph in this process and print the samples as JSON (one line)."""
    import cv2
    import torch

    import subpix_xp

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    out: dict[str, dict] = {}
    for name in args.image.split(","):
        out[name] = _time_photo(name, args)
    print(json.dumps({"photos": out, "subpix_xp": subpix_xp.__file__}))


def _grey_u8(name: str):
    import numpy as np
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 3:
        image = (image[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return image


def _time_photo(name: str, args: argparse.Namespace) -> dict:
    import cv2
    import numpy as np
    import torch

    from subpix_xp import detect_blobs

    image = _grey_u8(name)
    gray = (image.astype(np.float32) / 255.0)[None, None]
    arrays = {"numpy": gray, "torch": torch.from_numpy(gray.copy())}
    sift = cv2.SIFT_create(nfeatures=500)
    calls = {"sift": lambda: sift.detect(image, None)}
    for backend, array in arrays.items():
        calls[backend] = lambda a=array: detect_blobs(a, 500)
        pyramid = _pyramid_call(array)
        if pyramid is not None:
            calls[f"{backend} pyramid"] = pyramid
    for call in calls.values():  # warm-up: caches, first-touch memory, lazy imports
        for _ in range(2):
            call()
    samples: dict[str, list[float]] = {call: [] for call in calls}
    names = list(calls)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    for round_ in range(args.repeats):
        shift = round_ % len(names)
        for call in names[shift:] + names[:shift]:
            start = clock()
            calls[call]()
            samples[call].append(1000.0 * (clock() - start))
    found = {b: int(np.sum(np.asarray(detect_blobs(a, 500).valid))) for b, a in arrays.items()}
    found["sift"] = len(sift.detect(image, None))
    return {"samples": samples, "found": found, "shape": list(image.shape)}


def _pyramid_call(array):
    """The pyramid alone, as ``detect_blobs`` builds it, or None where the private API differs."""
    try:
        import array_api_compat

        from subpix_xp._pyramid import scale_pyramid
        from subpix_xp.backends import hooks_for

        xp = array_api_compat.array_namespace(array)
        hooks = hooks_for(xp)

        def call():
            return scale_pyramid(array, 3, 1.6, 32, True, 3, hooks, xp=xp)

        call()
    except Exception as exc:  # a checkout whose private pyramid API differs: no pyramid row
        print(f"pyramid not timed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return call


def _run_worker(tree: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env.pop("SUBPIX_XP_GENERIC_HOOKS", None)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--image",
        args.image,
        "--clock",
        args.clock,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"worker for {tree} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    labels = list(results)
    lines = [
        f"detect_blobs vs OpenCV SIFT detect (nfeatures=500): {args.threads} thread(s) everywhere, "
        f"{args.repeats * args.blocks} samples per call, photo and checkout, {args.clock} clock",
        "",
        "| photo | call | " + " | ".join(f"{label} ms | x SIFT" for label in labels) + " | target |",
        "| --- | --- | " + " | ".join("---: | ---:" for _ in labels) + " | --- |",
    ]
    for photo in args.image.split(","):
        shape = "x".join(str(n) for n in results[labels[0]][0]["photos"][photo]["shape"][::-1])
        for call in CALLS:
            cells = []
            for label in labels:
                runs = [run["photos"][photo] for run in results[label]]
                if not all(call in run["samples"] for run in runs):
                    cells.append("n/a | n/a")
                    continue
                times = [t for run in runs for t in run["samples"][call]]
                ratios = [t / s for run in runs for t, s in zip(run["samples"][call], run["samples"]["sift"])]
                cells.append(f"{statistics.median(times):.1f} | {statistics.median(ratios):.2f}")
            target = f"<= {TARGETS[call]:.0f}x" if call in TARGETS else ""
            lines.append(f"| {photo} {shape} | {call} | " + " | ".join(cells) + f" | {target} |")
    lines.append("")
    for label in labels:
        run = results[label][0]
        found = "; ".join(
            f"{photo}: " + ", ".join(f"{k} {v}" for k, v in rec["found"].items())
            for photo, rec in run["photos"].items()
        )
        lines.append(f"{label}: {run['subpix_xp']} (keypoints: {found})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", type=Path, help="a second checkout to time side by side (its repository root)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for torch, OpenCV and BLAS (default 2)"
    )
    parser.add_argument("--repeats", type=int, default=15, help="rounds per worker (default 15)")
    parser.add_argument("--blocks", type=int, default=1, help="workers per checkout, alternating (default 1)")
    parser.add_argument(
        "--image", default="camera", help="scikit-image photographs, comma-separated (default camera)"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (default); cpu: the process's CPU time, steadier on a busy "
        "machine (with --threads 1 it is the single thread's time)",
    )
    parser.add_argument(
        "--out", type=Path, help="also write the table (Markdown) and the samples (JSON beside it)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    trees = {"this": ROOT}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), "this": ROOT}
    results: dict[str, list[dict]] = {label: [] for label in trees}
    for _ in range(args.blocks):
        for label, tree in trees.items():
            results[label].append(_run_worker(tree, args))
    table = _table(results, args)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table + "\n")
        settings = {
            "threads": args.threads,
            "repeats": args.repeats,
            "blocks": args.blocks,
            "image": args.image,
            "clock": args.clock,
            "trees": {label: str(tree) for label, tree in trees.items()},
        }
        args.out.with_suffix(".json").write_text(
            json.dumps({"settings": settings, "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
