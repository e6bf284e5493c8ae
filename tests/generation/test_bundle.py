"""Model bundles and checkpoints: round trips, float16 storage, atomic and readable files."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass

import pytest
import torch

from generation.bundle import convert_storage, load_network, read_bundle_info, save_network
from generation.training import load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class TinyConfig:
    width: int = 256  # large enough that tensor bytes, not the header, dominate the file


def build(config: dict) -> torch.nn.Module:
    width = TinyConfig(**config).width
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.BatchNorm1d(width), torch.nn.Linear(width, 2))


def trained_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build({"width": TinyConfig.width})
    net.train()(torch.randn(16, 4))  # moves the BatchNorm statistics away from their defaults
    return net.eval()


def test_saved_bundle_loads_to_identical_outputs_and_records_facts(tmp_path):
    net = trained_net()
    save_network(tmp_path, "generator", net, TinyConfig(), steps=12)
    loaded = load_network(tmp_path, "generator", build)
    x = torch.randn(5, 4)
    assert torch.equal(net(x), loaded(x))
    info = read_bundle_info(tmp_path)
    assert info["networks"]["generator"]["steps"] == 12
    assert info["networks"]["generator"]["config"] == {"width": TinyConfig.width}
    assert "torch" in info["software"]
    mode = stat.S_IMODE((tmp_path / "generator.safetensors").stat().st_mode)
    assert mode & stat.S_IROTH, "shipped weights must be readable by every user"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file may be left behind"


def test_float16_storage_halves_the_file_and_keeps_outputs_close(tmp_path):
    net = trained_net()
    save_network(tmp_path, "encoder", net, TinyConfig())
    before = (tmp_path / "encoder.safetensors").stat().st_size
    sizes = convert_storage(tmp_path, "float16")
    assert sizes["encoder"] < 0.6 * before
    loaded = load_network(tmp_path, "encoder", build)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(5, 4)
    assert torch.allclose(net(x), loaded(x), atol=1e-2)
    assert json.loads((tmp_path / "bundle.json").read_text())["networks"]["encoder"]["storage_dtype"] == "float16"


def test_bad_names_and_missing_networks_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown network name"):
        save_network(tmp_path, "decoder", trained_net(), TinyConfig())
    with pytest.raises(FileNotFoundError, match="has no 'refiner' network"):
        save_network(tmp_path, "generator", trained_net(), TinyConfig())
        load_network(tmp_path, "refiner", build)
    with pytest.raises(ValueError, match="unknown storage dtype"):
        convert_storage(tmp_path, "int8")


def test_checkpoint_round_trip_without_unpickling_objects(tmp_path):
    state = {"step": 3, "weights": torch.arange(4.0), "nested": {"lr": 0.1}}
    save_checkpoint(tmp_path / "ckpt.pt", state)
    loaded = load_checkpoint(tmp_path / "ckpt.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])
    with pytest.raises(FileNotFoundError, match="without --resume"):
        load_checkpoint(tmp_path / "missing.pt")


def test_bundle_cli_converts_and_shows(tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    save_network(tmp_path, "generator", trained_net(), TinyConfig(), steps=7)
    runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich does not cut the message
    converted = runner.invoke(app, ["bundle", "convert", str(tmp_path), "--dtype", "float16"])
    assert converted.exit_code == 0, converted.output
    assert "generator" in converted.output
    shown = runner.invoke(app, ["bundle", "show", str(tmp_path)])
    assert shown.exit_code == 0 and "float16" in shown.output
    refused = runner.invoke(app, ["bundle", "convert", str(tmp_path / "nothing")])
    assert refused.exit_code != 0 and "not a model bundle" in refused.output


def test_weights_digest_survives_float16_storage_and_tells_networks_apart(tmp_path):
    from generation.bundle import weights_digest

    save_network(tmp_path, "generator", trained_net(), TinyConfig())
    before = weights_digest(tmp_path, "generator")
    convert_storage(tmp_path, "float16")
    assert weights_digest(tmp_path, "generator") == before
    other = trained_net()
    with torch.no_grad():
        other[0].weight.add_(0.1)
    save_network(tmp_path, "generator", other, TinyConfig())
    assert weights_digest(tmp_path, "generator") != before
