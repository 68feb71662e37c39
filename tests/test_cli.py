"""The ``subpix-xp`` command line, run in a subprocess on temporary files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from subpix_xp._scene import render_scene

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path, command: tuple[str, ...] = (sys.executable, "-m", "subpix_xp")):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


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
    result = run_cli("detect", str(folder), str(tmp_path / "missing.png"), "--out", str(tmp_path / "kp.csv"),
                     "-n", "50", "--plot", str(tmp_path / "plots"), cwd=tmp_path)
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
    if Path(tmp_path / "plots").exists():  # matplotlib installed
        plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
        assert plots == ["scene16_blobs.png", "scene16_tif_blobs.png", "scene8_blobs.png"]
        assert all((tmp_path / "plots" / p).read_bytes()[:8] == PNG_MAGIC for p in plots)


def test_json_to_stdout_and_glob(images, tmp_path):
    folder, _ = images
    result = run_cli("detect", str(folder / "scene8.*"), "--out", "-", "--format", "json", "-n", "7", "--quiet",
                     cwd=tmp_path)
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
    assert result.returncode == 2 and "use .csv or .json" in result.stderr


def test_torch_backend(images, tmp_path):
    pytest.importorskip("torch")
    folder, _ = images
    out = {}
    for backend in ("numpy", "torch"):
        result = run_cli("detect", str(folder / "scene8.png"), "--backend", backend, "-n", "20",
                         "--out", str(tmp_path / f"{backend}.csv"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        out[backend] = np.array([[float(r["x"]), float(r["y"])] for r in _read_csv(tmp_path / f"{backend}.csv")["scene8.png"]])
    np.testing.assert_allclose(out["torch"], out["numpy"], atol=2e-3)


def test_demo_meets_targets_with_numpy_only(tmp_path):
    result = run_cli("demo", "--backends", "numpy", "--repeat", "0", "--no-sift", "--check",
                     "--json", str(tmp_path / "demo.json"), "--save-scene", str(tmp_path / "scene.npy"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "subpix-xp numpy" in result.stdout and "pixel locking" in result.stdout
    report = json.loads((tmp_path / "demo.json").read_text())
    (main,) = [r for r in report["rows"] if r["name"].startswith("subpix-xp numpy") and not r["note"]]
    (kornia_like,) = [r for r in report["rows"] if "spatial_refit=False" in r["note"]]
    n = report["scene"]["blobs"]
    assert main["found"] >= 0.95 * n and main["median"] <= 0.05 and main["p95"] <= 0.15
    assert main["median"] <= kornia_like["median"] and main["p95"] <= kornia_like["p95"]
    assert main["ks_p"] > 0.01 and abs(main["s_curve"]) < 0.01
    assert np.load(tmp_path / "scene.npy").shape == (report["scene"]["height"], report["scene"]["width"])


def test_detect_without_files_runs_the_demo_with_plots(tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("detect", "--backend", "numpy", "--repeat", "0", "--plot", str(tmp_path / "plots"), cwd=tmp_path)
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
