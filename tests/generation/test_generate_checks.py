"""`s2m generate` checks the sketch and the output path before any model is loaded, and writes atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from api.cli import app
from generation.presets import SHIPPED_BUNDLE


def _broken_bundle(folder: Path) -> Path:
    """The shipped bundle.json with every weights file truncated: any model load would fail."""
    folder.mkdir()
    shutil.copy(SHIPPED_BUNDLE / "bundle.json", folder / "bundle.json")
    for network in SHIPPED_BUNDLE.glob("*.safetensors"):
        (folder / network.name).write_bytes(network.read_bytes()[:64])
    return folder


def _sketch(path: Path) -> Path:
    image = Image.new("L", (512, 512), 255)
    ImageDraw.Draw(image).ellipse((100, 60, 400, 380), outline=0, width=6)
    image.save(path)
    return path


def test_bad_sketches_and_outputs_are_refused_before_any_model_loads(tmp_path: Path) -> None:
    broken = _broken_bundle(tmp_path / "broken")
    blank = tmp_path / "blank.png"
    Image.new("L", (256, 256), 255).save(blank)
    ink = tmp_path / "ink.png"
    Image.new("L", (256, 256), 0).save(ink)
    good = _sketch(tmp_path / "sketch.png")
    runner = CliRunner()
    cases = [
        ([str(blank), "-o", str(tmp_path / "a.png")], "blank"),
        ([str(ink), "-o", str(tmp_path / "a.png")], "all ink"),
        ([str(good), "-o", str(tmp_path / "a.jpg")], ".png"),
        ([str(good), "-o", str(tmp_path)], ".png"),
        ([str(tmp_path / "missing.png"), "-o", str(tmp_path / "a.png")], "no sketch file"),
    ]
    for arguments, message in cases:
        result = runner.invoke(app, ["generate", *arguments, "--model", str(broken)])
        assert result.exit_code == 2 and message in result.output, (arguments, result.output)
        assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.png", "broken", "ink.png", "sketch.png"]


def test_generate_writes_the_image_atomically_from_a_large_canvas(tmp_path: Path) -> None:
    output = tmp_path / "out" / "image.png"
    result = CliRunner().invoke(app, ["generate", str(_sketch(tmp_path / "sketch.png")), "-o", str(output), "--steps", "1"])
    assert result.exit_code == 0, result.output
    with Image.open(output) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (64, 64, 3) and pixels.std() > 10
    assert [p.name for p in output.parent.iterdir()] == ["image.png"]  # no temporary file left beside it
