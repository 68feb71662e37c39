"""The ``subpix-xp`` command line, run in a subprocess on temporary files.

The subprocesses import this checkout's ``subpix_xp`` (its root is put first on ``PYTHONPATH``).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from subpix_xp import cli
from subpix_xp._libraries import load_library
from subpix_xp._scene import render_scene

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def run_cli(*args: str, cwd: Path, command: tuple[str, ...] = (sys.executable, "-m", "subpix_xp"), **kwargs):
    return subprocess.run(
        [*command, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, check=False, **kwargs
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder with the demo scene as 8-bit PNG, 16-bit PNG and 16-bit TIFF, a corrupt PNG and a text file."""
    pil = pytest.importorskip("PIL.Image", reason="the image-file tests need Pillow (the 'cli' extra)")
    folder = tmp_path_factory.mktemp("images")
    scene = render_scene(height=160, width=200, seed=2)
    pil.fromarray(scene.image).save(folder / "scene8.png")
    pil.fromarray(scene.image.astype(np.uint16) * 257).save(folder / "scene16.png")
    try:  # the reader prefers tifffile; without it, Pillow writes and reads the TIFF
        import tifffile

        tifffile.imwrite(folder / "scene16.tif", scene.image.astype(np.uint16) * 257)
    except ImportError:
        pil.fromarray(scene.image.astype(np.uint16) * 257).save(folder / "scene16.tif")
    (folder / "corrupt.png").write_bytes(PNG_MAGIC + b"\x00 not really a png")
    (folder / "notes.txt").write_text("not an image")
    return folder, scene


def _read_csv(path: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            rows.setdefault(Path(row["file"]).name, []).append(row)
    return rows


def test_batch_with_corrupt_file_skips_it_and_reports(images, tmp_path):
    folder, scene = images
    # --plot is checked before the batch starts, so ask for plots only where matplotlib is installed.
    plot = ["--plot", str(tmp_path / "plots")] if importlib.util.find_spec("matplotlib") else []
    result = run_cli(
        "detect",
        str(folder),
        str(tmp_path / "missing.png"),
        "--out",
        str(tmp_path / "kp.csv"),
        "-n",
        "50",
        *plot,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr  # something was skipped
    assert "skipped" in result.stderr and "corrupt.png" in result.stderr and "missing.png" in result.stderr
    assert "Traceback" not in result.stderr
    assert "3 image(s) processed, 2 skipped" in result.stderr
    rows = _read_csv(tmp_path / "kp.csv")
    assert set(rows) == {"scene8.png", "scene16.png", "scene16.tif"}
    assert list(rows["scene8.png"][0]) == ["file", "rank", "x", "y", "scale", "response", "polarity"]
    # 8- and 16-bit copies of one image give the same keypoints.
    for other in ("scene16.png", "scene16.tif"):
        a = np.array([[float(r["x"]), float(r["y"])] for r in rows["scene8.png"]])
        b = np.array([[float(r["x"]), float(r["y"])] for r in rows[other]])
        np.testing.assert_allclose(a, b, atol=1e-3)
    # The strongest detections are the scene's blobs.
    top = rows["scene8.png"][: scene.x.size]
    x, y = np.array([float(r["x"]) for r in top]), np.array([float(r["y"]) for r in top])
    dist = np.hypot(x[:, None] - scene.x[None], y[:, None] - scene.y[None]).min(axis=0)
    assert np.median(dist) < 0.05
    if plot:
        plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
        assert plots == ["scene16_blobs.png", "scene16_tif_blobs.png", "scene8_blobs.png"]
        assert all((tmp_path / "plots" / p).read_bytes()[:8] == PNG_MAGIC for p in plots)


def test_json_to_stdout_and_glob(images, tmp_path):
    folder, _ = images
    result = run_cli(
        "detect",
        str(folder / "scene8.*"),
        "--out",
        "-",
        "--format",
        "json",
        "-n",
        "7",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["num_features"] == 7 and payload["skipped"] == []
    (image,) = payload["images"]
    assert (image["width"], image["height"], image["count"]) == (200, 160, 7)
    assert set(image["keypoints"][0]) == {"x", "y", "scale", "response", "polarity"}
    assert image["keypoints"][0]["polarity"] in ("bright", "dark")


def test_unmatched_glob_and_unknown_suffix(tmp_path):
    result = run_cli("detect", str(tmp_path / "*.png"), "--out", str(tmp_path / "kp.json"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no file matches" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((tmp_path / "kp.json").read_text())["images"] == []
    result = run_cli("detect", "x.png", "--out", str(tmp_path / "kp.txt"), cwd=tmp_path)
    assert result.returncode == 2 and "use .csv, .jsonl or .json" in result.stderr


def test_torch_backend(images, tmp_path):
    pytest.importorskip("torch")
    folder, _ = images
    out = {}
    for backend in ("numpy", "torch"):
        result = run_cli(
            "detect",
            str(folder / "scene8.png"),
            "--backend",
            backend,
            "-n",
            "20",
            "--out",
            str(tmp_path / f"{backend}.csv"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        out[backend] = np.array(
            [[float(r["x"]), float(r["y"])] for r in _read_csv(tmp_path / f"{backend}.csv")["scene8.png"]]
        )
    np.testing.assert_allclose(out["torch"], out["numpy"], atol=2e-3)


def test_demo_meets_targets_with_numpy_only(tmp_path):
    result = run_cli(
        "demo",
        "--backends",
        "numpy",
        "--repeat",
        "0",
        "--no-sift",
        "--check",
        "--json",
        str(tmp_path / "demo.json"),
        "--save-scene",
        str(tmp_path / "scene.npy"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "subpix-xp numpy" in result.stdout and "pixel locking" in result.stdout
    report = json.loads((tmp_path / "demo.json").read_text())
    (main,) = [r for r in report["rows"] if r["name"].startswith("subpix-xp numpy") and not r["note"]]
    (kornia_like,) = [r for r in report["rows"] if "kornia-compatible" in r["note"]]
    n = report["scene"]["blobs"]
    assert main["found"] >= 0.95 * n and main["median"] <= 0.05 and main["p95"] <= 0.15
    assert main["median"] <= kornia_like["median"] and main["p95"] <= kornia_like["p95"]
    assert main["ks_p"] > 0.01 and abs(main["s_curve"]) < 0.01
    assert np.load(tmp_path / "scene.npy").shape == (report["scene"]["height"], report["scene"]["width"])


def test_detect_without_files_runs_the_demo_with_plots(tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli(
        "detect", "--backend", "numpy", "--repeat", "0", "--plot", str(tmp_path / "plots"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "synthetic scene" in result.stdout
    try:
        import cv2  # noqa: F401
    except ImportError:
        assert "OpenCV SIFT" not in result.stdout
    else:  # opencv-python-headless installed: SIFT is a peer row of the table
        assert any(line.startswith("OpenCV SIFT") and "/" in line for line in result.stdout.splitlines())
    for name in ("demo_overlay.png", "demo_errors.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG_MAGIC


def test_console_script_and_help(tmp_path):
    script = shutil.which("subpix-xp", path=str(Path(sys.executable).parent)) or shutil.which("subpix-xp")
    if script is None:
        pytest.skip("the subpix-xp console script is not installed (pip install -e .)")
    result = run_cli("--help", cwd=tmp_path, command=(script,))
    assert result.returncode == 0 and "detect" in result.stdout and "demo" in result.stdout
    result = run_cli("detect", "--help", cwd=tmp_path, command=(script,))
    assert "--backend" in result.stdout and "--num-features" in result.stdout
    result = run_cli("demo", "--backends", "nonsense", cwd=tmp_path, command=(script,))
    assert result.returncode == 2 and "unknown backend" in result.stderr


# ---------------------------------------------------------------------------------------------
# Outputs, interruption, errors and exit codes (issue 12, point 2)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """40 small PNGs of synthetic blobs, named in processing order."""
    pil = pytest.importorskip("PIL.Image", reason="the image-file tests need Pillow (the 'cli' extra)")
    folder = tmp_path_factory.mktemp("batch")
    for i in range(40):
        pil.fromarray(render_scene(height=160, width=192, seed=100 + i).image).save(
            folder / f"img{i:02d}.png"
        )
    return folder, sorted(folder.iterdir())


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(line for line in text.splitlines(keepends=True) if not line.startswith("#")))


def _reference_rows(path: Path, n: int) -> list[dict[str, str]]:
    """What the CLI writes for ``path`` with ``-n n``, computed in this process."""
    runner = cli.Runner("numpy")
    rows = cli._rows(runner(cli.as_batch(cli.read_image(path), "float32"), num_features=n))
    return [
        {"file": str(path), "rank": str(rank), **{k: str(v) for k, v in row.items()}}
        for rank, row in enumerate(rows)
    ]


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in (root writes anywhere chmod forbids: use sysfs then)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    sysfs = Path("/sys")
    try:
        (sysfs / "subpix-xp-probe").touch()
    except OSError:
        return sysfs
    pytest.skip("running as root and /sys is writable: no folder here refuses writes")


@pytest.mark.parametrize("kind", ["folder", "under_a_file", "read_only"])
def test_unwritable_out_is_reported_before_the_batch(batch, tmp_path, kind):
    files = batch[1]
    (tmp_path / "a_file").write_text("not a folder")
    out = {
        "folder": tmp_path,
        "under_a_file": tmp_path / "a_file" / "sub" / "kp.csv",
        "read_only": _read_only_folder(tmp_path) / "kp.csv",
    }[kind]
    # Not --quiet: a detected image would print a line of its own.
    result = run_cli("detect", str(files[0]), str(tmp_path / "corrupt.png"), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    line = _one_line(result.stderr)
    assert line.startswith(f"subpix-xp: error: --out {out}") and "skipped" not in line
    assert result.stdout == ""
    assert not list(tmp_path.glob("**/*.partial"))


@pytest.mark.parametrize("kind", ["a_file", "read_only"])
def test_unwritable_plot_folder_is_reported_before_the_batch(batch, tmp_path, kind):
    pytest.importorskip("matplotlib")
    files = batch[1]
    (tmp_path / "a_file").write_text("not a folder")
    plot = {"a_file": tmp_path / "a_file", "read_only": _read_only_folder(tmp_path) / "plots"}[kind]
    out = tmp_path / "kp.csv"
    result = run_cli(
        "detect", str(files[0]), str(files[1]), "--out", str(out), "--plot", str(plot), cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr
    assert _one_line(result.stderr).startswith(f"subpix-xp: error: --plot {plot}")
    assert not out.exists() and not Path(f"{out}.partial").exists()


def _finished_files(partial: Path) -> list[str]:
    """Files whose rows are complete in ``partial`` while it is being written (all but the last seen)."""
    try:
        text = partial.read_text()
    except FileNotFoundError:
        return []
    complete = text[: text.rfind("\n") + 1]
    names = list(dict.fromkeys(row["file"] for row in _csv_rows(complete)))
    return names[:-1]


def _restore_sigint() -> None:  # the test runner may run with SIGINT ignored, which children inherit
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_half_way_keeps_every_finished_image(batch, tmp_path):
    files = batch[1]
    out = tmp_path / "kp.csv"
    out.write_text("file,rank,x,y,scale,response,polarity\nearlier_run.png,0,1,1,1,1,dark\n")
    partial = tmp_path / "kp.csv.partial"
    # The seventh input is a named pipe that nobody writes: reading it blocks, so the batch cannot
    # end before the interrupt, however fast the first six images go.
    waiting = tmp_path / "waiting.png"
    os.mkfifo(waiting)
    inputs = [*files[:6], waiting, *files[6:]]
    total = len(inputs)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "subpix_xp",
            "detect",
            *map(str, inputs),
            "--out",
            str(out),
            "-n",
            "8",
            "--quiet",
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_restore_sigint,
    )
    while process.poll() is None and len(_finished_files(partial)) < 3:
        time.sleep(0.01)
    assert process.poll() is None, "the batch ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("Ctrl-C did not stop a batch waiting on its input") from None
    assert process.returncode == 130, stderr
    line = _one_line(stderr)
    assert "interrupted after" in line and str(partial) in line and stdout == ""
    # Nothing named kp.csv can be mistaken for this run's output, and the earlier run's file is
    # not lost: it waits as kp.csv.previous.
    assert not out.exists()
    assert (tmp_path / "kp.csv.previous").read_text().endswith("earlier_run.png,0,1,1,1,1,dark\n")
    assert "kp.csv.previous" in line
    text = partial.read_text()
    trailer = text.splitlines()[-1]
    assert trailer.startswith("# incomplete: interrupted; keypoints of ") and trailer.endswith(
        f" of {total} image(s)"
    )
    done = int(trailer.split("keypoints of ")[1].split()[0])
    rows = _csv_rows(text)
    finished = list(dict.fromkeys(row["file"] for row in rows))
    assert 3 <= done <= 6 and finished == [str(f) for f in files[:done]]
    assert f"after {done} of {total} image(s)" in line
    for path in files[:done]:
        assert [r for r in rows if r["file"] == str(path)] == _reference_rows(path, 8)


@pytest.mark.parametrize("value", ["nan", "-inf"])
def test_bad_threshold_is_a_usage_error(batch, tmp_path, value):
    files = batch[1]
    result = run_cli(
        "detect", str(files[0]), f"--threshold={value}", "--out", str(tmp_path / "kp.csv"), cwd=tmp_path
    )
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert "--threshold" in line and repr(value) in line
    assert list(tmp_path.iterdir()) == []


def test_stdout_csv_without_out(batch, tmp_path):
    files = batch[1]
    result = run_cli("detect", str(files[0]), str(files[1]), "-n", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "file,rank,x,y,scale,response,polarity" and lines.count(lines[0]) == 1
    rows = _csv_rows(result.stdout)
    assert rows == _reference_rows(files[0], 6) + _reference_rows(files[1], 6)
    # Progress and the summary are on stderr only.
    assert f"{files[0]}: 6 blobs" in result.stderr and "2 image(s) processed, 0 skipped" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_outputs_replace_an_earlier_file_when_complete(batch, tmp_path, suffix):
    files = batch[1]
    out = tmp_path / f"kp{suffix}"
    out.write_text('{"earlier": "run"}\n')
    result = run_cli(
        "detect",
        str(files[0]),
        str(files[1]),
        str(tmp_path / "missing.png"),
        "--out",
        str(out),
        "-n",
        "3",
        "-q",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert list(tmp_path.iterdir()) == [out]  # no partial or scratch file left
    if suffix == ".json":
        payload = json.loads(out.read_text())
        images, skipped = payload["images"], payload["skipped"]
    else:
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert records[0]["num_features"] == 3
        images = [r for r in records[1:] if "keypoints" in r]
        skipped = [r for r in records[1:] if "error" in r]
    assert [image["file"] for image in images] == [str(files[0]), str(files[1])]
    assert [image["count"] for image in images] == [3, 3]
    assert [s["file"] for s in skipped] == [str(tmp_path / "missing.png")]


def _limit_file_size() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (2500, 2500))  # a "disk" that fills after a few images


def test_failed_write_mid_batch_keeps_complete_rows(batch, tmp_path):
    pytest.importorskip("resource")
    files = batch[1]
    out = tmp_path / "kp.csv"
    result = run_cli(
        "detect",
        *map(str, files[:12]),
        "--out",
        str(out),
        "-n",
        "8",
        "-q",
        cwd=tmp_path,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 3, result.stderr
    line = _one_line(result.stderr)
    assert f"cannot write {out}.partial (File too large)" in line
    assert not out.exists()
    text = Path(f"{out}.partial").read_text()
    assert text.endswith("\n")  # cut back to the last complete image
    rows = _csv_rows(text)
    finished = list(dict.fromkeys(row["file"] for row in rows))
    assert 1 <= len(finished) < 12 and finished == [str(f) for f in files[: len(finished)]]
    assert f"stopped after {len(finished)} of 12 image(s)" in line
    for path in files[: len(finished)]:
        assert [r for r in rows if r["file"] == str(path)] == _reference_rows(path, 8)


def test_full_disk_is_one_line(batch, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    files = batch[1]
    result = run_cli("detect", str(files[0]), "--out", "/dev/full", "--format", "csv", cwd=tmp_path)
    assert result.returncode == 3
    line = _one_line(result.stderr)
    assert line.startswith("subpix-xp: error: --out /dev/full:") and line.endswith(
        "(No space left on device)"
    )


def test_detection_failure_names_the_file_and_goes_on(batch, tmp_path, monkeypatch, capsys):
    files = batch[1]
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((40, 50), dtype=np.uint8))
    real = cli.detect_blobs

    def failing(image, *args, **kwargs):
        if image.shape[-1] == 50:
            raise ValueError("detect_blobs: something about this image\nwith a second line")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(cli, "detect_blobs", failing)
    status = cli.main(["detect", str(small), str(files[0]), "-n", "4", "--out", str(tmp_path / "kp.csv")])
    captured = capsys.readouterr()
    assert status == 1
    assert (
        f"subpix-xp: skipped {small}: detection failed (ValueError: detect_blobs: something about this image)\n"
        in captured.err
    )
    assert "Traceback" not in captured.err and "second line" not in captured.err
    assert _csv_rows((tmp_path / "kp.csv").read_text()) == _reference_rows(files[0], 4)


def test_reader_shapes_become_one_grey_batch(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    grey = render_scene(height=40, width=56, seed=3).image
    forms = {
        "grey8.png": grey,
        "grey16.png": grey.astype(np.uint16) * 257,
        "rgb.png": np.stack([grey] * 3, axis=-1),
        "rgba.png": np.concatenate([np.stack([grey] * 3, axis=-1), np.full((40, 56, 1), 7, np.uint8)], -1),
    }
    batches = {}
    for name, array in forms.items():
        pil.fromarray(array).save(tmp_path / name)
        batches[name] = cli.as_batch(cli.read_image(tmp_path / name), "float32")
        assert batches[name].shape == (1, 1, 40, 56) and batches[name].dtype == np.float32
    for name, b in batches.items():
        np.testing.assert_allclose(b, batches["grey8.png"], rtol=0, atol=1e-6, err_msg=name)


def test_runner_compiles_once_per_shape(monkeypatch):
    compiled = []

    def compile_(fn, x):
        compiled.append(tuple(x.shape))
        return fn

    library = dataclasses.replace(load_library("numpy"), compile=compile_)
    monkeypatch.setattr(cli, "load_library", lambda name: library)
    runner = cli.Runner("numpy")
    images = [np.zeros((1, 1, h, w), np.float32) for h, w in ((40, 48), (40, 48), (48, 40), (40, 48))]
    for image in images:
        runner(image, num_features=5)
    assert compiled == [(1, 1, 40, 48), (1, 1, 48, 40)]
    runner(images[0], num_features=6)  # another setting: compiled again
    assert compiled[-1] == (1, 1, 40, 48) and len(compiled) == 3


def test_cli_loads_libraries_without_test_scaffolding_or_x64(tmp_path):
    code = (
        "import sys, subpix_xp.cli as cli; print('subpix_xp.testing' in sys.modules); "
        "import importlib.util as u; print(u.find_spec('jax') is None or "
        "(cli.load_library('jax').float64, __import__('jax').config.read('jax_enable_x64')) == (False, False))"
    )
    env = {k: v for k, v in cli_env().items() if k != "JAX_ENABLE_X64"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_help_documents_exit_codes(tmp_path):
    result = run_cli("detect", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
        assert f"\n  {code}" in result.stdout
    assert "OUT.partial" in result.stdout


def test_conformance_subcommand_runs_the_shipped_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["conformance", "--backends", "numpy", "--ops", "nms2d,nms3d"]) == 0
    out = capsys.readouterr().out
    assert "nms2d" in out and "nms3d" in out and "0 failed" in out
    assert cli.main(["conformance", "--backends", "no_such_backend_module"]) == 2


def test_detector_options_map_to_detect_blobs() -> None:
    parse = cli.build_parser().parse_args
    assert cli._detect_options(parse(["detect", "a.png", "-n", "7"])) == {"num_features": 7}
    options = cli._detect_options(
        parse(["detect", "a.png", "--threshold", "none", "--edge-ratio", "4", "--keep-duplicates"])
    )
    assert options == {"num_features": None, "threshold": None, "edge_ratio": 4.0, "duplicate_radius": None}
    options = cli._detect_options(parse(["detect", "a.png", "--max-sensitivity", "none"]))
    assert options == {"num_features": None, "max_sensitivity": None}
    options = cli._detect_options(parse(["detect", "a.png", "--max-sensitivity", "2000"]))
    assert options == {"num_features": None, "max_sensitivity": 2000.0}
    kornia = cli._detect_options(parse(["detect", "a.png", "--kornia"]))
    assert kornia == {"num_features": None, **cli.KORNIA_OPTIONS}
    with pytest.raises(SystemExit):
        parse(["detect", "a.png", "--edge-ratio", "0.5"])


def test_kornia_option_reproduces_the_kornia_settings_of_detect_blobs() -> None:
    from subpix_xp import detect_blobs

    yy, xx = np.mgrid[0:64, 0:64]
    image = np.exp(-((xx - 30.3) ** 2 + (yy - 33.6) ** 2) / 18.0)
    ours = detect_blobs(image, 5, **cli.KORNIA_OPTIONS)
    assert bool(ours.valid[0]) and abs(float(ours.x[0]) - 30.3) < 0.1


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")
def test_jax_size_buckets_compile_once_for_two_sizes(tmp_path):
    """Two images of different sizes in one bucket: one compilation, each image's own keypoints."""
    pil = pytest.importorskip("PIL.Image", reason="the image-file tests need Pillow (the 'cli' extra)")
    scene = render_scene(height=200, width=232, seed=5).image
    for name, crop in (("a.png", scene[:90, :100]), ("b.png", scene[100:196, 110:220])):
        pil.fromarray(crop).save(tmp_path / name)
    jax_run = run_cli(
        "detect",
        "a.png",
        "b.png",
        "--backend",
        "jax",
        "-o",
        "jax.json",
        "-n",
        "40",
        "--jax-cache",
        "cache",
        cwd=tmp_path,
    )
    assert jax_run.returncode == 0, jax_run.stderr
    assert jax_run.stderr.count("compiling for the 112x96 bucket") == 1, jax_run.stderr
    assert any((tmp_path / "cache").iterdir())  # the program, for the next run
    numpy_run = run_cli("detect", "a.png", "b.png", "-o", "numpy.json", "-n", "40", cwd=tmp_path)
    assert numpy_run.returncode == 0, numpy_run.stderr
    jax_images = json.loads((tmp_path / "jax.json").read_text())["images"]
    numpy_images = json.loads((tmp_path / "numpy.json").read_text())["images"]
    assert [i["file"] for i in jax_images] == [i["file"] for i in numpy_images]
    for ours, ref in zip(jax_images, numpy_images):
        assert (ours["height"], ours["width"]) == (ref["height"], ref["width"])
        assert ours["count"] == ref["count"] > 0
        a = np.array([[k["x"], k["y"]] for k in ours["keypoints"]])
        b = np.array([[k["x"], k["y"]] for k in ref["keypoints"]])
        assert np.hypot(*(a[:, None, :] - b[None, :, :]).transpose(2, 0, 1)).min(axis=0).max() <= 1e-3


def test_jax_cache_needs_the_jax_backend(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"")
    done = run_cli("detect", "a.npy", "--jax-cache", "cache", cwd=tmp_path)
    assert done.returncode == cli.EXIT_USAGE
    assert "--jax-cache: only --backend jax compiles" in _one_line(done.stderr)


def test_runner_compiles_once_per_size_bucket_on_jax(monkeypatch):
    """The bucket logic with NumPy standing in for JAX: one compilation for three sizes, the unpadded keypoints."""
    compiled = []

    def compile_(fn, *args):
        compiled.append(tuple(tuple(a.shape) for a in args))
        return fn

    library = dataclasses.replace(
        load_library("numpy"), name="jax", compile=compile_, compiles_per_shape=True
    )
    monkeypatch.setattr(cli, "load_library", lambda name: library)
    runner = cli.Runner("jax")
    scene = render_scene(height=120, width=120, seed=3).image.astype(np.float32)[None, None] / 255
    for h, w in ((100, 110), (112, 98), (99, 112)):
        image = np.ascontiguousarray(scene[..., :h, :w])
        ours = runner(image, num_features=30)
        assert runner.last_bucket == (112, 112)
        ref = cli.detect_blobs(image, num_features=30)  # the unpadded image
        assert ours["valid"].sum() == ref.valid.sum() > 0
        for name in ("x", "y", "scale", "response"):
            np.testing.assert_allclose(
                ours[name][ours["valid"]], getattr(ref, name)[ref.valid], rtol=0, atol=1e-5
            )
    assert compiled == [((1, 1, 112, 112), (2,))] and runner.compilations == 1
    assert cli.Runner("jax", buckets=False).bucket((100, 110), {}) is None
    assert runner.bucket((10, 300), {}) is None  # too small to pad without changing the keypoints
