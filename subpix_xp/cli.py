"""The ``subpix-xp`` command line: detect blobs in image files, or run the built-in demo.

``subpix-xp detect IMAGES...`` runs :func:`subpix_xp.detect_blobs` on PNG, JPEG, TIFF (8 or 16
bit; Pillow and, for TIFF, tifffile) or ``.npy`` files, directories and globs, on the array library
chosen with ``--backend``, and writes the keypoints as CSV, JSON Lines or JSON (``--out``; without
it, CSV on standard output) and overlays (``--plot``, matplotlib). A file that cannot be read, or on
which detection fails, is reported in one line and skipped; the batch goes on, and the exit status
is 1 if anything was skipped.

Outputs are checked before the first image is read (exit status 3 if one cannot be written). The
keypoints of each image are written as soon as it finishes, to ``OUT.partial`` next to ``OUT``,
which is renamed onto ``OUT`` when the batch completes; an ``OUT`` from an earlier run is moved to
``OUT.previous`` when the batch starts (and removed once this run's ``OUT`` is complete), so an
``OUT`` that exists is always a complete run's and an interrupted run loses no earlier result. On Ctrl-C (exit status
130) or a failed write (disk full: exit status 3) ``OUT.partial`` is kept with the rows of every
finished image and a last line saying it is incomplete.

``subpix-xp demo`` (also ``subpix-xp detect`` without files) renders a synthetic scene with known
sub-pixel blob centres, detects them on every installed backend (and with OpenCV SIFT when
``opencv-python-headless`` is installed) and prints the accuracy, pixel-locking and timing report.
Only NumPy is needed for it; matplotlib only for ``--plot``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import glob
import io
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._detect import detect_blobs
from ._extent import bucket_shape, detect_blobs_within, fits
from ._libraries import LIBRARY_NAMES, Library, LibraryUnavailable, load_library
from ._scene import Scene, locking_statistics, match_blobs, render_scene

__all__ = ["main", "read_image"]

PROG = "subpix-xp"
# Every library of subpix_xp._libraries but Dask: detect_blobs needs in-memory arrays (its top-K).
BACKENDS = tuple(name for name in LIBRARY_NAMES if name != "dask")
# The demo's default rows: the in-memory libraries people run (array_api_strict only when named).
DEMO_BACKENDS = tuple(name for name in BACKENDS if name != "array_api_strict")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pnm", ".webp", ".npy")
FIELDS = ("x", "y", "scale", "response", "bright")
CSV_COLUMNS = ("file", "rank", "x", "y", "scale", "response", "polarity")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json"}
_INSTALL_HINT = "pip install 'subpix_xp[cli]'"
_GLOB_CHARS = set("*?[")
DEBUG_ENV = "SUBPIX_XP_DEBUG"

# Exit status of the command line.
EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES_HELP = """\
exit status:
  0    every input processed, every output written
  1    some inputs skipped (unreadable, or detection failed on them: one line each on stderr)
  2    usage error (bad option or value, unknown or unavailable backend, missing reader)
  3    an output cannot be written: --out/--plot checked before the first image, or a write
       failed during the batch (disk full); finished rows stay in OUT.partial
  4    internal error (a bug: rerun with --debug and report the traceback)
  130  interrupted (Ctrl-C); finished rows stay in OUT.partial, marked incomplete"""
OUTPUT_HELP = """\
output: without --out (or with --out -) the keypoints go to standard output as CSV (header once,
one row per keypoint, a 'file' column), progress and messages to stderr. With --out OUT, rows are
written as each image finishes to OUT.partial (JSON output: as JSON Lines) and OUT.partial is
renamed onto OUT when the batch completes; an earlier OUT waits as OUT.previous until then."""

# Targets of the demo (issue 6): share of blobs found, median and 95th-percentile error in pixels.
TARGET_FOUND, TARGET_MEDIAN, TARGET_P95 = 0.95, 0.05, 0.15


class CliError(Exception):
    """A problem with the command line or the environment, reported as one line (exit status 2)."""


class OutputError(Exception):
    """An output that cannot be written, reported as one line (exit status 3)."""


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong: ``OSError`` by its ``strerror``, others by type and message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Backends


class Runner:
    """Runs :func:`detect_blobs` on one array library: NumPy ``(B, C, H, W)`` in, NumPy fields out.

    Where the library compiles (JAX: ``jax.jit``, ahead of time), each image shape, dtype and
    setting is compiled once and reused; on JAX, each *size bucket* instead: an image is padded at the bottom and right to its
    bucket (:func:`~subpix_xp._extent.bucket_shape`: each side rounded up to the next of 64, 80,
    96, 112, 128, 160, ..., four sizes per doubling) and detected with its true size passed as an
    array (:func:`~subpix_xp._extent.detect_blobs_within`), which gives the keypoints of the
    unpadded image; images too small for that (:func:`~subpix_xp._extent.fits`), or every image
    with ``buckets=False``, are compiled per exact shape. The :attr:`CACHE_SIZE` most recently
    used compiled functions are kept. :attr:`compile_seconds` is the time the last call spent
    compiling (0 when it reused a compiled function); :attr:`compilations` counts them.
    """

    CACHE_SIZE = 8

    def __init__(self, name: str, *, buckets: bool = True) -> None:
        try:
            self.library: Library = load_library(name)
        except LibraryUnavailable as exc:
            raise CliError(f"backend {name!r} is not available: {exc}") from None
        except ValueError:
            raise CliError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
        self.name = name
        self.buckets = buckets
        self.compile_seconds = 0.0
        self.compilations = 0
        self.last_bucket: tuple[int, int] | None = None
        self._compiled: OrderedDict[tuple[Any, ...], Callable[..., Any]] = OrderedDict()

    def _function(
        self, detect: Callable[..., Any], options: dict[str, Any], *args: Any
    ) -> Callable[..., Any]:
        shapes = tuple((tuple(a.shape), str(a.dtype)) for a in args)
        key = (detect.__name__, shapes, tuple(sorted(options.items())))
        self.compile_seconds = 0.0
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        fn: Callable[..., Any] = functools.partial(detect, **options)
        if self.library.compile is not None:
            start = time.perf_counter()
            fn = self.library.compile(fn, *args)
            self.compile_seconds = time.perf_counter() - start
            self.compilations += 1
        self._compiled[key] = fn
        if len(self._compiled) > self.CACHE_SIZE:
            self._compiled.popitem(last=False)
        return fn

    def bucket(self, shape: tuple[int, int], options: dict[str, Any]) -> tuple[int, int] | None:
        """The padded shape an image of ``shape`` is detected in, or ``None`` (its own shape)."""
        # The extent is traced, so a library that compiles per shape (XLA) compiles once per
        # bucket; one that compiles for dynamic shapes, or has no compiler, gains nothing.
        if not self.library.compiles_per_shape or not self.buckets:
            return None
        padded = bucket_shape(*shape)
        pyramid = {
            k: options[k] for k in ("n_levels", "init_sigma", "min_size", "double_image") if k in options
        }
        return padded if fits(shape, padded, **pyramid) else None

    def __call__(self, image: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        """Detect in ``image`` ``(B, C, H, W)``; every field comes back as NumPy ``(B, K)``."""
        h, w = image.shape[-2:]
        padded = self.last_bucket = self.bucket((h, w), options)
        if padded is None:
            x = self.library.asarray(image)
            blobs = self._function(detect_blobs, options, x)(x)
        else:
            widths = ((0, 0),) * (image.ndim - 2) + ((0, padded[0] - h), (0, padded[1] - w))
            x = self.library.asarray(np.pad(image, widths, mode="edge"))
            extent = self.library.asarray(np.asarray([h, w], dtype=np.int32))
            blobs = self._function(detect_blobs_within, options, x, extent)(x, extent)
        return {name: self.library.to_numpy(getattr(blobs, name)) for name in (*FIELDS, "valid")}

    @property
    def label(self) -> str:
        version = _version(self.name.split("_")[0] if self.name.startswith("torch") else self.name)
        return f"{self.name} {version}" if version else self.name


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception:
        return ""


# ---------------------------------------------------------------------------------------------
# Reading images


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as float32 ``(H, W)`` or ``(H, W, C)``, integers scaled to ``[0, 1]``.

    PNG, JPEG, BMP, PNM and WebP through Pillow (8- and 16-bit grey PNGs keep their depth), TIFF
    through tifffile when it is installed (any depth, float too) else Pillow, ``.npy`` through
    NumPy. An alpha channel is dropped. Raises ``OSError``/``ValueError`` with the reason when the
    file cannot be read, and :class:`CliError` when the reader is not installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    elif suffix in (".tif", ".tiff") and _has("tifffile"):
        import tifffile

        array = tifffile.imread(path)
    else:
        array = _read_with_pillow(path)
    return _normalise(np.asarray(array), path)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _read_with_pillow(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise CliError(f"reading {path.suffix or 'image'} files needs Pillow: {_INSTALL_HINT}") from None
    with Image.open(path) as im:
        im.load()
        if im.mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA"):
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
        return np.array(im)


def _normalise(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
        array = array[..., :-1]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        hint = " (a multi-page file or a volume?)" if array.ndim >= 3 else ""
        raise ValueError(
            f"expected a 2-D image, or (H, W, 3) colour; got an array of shape {array.shape}{hint}"
        )
    if min(array.shape[:2]) < 1:
        raise ValueError(f"empty image of shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        top = float(info.max)
        if array.dtype.itemsize >= 4 and array.size and int(array.max()) <= 65535:
            top = 65535.0  # Pillow's mode "I": 16-bit data in 32-bit integers
        return (array.astype(np.float64) / top).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise ValueError(f"unsupported pixel type {array.dtype}")


# ---------------------------------------------------------------------------------------------
# Inputs


def expand_inputs(specs: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by ``specs`` (files, directories, globs) and ``(spec, reason)`` for those naming none.

    A directory contributes its image files (by suffix, sorted, not recursive); a glob (``*``,
    ``?``, ``[``, and ``**`` for recursion) the files it matches. A plain path is taken as given,
    even with an unknown suffix, so that reading it reports what is wrong with it.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            files.append(path)

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append((spec, "directory holds no image files (" + ", ".join(IMAGE_SUFFIXES) + ")"))
            for p in found:
                add(p)
        elif not path.exists() and _GLOB_CHARS & set(spec):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                problems.append((spec, "no file matches this pattern"))
            for p in found:
                add(p)
        else:
            add(path)
    return files, problems


def _progress(items: Sequence[Path], enabled: bool) -> tuple[Iterable[Path], Callable[[str], None]]:
    """A progress bar over ``items`` on stderr (tqdm when installed) and a matching ``print``."""

    say = _say
    if not enabled or len(items) < 2:
        return items, say
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress(items), say
    bar = tqdm(items, desc=PROG, unit="file", file=sys.stderr, disable=None, dynamic_ncols=True)
    return bar, lambda message: tqdm.write(message, file=sys.stderr)


def _plain_progress(items: Sequence[Path]) -> Iterator[Path]:
    interactive = sys.stderr.isatty()
    for i, item in enumerate(items, 1):
        if interactive:
            print(f"\r{PROG}: {i}/{len(items)} files", end="", file=sys.stderr, flush=True)
        yield item
    if interactive:
        print(file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Checking outputs before the batch


def _ensure_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents) or raise :class:`OutputError` saying why it cannot be."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{what}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{what}: cannot create the folder {folder} ({_reason(exc)})") from None


def _check_folder_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and write a scratch file in it (``os.access`` says yes to root)."""
    _ensure_folder(folder, what)
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".subpix-xp-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"{what}: cannot write in the folder {folder} ({_reason(exc)})") from None


def _check_file_target(path: Path, what: str) -> None:
    """``path`` can be (re)written as a file: not a folder, in a folder that can be written."""
    if path.is_dir():
        raise OutputError(f"{what}: {path} is a folder; give a file name")
    _check_folder_writable(path.parent, what)


def _plot_target(plot: str, n_files: int) -> tuple[Path, bool]:
    """Where ``--plot`` writes, checked: one PNG (single input, ``.png`` suffix) or a folder."""
    path = Path(plot)
    if path.suffix.lower() == ".png":
        if n_files > 1:
            raise CliError("--plot names one PNG file but there are several images; give a folder instead")
        _check_file_target(path, f"--plot {plot}")
        return path, False
    if path.exists() and not path.is_dir():
        raise OutputError(f"--plot {plot}: is a file, not a folder (a single overlay needs a .png name)")
    _check_folder_writable(path, f"--plot {plot}")
    return path, True


# ---------------------------------------------------------------------------------------------
# Writing keypoints as each image finishes


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C until the block is done, so that no file is left with half a record."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if caught and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:
            raise KeyboardInterrupt


class KeypointWriter:
    """Writes the keypoints of each image as it finishes, so that finished work is never lost.

    To a file ``OUT``: records go to ``OUT.partial`` (in ``OUT``'s folder; JSON output as JSON
    Lines there), one unbuffered write per image, and :meth:`finish` renames it onto ``OUT`` (JSON:
    writes the document to a scratch file, then renames that). An earlier ``OUT`` is moved to
    ``OUT.previous`` by :meth:`open` and removed by :meth:`finish`. :meth:`abandon` (Ctrl-C, a failed write) keeps ``OUT.partial`` with a last line
    saying it is incomplete. A failed write is cut back to the last complete image. To standard
    output (``"-"``), a device or a FIFO, records are written directly (JSON: at the end).
    """

    def __init__(self, out: str, fmt: str, meta: dict[str, Any]) -> None:
        self.out, self.fmt, self.meta = out, fmt, meta
        self.target = None if out == "-" else Path(out)
        # Standard output, a device or a FIFO is written directly: there is nothing to rename.
        self.direct = self.target is None or (self.target.exists() and not self.target.is_file())
        self.partial = self.previous = None
        if self.target is not None and not self.direct:
            self.partial = self.target.with_name(self.target.name + ".partial")
            self.previous = self.target.with_name(self.target.name + ".previous")
        self.kept_previous = False  # an earlier run's OUT was moved to OUT.previous
        self.images: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.done = 0
        self.finished = False
        self._file: io.FileIO | None = None
        self._size = 0  # bytes of complete records in the file

    @property
    def where(self) -> str:
        return "standard output" if self.target is None else str(self.partial or self.target)

    def open(self) -> None:
        """Create the output (before the batch); raises :class:`OutputError` if it cannot be written."""
        if self.target is None:
            self._write_header()
            return
        what = f"--out {self.out}"
        if self.target.is_dir():
            raise OutputError(
                f"{what}: is a folder; give a file name such as {self.target / 'keypoints.csv'}"
            )
        _ensure_folder(self.target.parent, what)
        path = self.partial or self.target
        try:
            self._file = io.FileIO(path, "w")
        except OSError as exc:
            raise OutputError(f"{what}: cannot write {path} ({_reason(exc)})") from None
        try:
            self._write_header()
            if self.previous is not None and self.target.exists():
                # An earlier run's output must not look like this run's, nor be lost if this one
                # does not complete: it waits as OUT.previous until this run's OUT replaces it.
                os.replace(self.target, self.previous)
                self.kept_previous = True
        except (OSError, OutputError) as exc:
            self._file.close()
            if self.partial is not None:
                self.partial.unlink(missing_ok=True)
            raise OutputError(f"{what}: cannot write {path} ({_reason(exc.__cause__ or exc)})") from None

    def _write_header(self) -> None:
        if self.fmt == "csv":
            self._write(",".join(CSV_COLUMNS) + "\n")
        elif self.fmt == "jsonl" or self._file is not None:
            self._write(json.dumps(self.meta) + "\n")

    def add(self, item: dict[str, Any]) -> None:
        """Write the keypoints of one finished image."""
        if self.fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for rank, row in enumerate(item["keypoints"]):
                writer.writerow(
                    [item["file"], rank, row["x"], row["y"], row["scale"], row["response"], row["polarity"]]
                )
            self._write(buffer.getvalue())
        else:
            self._write_json_line(item)
        if self.fmt == "json":
            self.images.append(item)
        self.done += 1

    def skip(self, file: str, reason: str) -> None:
        """Record a skipped input (JSON outputs list them; CSV has only the stderr line)."""
        self.skipped.append({"file": file, "error": reason})
        if self.fmt != "csv":
            self._write_json_line(self.skipped[-1])

    def _write_json_line(self, record: dict[str, Any]) -> None:
        if self.fmt == "jsonl" or self._file is not None:  # JSON to standard output: at the end
            self._write(json.dumps(record) + "\n")

    def _write(self, text: str) -> None:
        with _sigint_held():
            try:
                self._emit(text)
            except OSError as exc:
                raise OutputError(f"cannot write {self.where} ({_reason(exc)})") from exc

    def _emit(self, text: str) -> None:
        if self._file is None:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except OSError:
                _silence_stdout()
                raise
            return
        raw = text.encode("utf-8")
        data = memoryview(raw)
        try:
            while data:
                data = data[self._file.write(data) or 0 :]
        except OSError:
            if not self.direct:  # cut back to the last complete record
                with contextlib.suppress(OSError):
                    self._file.truncate(self._size)
                    self._file.seek(self._size)
            raise
        self._size += len(raw)

    def _document(self, **extra: Any) -> str:
        return (
            json.dumps({**self.meta, "images": self.images, "skipped": self.skipped, **extra}, indent=1)
            + "\n"
        )

    def finish(self) -> None:
        """Complete the output: rename ``OUT.partial`` onto ``OUT`` (JSON: write the document)."""
        if self.fmt == "json" and self._file is None:
            self._write(self._document())
        if self._file is not None:
            with _sigint_held():
                try:
                    self._complete()
                except OSError as exc:
                    raise OutputError(f"cannot write {self.out} ({_reason(exc)})") from None
        self.finished = True

    def _complete(self) -> None:
        assert self._file is not None
        if self.direct:
            self._file.close()
            return
        assert self.partial is not None and self.target is not None
        os.fsync(self._file.fileno())
        self._file.close()
        if self.fmt != "json":
            os.replace(self.partial, self.target)
            self._drop_previous()
            return
        fd, scratch = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self._document())
                f.flush()
                os.fsync(f.fileno())
            os.replace(scratch, self.target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            raise
        self.partial.unlink()
        self._drop_previous()

    def _drop_previous(self) -> None:
        """This run's OUT is complete: an earlier run's, kept aside as OUT.previous, is superseded."""
        if self.previous is not None:
            self.previous.unlink(missing_ok=True)

    def abandon(self, reason: str, total: int) -> str:
        """Stop: keep what was written, marked incomplete; returns where the finished rows are."""
        if self.finished:
            return str(self.target) if self.target is not None else "standard output"
        note = f"incomplete: {reason}; keypoints of {self.done} of {total} image(s)"
        with _sigint_held(), contextlib.suppress(OSError, OutputError, ValueError):  # ValueError: closed
            if self.fmt == "csv":
                self._emit(f"# {note}\n")
            elif self.fmt == "jsonl" or self._file is not None:
                self._emit(
                    json.dumps({"incomplete": note, "images_done": self.done, "images_total": total}) + "\n"
                )
            else:  # JSON to standard output: the document so far, marked
                self._emit(self._document(incomplete=note))
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        return self.where


def _silence_stdout() -> None:
    """Point standard output at /dev/null once it fails (a closed pipe), so exiting prints nothing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# ---------------------------------------------------------------------------------------------
# detect


# detect_blobs' settings that reproduce kornia's ScaleSpaceDetector (docs/detector.md).
KORNIA_OPTIONS: dict[str, Any] = {
    "threshold": None,
    "edge_ratio": None,
    "max_sensitivity": None,
    "duplicate_radius": None,
    "spatial_refit": False,
    "keep_unrefined": True,
    "max_candidates": 0,
}


def _detect_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"num_features": args.num_features}
    if args.kornia:
        options.update(KORNIA_OPTIONS)
    for name in ("threshold", "edge_ratio", "max_sensitivity"):
        value = getattr(args, name)
        if value is not None:
            options[name] = None if value == "none" else value
    if args.keep_duplicates:
        options["duplicate_radius"] = None
    if args.no_refit:
        options["spatial_refit"] = False
    if args.single_scale_start:
        options["double_image"] = False
    return options


def _rows(result: dict[str, np.ndarray], index: int = 0) -> list[dict[str, Any]]:
    valid = result["valid"][index]
    rows = []
    for k in np.flatnonzero(valid):
        rows.append(
            {
                "x": round(float(result["x"][index, k]), 4),
                "y": round(float(result["y"][index, k]), 4),
                "scale": round(float(result["scale"][index, k]), 4),
                "response": float(f"{float(result['response'][index, k]):.6g}"),
                "polarity": "bright" if bool(result["bright"][index, k]) else "dark",
            }
        )
    return rows


def _output_format(out: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if out == "-":
        return "csv"
    suffix = Path(out).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    raise CliError(
        f"cannot tell the format of --out {out!r} from its suffix; use .csv, .jsonl or .json, or --format"
    )


def as_batch(image: np.ndarray, dtype: str) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, 3)`` image from :func:`read_image` as ``(1, 1, H, W)`` grey in ``dtype``.

    Colour channels are averaged (as :func:`detect_blobs` does with channels), in float64.

    >>> as_batch(np.ones((2, 3, 3), dtype=np.float32), "float32").shape
    (1, 1, 2, 3)
    """
    grey = image if image.ndim == 2 else image.mean(axis=-1, dtype=np.float64)
    return np.ascontiguousarray(grey, dtype=dtype)[None, None]


def _unique(folder: Path, source: Path, used: set[str]) -> Path:
    """``folder / STEM_blobs.png``, made unique (``STEM_EXT_blobs.png``, then a counter) within a batch."""
    candidates = [f"{source.stem}_blobs.png", f"{source.stem}_{source.suffix.lstrip('.').lower()}_blobs.png"]
    candidates += [f"{source.stem}_{i}_blobs.png" for i in range(2, 10_000)]
    name = next(c for c in candidates if c not in used)
    used.add(name)
    return folder / name


def _set_threads(threads: int | None) -> None:
    """Set PyTorch's and OpenCV's (the NumPy blur's) CPU thread counts, when asked, where installed."""
    if threads is None:
        return
    with contextlib.suppress(ImportError, OSError):
        import cv2

        cv2.setNumThreads(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _torch_threads() -> str:
    try:
        import torch
    except ImportError:
        return ""
    return f"; PyTorch CPU threads: {torch.get_num_threads()}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _debugging(args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _check_inputs_not_outputs(files: Sequence[Path], out: str) -> None:
    if out == "-":
        return
    target = Path(out).resolve()
    if any(f.resolve() == target for f in files):
        raise CliError(f"--out {out} is one of the input images; choose another file")


def cmd_detect(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    if not args.images:
        if args.out or args.format:
            raise CliError("detect without image files runs the demo; --out/--format need image files")
        args.backends = args.backend
        args.no_sift = False
        return cmd_demo(args)
    if args.plot:
        _require_matplotlib()
    out = args.out or "-"
    if out != "-" and Path(out).is_dir():
        raise OutputError(f"--out {out}: is a folder; give a file name such as {Path(out) / 'keypoints.csv'}")
    fmt = _output_format(out, args.format)
    files, missing = expand_inputs(args.images)
    _check_inputs_not_outputs(files, out)
    runner = Runner(args.backend, buckets=not args.no_buckets)
    if args.jax_cache:
        _use_jax_cache(args.backend, args.jax_cache)
    if args.dtype == "float64" and not runner.library.float64:
        raise CliError(
            f"--dtype float64: backend {args.backend!r} computes no float64 here"
            + (" (set JAX_ENABLE_X64=1)" if args.backend == "jax" else "")
        )
    options = _detect_options(args)
    # Every output is checked (and created) before the first image is read.
    plot = _plot_target(args.plot, len(files)) if args.plot else None
    writer = KeypointWriter(
        out, fmt, {"backend": runner.label, "num_features": args.num_features, "options": options}
    )
    writer.open()
    try:
        skipped = _run_batch(args, files, missing, runner, options, writer, plot)
        writer.finish()
    except KeyboardInterrupt:
        where = writer.abandon("interrupted", len(files))
        if writer.finished:  # Ctrl-C while the completed output was being renamed
            _say(f"{PROG}: interrupted; all {len(files)} image(s) were done and written to {where}")
            return EXIT_INTERRUPTED
        _say(f"{PROG}: interrupted after {writer.done} of {len(files)} image(s); {_kept(writer, where)}")
        return EXIT_INTERRUPTED
    except OutputError as exc:
        where = writer.abandon(f"write failed ({exc})", len(files))
        _say(
            f"{PROG}: error: {exc}; stopped after {writer.done} of {len(files)} image(s)"
            + ("" if writer.target is None else f"; {_kept(writer, where)}")
        )
        return EXIT_OUTPUT
    except BaseException:
        writer.abandon("stopped by an error", len(files))
        raise
    _say(
        f"{PROG}: {writer.done} image(s) processed, {skipped} skipped"
        + (f"; keypoints written to {args.out}" if args.out and args.out != "-" else "")
    )
    return EXIT_SKIPPED if skipped else EXIT_OK


def _use_jax_cache(backend: str, folder: str) -> None:
    """Keep JAX's compiled programs in ``folder`` (JAX's persistent compilation cache), across runs."""
    if backend != "jax":
        raise CliError(f"--jax-cache: only --backend jax compiles; got --backend {backend}")
    _check_folder_writable(Path(folder), "--jax-cache")
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # few programs: keep each


def _kept(writer: KeypointWriter, where: str) -> str:
    """Where the finished images' keypoints are, after :meth:`KeypointWriter.abandon`."""
    if writer.partial is None:
        return f"their keypoints were written to {where}"
    earlier = f" (the earlier one is kept as {writer.previous})" if writer.kept_previous else ""
    return f"their keypoints are in {where}; {writer.out} was not written{earlier}"


def _run_batch(
    args: argparse.Namespace,
    files: Sequence[Path],
    missing: Sequence[tuple[str, str]],
    runner: Runner,
    options: dict[str, Any],
    writer: KeypointWriter,
    plot: tuple[Path, bool] | None,
) -> int:
    """Detect in every file, writing as each finishes; returns how many inputs were skipped."""
    items, say = _progress(files, not args.quiet)
    debug = _debugging(args)

    def skip(file: str, reason: str) -> None:
        say(f"{PROG}: skipped {file}: {reason}")
        writer.skip(file, reason)

    for spec, reason in missing:
        skip(spec, reason)
    used_names: set[str] = set()
    for path in items:
        try:
            image = read_image(path)
        except CliError:
            raise
        except Exception as exc:
            skip(str(path), f"cannot read the image ({_reason(exc)})")
            continue
        start = time.perf_counter()
        try:
            result = runner(as_batch(image, args.dtype), **options)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            skip(str(path), f"detection failed ({_reason(exc)})")
            continue
        elapsed = time.perf_counter() - start
        rows = _rows(result)
        writer.add(
            {
                "file": str(path),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "count": len(rows),
                "seconds": round(elapsed, 4),
                "keypoints": rows,
            }
        )
        if not args.quiet:
            compiled = f", {runner.compile_seconds:.1f} s of it compiling" if runner.compile_seconds else ""
            if compiled and runner.last_bucket is not None:
                compiled += f" for the {runner.last_bucket[1]}x{runner.last_bucket[0]} bucket"
            say(
                f"{path}: {len(rows)} blobs ({image.shape[1]}x{image.shape[0]}, {elapsed * 1e3:.0f} ms{compiled})"
            )
        if plot is not None:
            target = _unique(plot[0], path, used_names) if plot[1] else plot[0]
            plot_overlay(
                image if image.ndim == 2 else image.mean(axis=-1),
                result,
                target,
                title=f"{path.name}: {len(rows)} blobs (orange: bright, cyan: dark)",
            )
    return len(writer.skipped)


# ---------------------------------------------------------------------------------------------
# Plots


def _require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError(f"--plot needs matplotlib: {_INSTALL_HINT}") from None
    return plt


def _draw_blobs(ax: Any, result: dict[str, np.ndarray], linewidth: float = 0.8) -> None:
    from matplotlib.patches import Circle

    valid = result["valid"][0]
    for k in np.flatnonzero(valid):
        colour = "#ff7f0e" if result["bright"][0, k] else "#17becf"
        radius = math.sqrt(2.0) * float(result["scale"][0, k])  # the blob's radius (its DoG zero)
        ax.add_patch(
            Circle((result["x"][0, k], result["y"][0, k]), radius, fill=False, color=colour, lw=linewidth)
        )


def plot_overlay(
    image: np.ndarray,
    result: dict[str, np.ndarray],
    path: Path,
    *,
    title: str = "",
    scene: Scene | None = None,
) -> None:
    """Write a PNG of ``image`` with a circle of radius ``sqrt(2) * scale`` per keypoint.

    Bright blobs are orange, dark ones cyan. With a ``scene``, true centres are marked and a second
    panel zooms on one blob, pixel by pixel, to show the sub-pixel placement.
    """
    plt = _require_matplotlib()
    h, w = image.shape
    panels = 2 if scene is not None else 1
    fig_w = 12.0 if panels == 2 else min(12.0, max(5.0, w / 80.0))
    ratios = [w / h, 1.0] if panels == 2 else [1.0]
    fig_h = fig_w / sum(ratios) + 0.6 if panels == 2 else fig_w * h / w + 0.6
    fig, axes = plt.subplots(
        1, panels, figsize=(fig_w, fig_h), squeeze=False, gridspec_kw={"width_ratios": ratios}
    )
    ax = axes[0, 0]
    ax.imshow(image, cmap="gray", interpolation="nearest")
    _draw_blobs(ax, result)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    if scene is not None:
        ax.plot(scene.x, scene.y, "+", color="#d62728", ms=3, mew=0.6)
        # Zoom on the blob nearest the image centre among the mid-sized ones.
        mid = (scene.sigma > 1.8) & (scene.sigma < 2.8)
        pick = np.flatnonzero(mid) if mid.any() else np.arange(scene.x.size)
        i = pick[np.argmin(np.hypot(scene.x[pick] - w / 2, scene.y[pick] - h / 2))]
        cx, cy, half = float(np.round(scene.x[i])), float(np.round(scene.y[i])), 7.5
        zoom = axes[0, 1]
        zoom.imshow(image, cmap="gray", interpolation="nearest")
        _draw_blobs(zoom, result, linewidth=1.5)
        keep = result["valid"][0]
        zoom.plot(scene.x, scene.y, "+", color="#d62728", ms=22, mew=1.5, label="true centre")
        zoom.plot(
            result["x"][0][keep], result["y"][0][keep], "x", color="#2ca02c", ms=16, mew=1.5, label="detected"
        )
        zoom.set_xlim(cx - half, cx + half)
        zoom.set_ylim(cy + half, cy - half)
        zoom.set_xticks(np.arange(cx - half, cx + half + 1, 1.0), minor=True)
        zoom.set_yticks(np.arange(cy - half, cy + half + 1, 1.0), minor=True)
        zoom.grid(which="minor", color="white", alpha=0.15, lw=0.5)
        zoom.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        err = math.hypot(
            *(np.array([result["x"][0], result["y"][0]])[:, keep].T - [scene.x[i], scene.y[i]])[
                np.argmin(np.hypot(result["x"][0][keep] - scene.x[i], result["y"][0][keep] - scene.y[i]))
            ]
        )
        zoom.set_title(
            f"one blob, pixel by pixel (sigma {scene.sigma[i]:.2f} px, error {err:.3f} px)", fontsize=9
        )
        zoom.legend(loc="lower right", fontsize=8, framealpha=0.8)
        ax.add_patch(_rectangle(cx - half, cy - half, 2 * half, 2 * half))
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as PNG to a scratch name next to ``path``, then rename it (no half-written plots)."""
    plt = _require_matplotlib()
    scratch = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(scratch, dpi=110, format="png")
        os.replace(scratch, path)
    except OSError as exc:
        raise OutputError(f"cannot write the plot {path} ({_reason(exc)})") from None
    finally:
        plt.close(fig)
        with contextlib.suppress(OSError):
            scratch.unlink(missing_ok=True)


def _rectangle(x: float, y: float, w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, color="#ffdd57", lw=1.2)


def plot_errors(rows: list[dict[str, Any]], path: Path) -> None:
    """Write a PNG with the localisation-error histogram and the fractional-part histogram per row."""
    plt = _require_matplotlib()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15.0, 3.9))
    top = max((float(np.max(r["errors"])) for r in rows if len(r["errors"])), default=0.2)
    bins = np.linspace(0.0, max(top, TARGET_P95) * 1.05, 40)
    for r in rows:
        if len(r["errors"]):
            left.hist(r["errors"], bins=bins, histtype="step", lw=1.4, label=r["name"])
    for value, style in ((TARGET_MEDIAN, ":"), (TARGET_P95, "--")):
        left.axvline(value, color="gray", ls=style, lw=1)
    left.set_xlabel("localisation error (px)")
    left.set_ylabel("blobs")
    left.set_title("error vs truth (dotted: median target, dashed: p95 target)", fontsize=9)
    left.legend(fontsize=7)
    centres = np.arange(10) / 10 + 0.05
    for r in rows:
        middle.plot(centres - 0.5, r["phase_bias"], "o-", ms=3, lw=1.2, label=r["name"])
    middle.axhline(0.0, color="gray", lw=1)
    middle.set_xlabel("true sub-pixel phase (px from the nearest pixel centre)")
    middle.set_ylabel("mean signed error (px)")
    middle.set_title("S-curve (pixel locking: error of the opposite sign to the phase)", fontsize=9)
    middle.legend(fontsize=7)
    for r in rows:
        right.plot(centres, r["histogram"], "o-", ms=3, lw=1.2, label=r["name"])
    if rows:
        right.axhline(float(np.sum(rows[0]["histogram"])) / 10, color="gray", ls="--", lw=1, label="uniform")
    right.set_xlabel("fractional part of detected x and y")
    right.set_ylabel("count per bin")
    right.set_ylim(bottom=0)
    right.set_title("pixel locking (a pile-up at 0 and 1 means locking)", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# demo


def _available_backends(requested: str | None) -> tuple[list[str], list[str]]:
    """The demo's backends: those requested (all must load), or every installed one."""
    names = [n.strip() for n in requested.split(",") if n.strip()] if requested else list(DEMO_BACKENDS)
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise CliError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    ok, missing = [], []
    for name in names:
        try:
            load_library(name)
            ok.append(name)
        except LibraryUnavailable as exc:
            if requested:
                raise CliError(f"backend {name!r} is not available: {exc}") from None
            missing.append(name)
    return ok, missing


def _evaluate(
    scene: Scene,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    strength: np.ndarray,
    scale: np.ndarray,
    times: list[float],
    first: float,
    note: str = "",
) -> dict[str, Any]:
    match = match_blobs(scene, x, y, strength, scale)
    detections = int(np.isfinite(np.asarray(x, dtype=np.float64)).sum())
    lock = locking_statistics(scene, match)
    errors = match.error
    ratio = match.scale[match.found] / scene.sigma[match.found]
    return {
        "name": name,
        "k": detections,
        "found": int(match.found.sum()),
        "blobs": int(scene.x.size),
        "extra": match.extra,
        "median": float(np.median(errors)) if errors.size else math.nan,
        "p95": float(np.quantile(errors, 0.95)) if errors.size else math.nan,
        "max": float(np.max(errors)) if errors.size else math.nan,
        "scale_ratio": float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else math.nan,
        "s_curve": lock.s_curve,
        "s_curve_se": lock.s_curve_se,
        "ks_p": lock.ks_p,
        "histogram": [int(v) for v in lock.histogram],
        "phase_bias": [round(float(v), 5) for v in lock.phase_bias],
        "seconds": float(np.median(times)),
        "first_seconds": first,
        "errors": errors,
        "per_blob": np.hypot(match.dx, match.dy),  # NaN where missed
        "note": note,
    }


def _time_runs(run: Callable[[], Any], repeat: int) -> tuple[Any, list[float], float]:
    start = time.perf_counter()
    result = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(max(repeat, 0)):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, times or [first], first


def _sift_row(scene: Scene, k: int, repeat: int) -> dict[str, Any] | None:
    try:
        import cv2
    except ImportError:
        return None
    sift = cv2.SIFT_create()  # type: ignore[attr-defined]  # (absent from OpenCV's stubs) OpenCV's defaults, every keypoint (nfeatures=0); the top k are taken below
    keypoints, times, first = _time_runs(lambda: sift.detect(scene.image, None), repeat)
    # SIFT repeats a keypoint once per dominant orientation: keep one per location, strongest first.
    unique: dict[tuple[float, float], Any] = {}
    for kp in sorted(keypoints, key=lambda kp: -kp.response):
        unique.setdefault((round(kp.pt[0], 4), round(kp.pt[1], 4)), kp)
    kept = list(unique.values())[:k]
    # OpenCV doubles the image with half-pixel centres and halves the coordinates afterwards, so its
    # keypoints sit 0.25 px right of and below the pixel-index convention used here.
    x = np.array([kp.pt[0] for kp in kept]) - 0.25
    y = np.array([kp.pt[1] for kp in kept]) - 0.25
    strength = np.array([kp.response for kp in kept])
    scale = np.array([kp.size for kp in kept]) / 2.0
    return _evaluate(
        scene,
        f"OpenCV SIFT {cv2.__version__}",
        x,
        y,
        strength,
        scale,
        times,
        first,
        note="default settings, one keypoint per location, centres shifted by -0.25 px "
        "(OpenCV's doubled-image convention)",
    )


def run_demo(
    backends: Sequence[str],
    *,
    seed: int = 0,
    noise: float = 0.005,
    num_features: int | None = None,
    repeat: int = 2,
    sift: bool = True,
    kornia_row: bool = True,
    dtype: str = "float32",
    options: dict[str, Any] | None = None,
) -> tuple[Scene, list[dict[str, Any]], dict[str, Any]]:
    """Render the scene and evaluate every detector on it; returns ``(scene, rows, first_result)``."""
    scene = render_scene(seed=seed, noise=noise)
    k = num_features or scene.x.size
    batch = scene.as_float().astype(dtype)[None, None]
    options = dict(options or {})
    rows: list[dict[str, Any]] = []
    shown: dict[str, Any] = {}
    plans = [(name, options, "") for name in backends]
    if kornia_row and "numpy" in backends and options != {**options, **KORNIA_OPTIONS}:
        plans.append(("numpy", {**options, **KORNIA_OPTIONS}, "kornia-compatible settings (--kornia)"))
    for name, opts, note in plans:
        runner = Runner(name, buckets=False)  # one image: nothing to share

        def detect(runner: Runner = runner, opts: dict[str, Any] = opts) -> dict[str, np.ndarray]:
            return runner(batch, num_features=k, **opts)

        result, times, first = _time_runs(detect, repeat)
        label = f"subpix-xp {runner.label}" + (" (kornia settings)" if note else "")
        rows.append(
            _evaluate(
                scene,
                label,
                result["x"][0],
                result["y"][0],
                result["response"][0],
                result["scale"][0],
                times,
                first,
                note,
            )
        )
        shown.setdefault("result", result)
    if sift:
        row = _sift_row(scene, k, repeat)
        if row is not None:
            rows.append(row)
    return scene, rows, shown.get("result", {})


def format_report(
    scene: Scene, rows: list[dict[str, Any]], missing: Sequence[str] = (), timing: str = ""
) -> str:
    """The demo report as text."""
    h, w = scene.image.shape
    crlb = float(np.median(scene.crlb()))
    n = scene.x.size
    lines = [
        f"{PROG} demo: {w}x{h} synthetic scene, {n} Gaussian blobs at random sub-pixel centres",
        f"  sigma {scene.sigma.min():.1f}-{scene.sigma.max():.1f} px, contrast {np.abs(scene.amplitude).min():.2f}-"
        f"{np.abs(scene.amplitude).max():.2f}, bright and dark; noise std {scene.noise:g} + 8-bit quantisation "
        f"(seed {scene.seed})",
        f"  noise floor (Cramer-Rao bound per axis, median over blobs): {crlb:.3f} px",
        f"  each detector keeps its {rows[0]['k'] if rows else n} strongest detections; found: one lies within 1.5 px "
        "(the strongest counts); extra: near no blob",
        *([f"  {timing}"] if timing else []),
        "",
        f"{'detector':<40} {'found':>8} {'extra':>6} {'median':>8} {'p95':>7} {'max':>7} {'sigma':>6} "
        f"{'S-curve':>14} {'KS p':>5} {'time':>9}",
        f"{'':<40} {'':>8} {'':>6} {'px':>8} {'px':>7} {'px':>7} {'ratio':>6} {'px':>14} {'':>5} {'':>9}",
    ]
    for r in rows:
        first = f" (first {r['first_seconds']:.1f} s)" if r["first_seconds"] > 3 * r["seconds"] + 0.5 else ""
        lines.append(
            f"{r['name']:<40} {r['found']:>4}/{r['blobs']:<3} {r['extra']:>6} {r['median']:>8.3f} {r['p95']:>7.3f} "
            f"{r['max']:>7.3f} {r['scale_ratio']:>6.2f} {r['s_curve']:>+7.3f}±{r['s_curve_se']:.3f} "
            f"{r['ks_p']:>5.2f} {r['seconds']:>7.2f} s{first}"
        )
    lines += [
        "",
        "pixel locking: fractional parts of the detected x and y of found blobs, 10 bins over [0, 1)",
        "  (the true phases are stratified, so a flat row means no locking; locking piles counts into the"
        " first and last bins)",
    ]
    truth = np.concatenate([scene.x, scene.y])
    truth_hist = np.histogram(truth - np.floor(truth), bins=10, range=(0.0, 1.0))[0]
    lines.append(f"  {'truth (all blobs)':<38} " + " ".join(f"{v:>3}" for v in truth_hist))
    for r in rows:
        lines.append(f"  {r['name']:<38} " + " ".join(f"{v:>3}" for v in r["histogram"]))
    lines += [
        "",
        "S-curve: amplitude A of error ~ A sin(2 pi phase) over the true sub-pixel phase (locking: A < 0);",
        "KS p: Kolmogorov-Smirnov test of the fractional parts against uniform (small p: locking).",
        "sigma ratio: detected scale / true sigma (subpix-xp reports the DoG level's sigma, as kornia).",
        f"targets: >= {TARGET_FOUND:.0%} found, median <= {TARGET_MEDIAN} px, p95 <= {TARGET_P95} px.",
    ]
    for r in rows:
        if r["note"]:
            lines.append(f"{r['name']}: {r['note']}.")
    peers = [r for r in rows if not r["name"].startswith("subpix-xp")]
    if rows and peers and rows[0]["name"].startswith("subpix-xp"):
        ours = rows[0]
        for peer in peers:
            both = np.isfinite(ours["per_blob"]) & np.isfinite(peer["per_blob"])
            if both.any():
                a, b = ours["per_blob"][both], peer["per_blob"][both]
                lines.append(
                    f"on the {int(both.sum())} blobs both found: {ours['name']} median {np.median(a):.3f} / "
                    f"p95 {np.quantile(a, 0.95):.3f} px, {peer['name']} {np.median(b):.3f} / "
                    f"{np.quantile(b, 0.95):.3f} px."
                )
    if missing:
        lines.append("not available here (no row): " + ", ".join(missing) + ".")
    return "\n".join(lines)


def _meets_targets(row: dict[str, Any]) -> bool:
    return (
        row["found"] >= TARGET_FOUND * row["blobs"]
        and row["median"] <= TARGET_MEDIAN
        and row["p95"] <= TARGET_P95
    )


def cmd_demo(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    if args.plot:
        _require_matplotlib()
    backends, missing = _available_backends(args.backends)
    # Outputs are checked before the (long) run.
    if args.json:
        _check_file_target(Path(args.json), f"--json {args.json}")
    if args.save_scene:
        _check_file_target(Path(args.save_scene), f"--save-scene {args.save_scene}")
    if args.plot:
        _check_folder_writable(Path(args.plot), f"--plot {args.plot}")
    options = _detect_options(args)
    options.pop("num_features")
    scene, rows, result = run_demo(
        backends,
        seed=args.seed,
        noise=args.noise,
        num_features=args.num_features,
        repeat=args.repeat,
        sift=not args.no_sift,
        dtype=args.dtype,
        options=options,
    )
    timing = f"time: median of {max(args.repeat, 1)} run(s) after the first, image to NumPy keypoints" + (
        _torch_threads() if any("torch" in b for b in backends) else ""
    )
    print(format_report(scene, rows, missing, timing))
    if args.json:
        payload = {
            "scene": {
                "height": scene.image.shape[0],
                "width": scene.image.shape[1],
                "blobs": int(scene.x.size),
                "noise": scene.noise,
                "seed": scene.seed,
                "crlb_median": float(np.median(scene.crlb())),
            },
            "rows": [{k: v for k, v in r.items() if k not in ("errors", "per_blob")} for r in rows],
        }
        try:
            Path(args.json).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"--json {args.json}: cannot write it ({_reason(exc)})") from None
    if args.save_scene:
        _save_scene(scene, Path(args.save_scene))
    if args.plot:
        out = Path(args.plot)
        plot_overlay(
            scene.as_float(),
            result,
            out / "demo_overlay.png",
            scene=scene,
            title=f"{rows[0]['name']}: {rows[0]['found']}/{rows[0]['blobs']} blobs found, "
            f"median error {rows[0]['median']:.3f} px (red +: truth)",
        )
        plot_errors(rows, out / "demo_errors.png")
        print(f"\nplots: {out / 'demo_overlay.png'}, {out / 'demo_errors.png'}")
    if args.check:
        failing = [r["name"] for r in rows if r["name"].startswith("subpix-xp") and not _meets_targets(r)]
        if failing:
            print(f"{PROG}: targets missed by: {', '.join(failing)}", file=sys.stderr)
            return 1
    return 0


def _save_scene(scene: Scene, path: Path) -> None:
    try:
        if path.suffix.lower() == ".npy":
            np.save(path, scene.image)
            return
        try:
            from PIL import Image
        except ImportError:
            raise CliError(
                f"--save-scene as {path.suffix or 'an image'} needs Pillow ({_INSTALL_HINT}); "
                "or give a .npy path"
            ) from None
        Image.fromarray(scene.image).save(path)
    except OSError as exc:
        raise OutputError(f"--save-scene {path}: cannot write it ({_reason(exc)})") from None


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _finite_float(text: str) -> float:
    """An ``argparse`` type: a finite number (``nan`` and ``inf`` are usage errors, at parse time)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number; got {text!r}")
    return value


def _finite_or_none(minimum: float) -> Callable[[str], float | str]:
    """An ``argparse`` type: ``"none"`` (the setting off) or a finite number of at least ``minimum``."""

    def parse(text: str) -> float | str:
        if text.strip().lower() == "none":
            return "none"
        value = _finite_float(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected 'none' or a number >= {minimum:g}; got {text!r}")
        return value

    return parse


def _count(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {value}")
        return value

    return parse


def _add_detector_options(p: argparse.ArgumentParser, *, demo: bool) -> None:
    p.add_argument(
        "--num-features",
        "-n",
        type=_count(0),
        default=None,
        metavar="K",
        help="keypoints per image (default: "
        + ("twice the blobs in the scene)" if demo else "500; the demo: twice its blobs)"),
    )
    p.add_argument(
        "--threshold",
        type=_finite_or_none(0.0),
        default=None,
        metavar="T",
        help="contrast threshold: keep blobs whose |DoG| exceeds T times the image's intensity "
        "range, or 'none' (default: 0.04/3, SIFT's)",
    )
    p.add_argument(
        "--edge-ratio",
        type=_finite_or_none(1.0),
        default=None,
        metavar="R",
        help="drop edge responses: principal curvature ratio R or more (SIFT's test), or 'none' "
        "(default: 10)",
    )
    p.add_argument(
        "--max-sensitivity",
        type=_finite_or_none(0.0),
        default=None,
        metavar="S",
        help="drop keypoints whose centre moves more than S input pixels per intensity range of "
        "error in its fit's gradient, or 'none' (default: 5000)",
    )
    p.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep every refined extremum, even a second one on the same blob (duplicate_radius=None)",
    )
    p.add_argument(
        "--kornia",
        action="store_true",
        help="kornia's ScaleSpaceDetector settings: no threshold, edge or sensitivity test or "
        "duplicate removal, the 3-D fit's centres",
    )
    p.add_argument(
        "--no-refit", action="store_true", help="keep the 3-D fit's centres (kornia's; spatial_refit=False)"
    )
    p.add_argument(
        "--single-scale-start",
        action="store_true",
        help="do not upsample the image first (double_image=False; misses blobs below sigma ~2 px)",
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="compute dtype")
    p.add_argument(
        "--debug", action="store_true", help=f"show Python tracebacks of errors (also: {DEBUG_ENV}=1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Multi-scale blob detection with sub-pixel centres on any Array API library.",
        epilog=f"'{PROG} demo' runs the built-in synthetic benchmark; "
        f"'{PROG} detect IMAGES' detects blobs in your images.\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version('subpix_xp')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    det = sub.add_parser(
        "detect",
        help="detect blobs in image files (no files: run the demo)",
        description="Detect blobs in image files, directories or globs. A file that cannot be "
        "read, or on which detection fails, is reported in one line and skipped; "
        "the exit status is then 1.",
        epilog=f"{OUTPUT_HELP}\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    det.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (PNG, JPEG, TIFF incl. 16-bit, BMP, PNM, .npy), directories or globs",
    )
    det.add_argument(
        "--backend", "-b", choices=BACKENDS, default="numpy", help="array library (default: numpy)"
    )
    det.add_argument(
        "--no-buckets",
        action="store_true",
        help="jax: compile per exact image size instead of padding each image to one of a few size "
        "buckets (each side rounded up to 64, 80, 96, 112, 128, 160, ...: four sizes per doubling) "
        "with its true size passed along, which gives the same keypoints and compiles once per bucket",
    )
    det.add_argument(
        "--jax-cache",
        metavar="DIR",
        help="jax: keep the compiled programs in DIR (JAX's persistent compilation cache, about "
        "0.5 MB a bucket), so a later run on images of the same buckets does not compile again",
    )
    det.add_argument(
        "--out",
        "-o",
        metavar="PATH",
        help="write keypoints to PATH (.csv, .jsonl or .json; default or '-': CSV on stdout)",
    )
    det.add_argument(
        "--format", choices=("csv", "jsonl", "json"), help="output format (default: from --out's suffix)"
    )
    det.add_argument(
        "--plot",
        metavar="PATH",
        help="write overlays: a .png file for one image, else a directory (IMAGE_blobs.png)",
    )
    det.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no per-file lines")
    _add_detector_options(det, demo=False)
    _add_demo_options(det, standalone=False)
    det.set_defaults(func=cmd_detect)

    demo = sub.add_parser(
        "demo",
        help="detect blobs in a synthetic scene with known centres and report accuracy",
        description="Render a deterministic synthetic scene with known sub-pixel blob centres, "
        "detect them on every installed backend (and OpenCV SIFT when installed) "
        "and report found/missed, localisation error, pixel locking and time.",
        epilog=f"{EXIT_CODES_HELP}\n  (demo --check: 1 when a subpix-xp row misses a target)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--backends",
        metavar="LIST",
        help=f"comma-separated backends of {', '.join(BACKENDS)} "
        f"(default: every installed one of {', '.join(DEMO_BACKENDS)})",
    )
    demo.add_argument("--plot", metavar="DIR", help="write DIR/demo_overlay.png and DIR/demo_errors.png")
    demo.add_argument("--no-sift", action="store_true", help="leave out the OpenCV SIFT row")
    demo.add_argument(
        "--check", action="store_true", help="exit with status 1 if a subpix-xp row misses a target"
    )
    _add_detector_options(demo, demo=True)
    _add_demo_options(demo, standalone=True)
    demo.set_defaults(func=cmd_demo)
    # Parsed by the conformance runner itself (main() hands it the rest of the command line).
    sub.add_parser(
        "conformance",
        add_help=False,
        help="run the cross-backend conformance suite (subpix-xp conformance --help)",
    )
    return parser


def _add_demo_options(p: argparse.ArgumentParser, *, standalone: bool) -> None:
    group = p.add_argument_group("demo scene" if standalone else "demo (when no IMAGE is given)")
    group.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
    group.add_argument(
        "--noise", type=_finite_float, default=0.005, help="noise std, 0..1 intensity (default: 0.005)"
    )
    group.add_argument("--repeat", type=_count(0), default=2, help="timed runs after the first (default: 2)")
    group.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    group.add_argument(
        "--threads",
        type=_count(1),
        default=None,
        metavar="N",
        help="PyTorch and OpenCV CPU threads (default: theirs; 1 gives steadier timings on a busy machine)",
    )
    group.add_argument(
        "--save-scene", metavar="PATH", help="save the scene image (.png needs Pillow, or .npy)"
    )
    if not standalone:
        p.set_defaults(check=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``subpix-xp`` and ``python -m subpix_xp``; returns the exit status.

    Every error a user can cause is one line on stderr, no traceback (``--debug`` or
    ``SUBPIX_XP_DEBUG=1`` shows them); the exit status is one of those in ``EXIT_CODES_HELP``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["conformance"]:
        from .conformance import main as conformance_main

        return conformance_main(argv[1:], prog=f"{PROG} conformance")
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse's message and exit status 2
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    if args.command == "detect" and args.images and args.num_features is None:
        args.num_features = 500
    try:
        return int(args.func(args))
    except CliError as exc:
        _report(args, f"error: {exc}")
        return EXIT_USAGE
    except OutputError as exc:
        _report(args, f"error: {exc}")
        return EXIT_OUTPUT
    except KeyboardInterrupt:
        _report(args, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        _report(args, f"internal error: {_reason(exc)} (a bug: rerun with --debug and report the traceback)")
        return EXIT_INTERNAL


def _report(args: argparse.Namespace, message: str) -> None:
    if _debugging(args):
        traceback.print_exc()
    _say(f"{PROG}: {message}")


if __name__ == "__main__":
    sys.exit(main())
