"""Localise the spots of a >= 1 GiB 3-D volume chunk by chunk with Dask, in bounded memory.

The volume (default 64 x 2048 x 2048 float32, 1 GiB) is the synthetic microscopy-like stack of
``examples/dask_blob_volume.py``, generated lazily chunk by chunk: it never exists in memory as a
whole. The pipeline is ``nms3d`` + threshold + ``iterative_quad_interp3d`` on the Dask array, then
a per-block reduction to the spot list. Each measurement runs in a fresh subprocess, so its peak
resident memory (``ru_maxrss``, which includes the interpreter and imported libraries) is its own:

* ``numpy-slab``: one in-memory NumPy call on a smaller slab (default 64 x 512 x 512);
* ``dask-slab``: the same slab as a chunked Dask array: must give the same spots, bit for bit;
* ``dask-full``: the whole volume, threaded scheduler;
* ``scaling``: a medium volume on ``dask.distributed`` LocalClusters of 1 and 2 worker processes.

Results go to ``benchmarks/results/dask_large_volume.json`` and ``.md``. Run::

    python benchmarks/dask_large_volume.py                      # the full benchmark (a few minutes)
    python benchmarks/dask_large_volume.py --shape 64 512 512   # a quick one
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

RESULTS = HERE / "results"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Sampler:
    """Samples this process's resident memory every 50 ms (the curve's peak, beside ``ru_maxrss``)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _baseline_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_numpy_slab(args: argparse.Namespace) -> dict:
    import numpy as np
    from dask_blob_volume import keypoints, localise, render

    slab = tuple(args.slab)
    base = _baseline_rss_mib()
    t0 = time.perf_counter()
    x = render(tuple(slice(0, n) for n in slab), tuple(args.shape))[None, None]
    t1 = time.perf_counter()
    with _Sampler() as sampler:
        spots = keypoints(*localise(x, args.threshold))
    t2 = time.perf_counter()
    np.save(args.spots, spots)
    return {
        "shape": slab,
        "bytes": x.nbytes,
        "generate_s": t1 - t0,
        "localise_s": t2 - t1,
        "total_s": t2 - t0,
        "spots": len(spots),
        "baseline_rss_mib": base,
        "peak_rss_mib": _peak_rss_mib(),
        "sampled_peak_rss_mib": sampler.peak / 2**20,
    }


def _dask_run(shape: tuple[int, ...], chunks: tuple[int, ...], args: argparse.Namespace, region=None) -> dict:
    import dask
    import dask.array as da
    from dask_blob_volume import blob_volume, keypoints, localise, render

    base = _baseline_rss_mib()
    if region is None:
        x = blob_volume(shape, chunks)
    else:
        # the slab, in memory, as a chunked Dask array (for the exactness check)
        x = da.from_array(render(region, tuple(args.shape))[None, None], chunks=(1, 1, *chunks))
    with dask.config.set(scheduler="threads", num_workers=args.workers), _Sampler() as sampler:
        t0 = time.perf_counter()
        lazy = localise(x, args.threshold)
        t1 = time.perf_counter()
        spots = keypoints(*lazy)
        t2 = time.perf_counter()
    return {
        "shape": tuple(x.shape[2:]),
        "chunks": chunks,
        "bytes": int(x.nbytes),
        "blocks": int(x.npartitions),
        "graph_s": t1 - t0,
        "localise_s": t2 - t1,
        "spots": len(spots),
        "workers": args.workers,
        "baseline_rss_mib": base,
        "peak_rss_mib": _peak_rss_mib(),
        "sampled_peak_rss_mib": sampler.peak / 2**20,
        "_spots": spots,
    }


def run_dask_slab(args: argparse.Namespace) -> dict:
    import numpy as np

    region = tuple(slice(0, n) for n in args.slab)
    out = _dask_run(tuple(args.slab), tuple(min(c, n) for c, n in zip(args.chunks, args.slab)), args, region)
    ref = np.load(args.spots)
    out["identical_to_numpy"] = bool(np.array_equal(out.pop("_spots"), ref))
    return out


def run_dask_full(args: argparse.Namespace) -> dict:
    out = _dask_run(tuple(args.shape), tuple(args.chunks), args)
    out.pop("_spots")
    return out


def run_scaling(args: argparse.Namespace) -> dict:
    from dask_blob_volume import blob_volume, keypoints, localise
    from distributed import Client, LocalCluster

    shape = tuple(args.scaling_shape)
    rows = []
    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=50,
            ) as cluster,
            Client(cluster),
        ):
            x = blob_volume(shape, tuple(args.chunks))
            t0 = time.perf_counter()
            spots = keypoints(*localise(x, args.threshold))
            rows.append(
                {
                    "workers": workers,
                    "threads_per_worker": 1,
                    "localise_s": time.perf_counter() - t0,
                    "spots": len(spots),
                }
            )
    return {
        "shape": shape,
        "chunks": tuple(args.chunks),
        "runs": rows,
        "speedup": rows[0]["localise_s"] / rows[1]["localise_s"],
    }


PHASES = {
    "numpy-slab": run_numpy_slab,
    "dask-slab": run_dask_slab,
    "dask-full": run_dask_full,
    "scaling": run_scaling,
}
SIZES = (
    (64, 512, 512),
    (64, 1024, 1024),
)  # smaller volumes, same chunks: does the peak grow with the volume?


def _child(phase: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--_phase", phase, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(result: dict) -> str:
    full, slab, dslab, env = (
        result["dask-full"],
        result["numpy-slab"],
        result["dask-slab"],
        result["environment"],
    )
    gib = full["bytes"] / 2**30
    vox = lambda r: (r["bytes"] / 4) / r["localise_s"] / 1e6  # noqa: E731
    lines = [
        "# Dask: spot localisation on a large 3-D volume",
        "",
        f"Generated by `benchmarks/dask_large_volume.py` on {env['machine']} ({env['cpus']} CPUs, shared), "
        f"Python {env['python']}, NumPy {env['numpy']}, Dask {env['dask']}.",
        "",
        "Pipeline: `nms3d(x, (3, 3, 3), mask_only=True) & (x > threshold)`, then "
        "`iterative_quad_interp3d(x, strict_maxima_bonus=0, precomputed_nms_mask=mask)`, then a per-block "
        "reduction to the spot list. The volume is generated lazily, chunk by chunk (never whole in memory); "
        "its generation is included in the Dask times.",
        "",
        "| run | volume | chunks | time (s) | Mvoxel/s | peak RSS (MiB) | RSS before (MiB) | spots |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        f"| Dask, threads x{full['workers']} | {' x '.join(map(str, full['shape']))} float32 ({gib:.2f} GiB) "
        f"| {' x '.join(map(str, full['chunks']))} ({full['blocks']} blocks) | {full['localise_s']:.1f} "
        f"| {vox(full):.2f} | {full['peak_rss_mib']:.0f} | {full['baseline_rss_mib']:.0f} | {full['spots']} |",
        f"| NumPy, one in-memory call | {' x '.join(map(str, slab['shape']))} ({slab['bytes'] / 2**20:.0f} MiB) "
        f"| - | {slab['localise_s']:.1f} (+{slab['generate_s']:.1f} to generate) "
        f"| {vox(slab):.2f} ({slab['bytes'] / 4 / slab['total_s'] / 1e6:.2f} with generation) "
        f"| {slab['peak_rss_mib']:.0f} "
        f"| {slab['baseline_rss_mib']:.0f} | {slab['spots']} |",
        f"| Dask, same slab | {' x '.join(map(str, dslab['shape']))} | {' x '.join(map(str, dslab['chunks']))} "
        f"| {dslab['localise_s']:.1f} | {vox(dslab):.2f} | {dslab['peak_rss_mib']:.0f} "
        f"| {dslab['baseline_rss_mib']:.0f} | {dslab['spots']} |",
        "",
        f"* The Dask slab gives the NumPy slab's spots bit for bit: **{dslab['identical_to_numpy']}**.",
        f"* The in-memory NumPy call grew the process by {slab['peak_rss_mib'] - slab['baseline_rss_mib']:.0f} MiB "
        f"for a {slab['bytes'] / 2**20:.0f} MiB slab (input included); scaled linearly to {gib:.2f} GiB that is "
        f"about {(slab['peak_rss_mib'] - slab['baseline_rss_mib']) * full['bytes'] / slab['bytes'] / 1024:.1f} GiB. "
        f"The chunked run over the whole volume peaked at {full['peak_rss_mib']:.0f} MiB "
        f"({full['peak_rss_mib'] - full['baseline_rss_mib']:.0f} MiB above its start). It holds the blocks in "
        "flight and the front of blocks whose neighbours still need their halos (about a row of the chunk "
        "grid), so it grows far slower than the volume (table below).",
        f"* Graph construction for {full['blocks']} blocks took {full['graph_s']:.2f} s (nothing is computed then).",
        f"* Load average (1 min) on the shared machine during the full run: {full['load_average_1min'][0]:.1f} "
        f"to {full['load_average_1min'][1]:.1f}, on {env['cpus']} CPUs: times are wall-clock under that load.",
        "",
        "## Peak memory against volume size (same chunks, threaded scheduler)",
        "",
        "| volume | blocks | time (s) | peak RSS (MiB) | above start (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {' x '.join(map(str, r['shape']))} ({r['bytes'] / 2**20:.0f} MiB) | {r['blocks']} "
            f"| {r['localise_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['baseline_rss_mib']:.0f} |"
            for r in result.get("sizes", [])
        ),
    ]
    if "scaling" in result:
        sc = result["scaling"]
        lines += [
            "",
            f"## dask.distributed scaling ({' x '.join(map(str, sc['shape']))}, chunks "
            f"{' x '.join(map(str, sc['chunks']))})",
            "",
            "| workers (processes x 1 thread) | time (s) | spots |",
            "| ---: | ---: | ---: |",
            *(f"| {r['workers']} | {r['localise_s']:.1f} | {r['spots']} |" for r in sc["runs"]),
            "",
            f"Speed-up from 1 to 2 workers: {sc['speedup']:.2f}x. The machine has {env['cpus']} cores, shared "
            f"with other jobs (load average {sc['load_average_1min'][0]:.1f} to {sc['load_average_1min'][1]:.1f} "
            "during these runs), so this is a floor, not the library's scaling.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 2048, 2048))
    parser.add_argument("--chunks", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument("--slab", type=int, nargs=3, default=(64, 512, 512))
    parser.add_argument("--scaling-shape", type=int, nargs=3, default=(64, 1024, 1024))
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threshold", type=float, default=25.0)
    parser.add_argument("--spots", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "dask_large_volume"))
    parser.add_argument("--markdown-only", action="store_true", help="re-render the .md from the .json")
    args = parser.parse_args()

    if args.markdown_only:
        out = Path(args.out)
        out.with_suffix(".md").write_text(_markdown(json.loads(out.with_suffix(".json").read_text())))
        return

    if args._phase:
        load = os.getloadavg()[0]
        result = PHASES[args._phase](args)
        result["load_average_1min"] = [load, os.getloadavg()[0]]
        print(json.dumps(result, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
        return

    import dask
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "--shape",
            *map(str, args.shape),
            "--chunks",
            *map(str, args.chunks),
            "--slab",
            *map(str, args.slab),
            "--scaling-shape",
            *map(str, args.scaling_shape),
            "--workers",
            str(args.workers),
            "--threshold",
            str(args.threshold),
            "--spots",
            str(Path(tmp) / "spots.npy"),
        ]
        result = {}
        for phase in ("numpy-slab", "dask-slab", "dask-full") + (() if args.no_scaling else ("scaling",)):
            print(f"running {phase} ...", file=sys.stderr, flush=True)
            result[phase] = _child(phase, argv)
            print(json.dumps(result[phase]), file=sys.stderr, flush=True)
        result["sizes"] = []
        for size in SIZES:
            if math.prod(size) < math.prod(args.shape):
                print(f"running dask-full on {size} ...", file=sys.stderr, flush=True)
                shape_at = argv.index("--shape")
                sized = argv[: shape_at + 1] + [str(n) for n in size] + argv[shape_at + 4 :]
                result["sizes"].append(_child("dask-full", sized))
        result["sizes"].append(result["dask-full"])
    result["environment"] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dask": dask.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
