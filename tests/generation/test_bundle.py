"""Model bundles and checkpoints: round trips, float16 storage, atomic and readable files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch

from generation.bundle import GENERATOR, Bundle, BundleError, convert_storage, save_network
from generation.stylegan2 import Generator, GeneratorConfig
from generation.training import load_checkpoint, save_checkpoint


def trained_net(seed: int = 0) -> Generator:
    """A tiny G whose mean w moved away from its default (a buffer, as BatchNorm statistics are)."""
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig.for_preset("tiny")).eval()
    generator.mapping.estimate_w_avg(64, seed=seed)
    return generator


def _z() -> torch.Tensor:
    return torch.randn(3, GeneratorConfig.for_preset("tiny").z_dim, generator=torch.Generator().manual_seed(1))


def test_saved_bundle_loads_to_identical_outputs_and_records_facts(tmp_path):
    net = trained_net()
    save_network(tmp_path, GENERATOR, net, net.config, steps=12)
    bundle = Bundle.open(tmp_path)
    loaded = bundle.load(GENERATOR)
    assert torch.equal(net(_z()), loaded(_z()))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert bundle.entry(GENERATOR)["steps"] == 12
    assert bundle.config(GENERATOR)["resolution"] == net.config.resolution
    assert "torch" in bundle.info["software"]
    mode = stat.S_IMODE((tmp_path / "generator.safetensors").stat().st_mode)
    assert mode & stat.S_IROTH, "shipped weights must be readable by every user"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file may be left behind"


def test_float16_storage_halves_the_file_and_keeps_outputs_close(tmp_path):
    net = trained_net()
    save_network(tmp_path, GENERATOR, net, net.config)
    before = (tmp_path / "generator.safetensors").stat().st_size
    sizes = convert_storage(tmp_path, "float16")
    assert sizes[GENERATOR] < 0.6 * before
    loaded = Bundle.open(tmp_path).load(GENERATOR)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.allclose(net(_z()), loaded(_z()), atol=2e-2)
    assert json.loads((tmp_path / "bundle.json").read_text())["networks"][GENERATOR]["storage_dtype"] == "float16"


def test_bad_names_and_missing_networks_are_clear_errors(tmp_path):
    net = trained_net()
    with pytest.raises(BundleError, match="unknown network name"):
        save_network(tmp_path, "decoder", net, net.config)
    with pytest.raises(BundleError, match="is not a model bundle"):
        Bundle.open(tmp_path)
    save_network(tmp_path, GENERATOR, net, net.config)
    with pytest.raises(BundleError, match="has no 'refiner' network"):
        Bundle.open(tmp_path).load("refiner")
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

    net = trained_net()
    save_network(tmp_path, GENERATOR, net, net.config, steps=7)
    runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich does not cut the message
    converted = runner.invoke(app, ["bundle", "convert", str(tmp_path), "--dtype", "float16"])
    assert converted.exit_code == 0, converted.output
    assert "generator" in converted.output
    shown = runner.invoke(app, ["bundle", "show", str(tmp_path)])
    assert shown.exit_code == 0 and "float16" in shown.output
    refused = runner.invoke(app, ["bundle", "convert", str(tmp_path / "nothing")])
    assert refused.exit_code != 0 and "not a model bundle" in refused.output


def test_weights_digest_survives_float16_storage_and_tells_networks_apart(tmp_path):
    net = trained_net()
    save_network(tmp_path, GENERATOR, net, net.config)
    before = Bundle.open(tmp_path)
    convert_storage(tmp_path, "float16")
    after = Bundle.open(tmp_path)
    assert after.digest(GENERATOR) == before.digest(GENERATOR) and after.version == before.version
    other = trained_net(seed=1)
    save_network(tmp_path, GENERATOR, other, other.config)
    retrained = Bundle.open(tmp_path)
    assert retrained.digest(GENERATOR) != before.digest(GENERATOR) and retrained.version != before.version


def _count_reads(monkeypatch) -> list[str]:
    """Names of the network files the bundle reads from now on."""
    import generation.bundle as bundle_module

    reads: list[str] = []
    real = bundle_module.load_file

    def counting(path, device="cpu"):  # type: ignore[no-untyped-def]
        reads.append(Path(path).name)
        return real(path, device=device)

    monkeypatch.setattr(bundle_module, "load_file", counting)
    return reads


def test_the_version_reads_bundle_json_only_and_equals_hashing_the_files(tmp_path, monkeypatch):
    net = trained_net()
    save_network(tmp_path, GENERATOR, net, net.config)
    reads = _count_reads(monkeypatch)
    recorded = Bundle.open(tmp_path)
    assert recorded.version and reads == [], "the version must come from bundle.json alone"
    info = json.loads((tmp_path / "bundle.json").read_text())
    del info["networks"][GENERATOR]["sha256"]  # a bundle saved before digests were recorded
    (tmp_path / "bundle.json").write_text(json.dumps(info))
    assert Bundle.open(tmp_path).version == recorded.version and reads == ["generator.safetensors"]


def test_upgrading_an_older_bundle_records_its_digests_and_keeps_its_version(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    net = trained_net()
    save_network(tmp_path, GENERATOR, net, net.config, steps=3)
    convert_storage(tmp_path, "float16")
    info = json.loads((tmp_path / "bundle.json").read_text())
    digest = info["networks"][GENERATOR].pop("sha256")
    info["software"] = {"python": "3.0", "torch": "0.1", "numpy": "1.0"}
    (tmp_path / "bundle.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    version = Bundle.open(tmp_path).version

    upgraded = CliRunner().invoke(app, ["bundle", "upgrade", str(tmp_path)])
    assert upgraded.exit_code == 0, upgraded.output
    after = json.loads((tmp_path / "bundle.json").read_text())
    assert after["networks"][GENERATOR].pop("sha256") == digest and after == info, "only the digest is added"
    reads = _count_reads(monkeypatch)
    assert Bundle.open(tmp_path).version == version and reads == []
    assert f"bundle version {version}" in upgraded.output


def test_weights_other_than_the_recorded_ones_are_refused(tmp_path):
    net, other = trained_net(), trained_net(seed=1)
    save_network(tmp_path, GENERATOR, net, net.config)
    elsewhere = tmp_path / "other"
    save_network(elsewhere, GENERATOR, other, other.config)
    (tmp_path / "generator.safetensors").write_bytes((elsewhere / "generator.safetensors").read_bytes())
    with pytest.raises(BundleError, match="not the ones bundle.json records for the generator"):
        Bundle.open(tmp_path).load(GENERATOR)


def test_the_shipped_bundle_records_every_digest_and_one_resolution(monkeypatch):
    from generation.presets import SHIPPED_BUNDLE

    reads = _count_reads(monkeypatch)
    shipped = Bundle.open(SHIPPED_BUNDLE)
    assert all("sha256" in entry for entry in shipped.networks.values())
    assert len(shipped.version) == 12 and reads == []
    assert shipped.resolution == shipped.config(GENERATOR)["resolution"] == shipped.info["resolution"] == 64


def test_the_resolution_of_a_bundle_without_g_e_or_h_is_the_recorded_one(tmp_path):
    from generation.bundle import PIX2PIX, update_bundle_info
    from generation.pix2pix import Pix2PixConfig, UNetGenerator

    config = Pix2PixConfig.for_preset("tiny")
    save_network(tmp_path, PIX2PIX, UNetGenerator(config), config)
    with pytest.raises(BundleError, match="records no model resolution"):
        _ = Bundle.open(tmp_path).resolution
    update_bundle_info(tmp_path, resolution=32)
    assert Bundle.open(tmp_path).resolution == 32
