"""Find and localise the bright spots of a chunked 3-D microscopy-like volume with Dask.

The volume is synthetic: Gaussian spots (anisotropic, like a widefield PSF) on a background with
noise, generated chunk by chunk, lazily, so it never exists in memory as a whole. The pipeline is
the one of the in-memory case, on Dask arrays:

    mask = nms3d(x, (3, 3, 3), mask_only=True) & (x > threshold)
    coords, values = iterative_quad_interp3d(x, strict_maxima_bonus=0.0, precomputed_nms_mask=mask)

Both calls return lazy Dask arrays at once; :func:`keypoints` then reduces each block to the few
spots it holds, so only the spot list is ever gathered. Run it::

    python examples/dask_blob_volume.py                 # 32 x 512 x 512, threaded scheduler
    python examples/dask_blob_volume.py --distributed   # the same on a small LocalCluster

The functions here are reused by ``benchmarks/dask_large_volume.py``.
"""

from __future__ import annotations

import argparse
import math
import time

import dask
import dask.array as da
import numpy as np

import subpix_xp as S

TILE = (64, 256, 256)  # the noise is drawn per tile of this size, so any chunking gives the same volume


def _blobs(shape: tuple[int, int, int], density: float, seed: int) -> np.ndarray:
    """Spot table ``(n, 6)``: centre ``(z, y, x)``, amplitude, lateral and axial sigma."""
    rng = np.random.default_rng(seed)
    n = max(1, int(density * math.prod(shape)))
    centre = rng.uniform(0, 1, (n, 3)) * np.asarray(shape)
    amplitude = rng.uniform(40.0, 160.0, (n, 1))
    sigma_xy = rng.uniform(1.2, 2.2, (n, 1))
    sigma_z = sigma_xy * rng.uniform(1.5, 2.5, (n, 1))
    return np.concatenate([centre, amplitude, sigma_xy, sigma_z], axis=1)


def render(
    region: tuple[slice, slice, slice],
    shape: tuple[int, int, int],
    *,
    density: float = 1 / 8192,
    seed: int = 0,
    background: float = 10.0,
    noise: float = 2.0,
) -> np.ndarray:
    """The part ``region`` (slices of the whole ``shape``) of the synthetic volume, float32.

    Every spot within four sigma of the region is drawn; the noise of each tile of ``TILE`` comes
    from a generator seeded by the tile's index, so a region's values do not depend on how the
    volume is chunked.
    """
    starts = [s.start for s in region]
    stops = [s.stop for s in region]
    out = np.full([b - a for a, b in zip(starts, stops)], background, dtype=np.float32)
    table = _blobs(shape, density, seed)
    reach = 4.0 * np.maximum(table[:, 4:5], table[:, 5:6])
    near = np.all((table[:, :3] + reach > starts) & (table[:, :3] - reach < stops), axis=1)
    axes = [np.arange(a, b, dtype=np.float32) for a, b in zip(starts, stops)]
    for z, y, x, amp, s_xy, s_z in table[near]:
        lo = [max(a, int(c - 4 * s)) for a, c, s in zip(starts, (z, y, x), (s_z, s_xy, s_xy))]
        hi = [min(b, int(c + 4 * s) + 2) for b, c, s in zip(stops, (z, y, x), (s_z, s_xy, s_xy))]
        if any(b <= a for a, b in zip(lo, hi)):
            continue
        gz, gy, gx = (
            np.exp(-0.5 * ((t[l0 - a : h0 - a] - c) / s) ** 2)
            for t, l0, h0, a, c, s in zip(axes, lo, hi, starts, (z, y, x), (s_z, s_xy, s_xy))
        )
        out[
            lo[0] - starts[0] : hi[0] - starts[0],
            lo[1] - starts[1] : hi[1] - starts[1],
            lo[2] - starts[2] : hi[2] - starts[2],
        ] += amp * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    tiles = [range(a // t, (b - 1) // t + 1) for a, b, t in zip(starts, stops, TILE)]
    for index in np.ndindex(*(len(r) for r in tiles)):
        tile = [r[i] for r, i in zip(tiles, index)]
        t0 = [i * t for i, t in zip(tile, TILE)]
        lo = [max(a, b) for a, b in zip(starts, t0)]
        hi = [min(a, b + t) for a, b, t in zip(stops, t0, TILE)]
        rng = np.random.default_rng([seed, *tile])
        draw = rng.standard_normal(TILE, dtype=np.float32) * noise
        out[tuple(slice(l0 - a, h0 - a) for l0, h0, a in zip(lo, hi, starts))] += draw[
            tuple(slice(l0 - b, h0 - b) for l0, h0, b in zip(lo, hi, t0))
        ]
    return out


def blob_volume(shape: tuple[int, int, int], chunks: tuple[int, int, int] = TILE, **kwargs) -> da.Array:
    """The synthetic volume as a lazy ``(1, 1, D, H, W)`` float32 Dask array, each chunk drawn on demand."""

    def block(block_info=None):
        region = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
        return render(region, shape, **kwargs)

    volume = da.map_blocks(
        block,
        chunks=da.core.normalize_chunks(chunks, shape),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
    )
    return volume[None, None]


def localise(x, threshold: float = 25.0, n_iters: int = 5):
    """Strict 3x3x3 maxima above ``threshold``, refined: lazy ``(mask, coords, values)`` for Dask input."""
    mask = S.nms3d(x, (3, 3, 3), mask_only=True) & (x > threshold)
    coords, values = S.iterative_quad_interp3d(
        x, n_iters=n_iters, strict_maxima_bonus=0.0, precomputed_nms_mask=mask
    )
    return mask, coords, values


def _block_keypoints(
    mask: np.ndarray, coords: np.ndarray, values: np.ndarray, origin: tuple[int, ...]
) -> np.ndarray:
    where = np.nonzero(mask[0, 0])
    voxel = np.stack(where, axis=1) + np.asarray(origin)
    refined = coords[0, 0][(slice(None), *where)].T  # (depth, x, y)
    return np.concatenate([voxel.astype(np.float64), refined, values[0, 0][where][:, None]], axis=1)


def keypoints(mask, coords, values) -> np.ndarray:
    """The spots as rows ``(z, y, x, refined z, refined x, refined y, value)``, sorted by voxel.

    For Dask input each block is reduced on its own (one small array per block), so memory stays
    bounded by a few blocks whatever the volume's size.
    """
    if not isinstance(mask, da.Array):
        return _block_keypoints(np.asarray(mask), np.asarray(coords), np.asarray(values), (0, 0, 0))
    coords = coords.rechunk((*mask.chunks[:2], (3,), *mask.chunks[2:]))
    values = values.rechunk(mask.chunks)
    starts = [np.cumsum((0, *c[:-1])) for c in mask.chunks[2:]]
    parts = []
    m_blocks, c_blocks, v_blocks = mask.to_delayed(), coords.to_delayed(), values.to_delayed()
    for index in np.ndindex(*mask.numblocks):
        origin = tuple(int(s[i]) for s, i in zip(starts, index[2:]))
        c_index = (*index[:2], 0, *index[2:])
        parts.append(
            dask.delayed(_block_keypoints)(m_blocks[index], c_blocks[c_index], v_blocks[index], origin)
        )
    rows = np.concatenate(dask.compute(*parts), axis=0)
    return rows[np.lexsort(rows[:, 2::-1].T)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 512, 512))
    parser.add_argument("--chunks", type=int, nargs=3, default=(32, 256, 256))
    parser.add_argument("--distributed", action="store_true", help="run on a LocalCluster of 2 workers")
    args = parser.parse_args()
    shape, chunks = tuple(args.shape), tuple(args.chunks)

    client = None
    if args.distributed:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
    x = blob_volume(shape, chunks)
    t0 = time.perf_counter()
    mask, coords, values = localise(x)  # lazy: builds the graph, computes nothing
    t1 = time.perf_counter()
    spots = keypoints(mask, coords, values)
    t2 = time.perf_counter()
    print(
        f"volume {shape} float32 in chunks {chunks}: graph built in {t1 - t0:.3f} s, "
        f"{len(spots)} spots localised in {t2 - t1:.1f} s"
    )
    print("first spots (z, y, x -> refined z, x, y, value):")
    print(np.array2string(spots[:5], precision=2, suppress_small=True))

    # The same region in memory with NumPy gives the same spots, bit for bit.
    region = (slice(0, shape[0]), slice(0, min(shape[1], 256)), slice(0, min(shape[2], 256)))
    small = render(region, shape)[None, None]
    ref = keypoints(*localise(small))
    lazy = keypoints(*localise(da.from_array(small, chunks=(1, 1, 16, 100, 100))))
    print(f"in-memory check on {small.shape[2:]}: {len(ref)} spots, identical: {np.array_equal(ref, lazy)}")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
