"""A damaged bundle is refused with one clear sentence before any network is built, and nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file
from sketch2medi_fixtures import tiny_bundle
from typer.testing import CliRunner

from api.cli import app
from generation.bundle import ENCODER, GENERATOR, Bundle, BundleError, save_network
from generation.e4e import Encoder, EncoderConfig
from generation.pipeline import Sketch2MedI


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory) -> Path:
    """A tiny bundle with G, C and E: what every damage below starts from."""
    folder = tiny_bundle(tmp_path_factory.mktemp("good"))
    generator = Bundle.open(folder).load(GENERATOR)
    encoder = Encoder(EncoderConfig.for_preset("tiny", w_dim=generator.config.w_dim))
    encoder.set_latent_average(generator.mapping.w_avg)
    save_network(folder, ENCODER, encoder, encoder.config)
    return folder


def _truncate(folder: Path) -> None:
    path = folder / "encoder.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(folder: Path) -> None:
    (folder / "generator.safetensors").write_bytes(b"not a safetensors file" * 8)


def _drop_encoder(folder: Path) -> None:
    info = json.loads((folder / "bundle.json").read_text())
    del info["networks"][ENCODER]
    (folder / "bundle.json").write_text(json.dumps(info))


def _disagree_on_resolution(folder: Path) -> None:
    info = json.loads((folder / "bundle.json").read_text())
    info["networks"][ENCODER]["config"]["resolution"] = 64
    (folder / "bundle.json").write_text(json.dumps(info))


def _poison(folder: Path) -> None:
    path = folder / "encoder.safetensors"
    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key][0] = float("nan")
    save_file(tensors, str(path))


def _misfit(folder: Path) -> None:
    info = json.loads((folder / "bundle.json").read_text())
    info["networks"][ENCODER]["config"]["head_hidden"] *= 2
    (folder / "bundle.json").write_text(json.dumps(info))


DAMAGES = {
    "truncated file": (_truncate, "encoder.safetensors in bundle .* is truncated or corrupt"),
    "corrupt file": (_garble, "generator.safetensors in bundle .* is truncated or corrupt"),
    "missing network": (_drop_encoder, "has no 'encoder' network"),
    "resolutions disagree": (_disagree_on_resolution, "disagree on the resolution .*generator 32 px, encoder 64 px"),
    "NaN weights": (_poison, "holds NaN or Inf weights"),
    "weights that do not fit the config": (_misfit, "do not fit the encoder config"),
}


def _sketch(path: Path) -> Path:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).ellipse((12, 8, 52, 44), outline=0, width=2)
    image.save(path)
    return path


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_bundle_is_refused_in_one_sentence_before_any_network_is_built(damage, good_bundle, tmp_path,
                                                                                 monkeypatch):
    damaged = tmp_path / "bundle"
    shutil.copytree(good_bundle, damaged)
    apply, message = DAMAGES[damage]
    apply(damaged)
    before = {p.name: p.read_bytes() for p in damaged.iterdir()}
    built: list[str] = []
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda self, *a, **k: built.append(type(self).__name__))
    with pytest.raises(BundleError, match=message) as error:
        Sketch2MedI.from_bundle(damaged)
    assert built == [], "no network may be loaded from a bundle that fails its checks"
    assert "\n" not in str(error.value) and len(str(error.value)) < 300
    monkeypatch.undo()

    output = tmp_path / "out.png"
    sketch = _sketch(tmp_path / "sketch.png")
    result = CliRunner().invoke(app, ["generate", str(sketch), "-o", str(output), "--model", str(damaged)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not output.exists()
    assert {p.name: p.read_bytes() for p in damaged.iterdir()} == before, "the bundle must not be changed"


def test_the_good_bundle_passes_the_same_checks(good_bundle):
    pipeline = Sketch2MedI.from_bundle(Bundle.open(good_bundle))
    assert pipeline.resolution == 32 and pipeline.refiner is None
