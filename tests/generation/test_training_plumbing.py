"""Shared training plumbing: the time budget every loop stops on."""

from __future__ import annotations

import torch

from generation.training import DistContext, budget_spent


def test_budget_is_spent_only_past_the_limit_and_never_without_one():
    alone = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    assert budget_spent(61.0, 1.0, alone)
    assert not budget_spent(59.0, 1.0, alone)
    assert not budget_spent(1e9, None, alone)


def _run_parts(seed: int):
    import dataclasses

    from generation.e4e import EncoderTrainConfig

    torch.manual_seed(seed)
    module = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1)
    module(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return module, optimizer, dataclasses.replace(EncoderTrainConfig.for_preset("tiny"), steps=8)


def test_run_state_round_trips_weights_optimiser_and_random_stream(tmp_path):
    import random

    import numpy as np

    from generation.training import restore_run_state, save_run_state

    alone = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    module, optimizer, config = _run_parts(seed=0)
    save_run_state(tmp_path / "ckpt.pt", alone, {"net": module}, {"net": optimizer}, {"train": config}, step=5)
    expected = (torch.rand(3), random.random(), np.random.rand())

    fresh, fresh_optimizer, _ = _run_parts(seed=1)
    longer = type(config)(**{**config.__dict__, "steps": 16})  # a resumed run may go on for longer
    extra = restore_run_state(tmp_path / "ckpt.pt", alone, {"net": fresh}, {"net": fresh_optimizer}, {"train": longer}, 0)
    assert extra == {"step": 5}
    assert torch.equal(fresh.weight, module.weight)
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    resumed = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(resumed[0], expected[0]) and resumed[1:] == expected[1:]


def test_a_run_resumed_with_another_config_is_refused_before_anything_loads(tmp_path):
    import pytest

    from formats.errors import InputError
    from generation.training import restore_run_state, save_run_state

    alone = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    module, optimizer, config = _run_parts(seed=0)
    save_run_state(tmp_path / "ckpt.pt", alone, {"net": module}, {"net": optimizer}, {"train": config}, step=5)
    other, other_optimizer, _ = _run_parts(seed=1)
    before = other.weight.detach().clone()
    changed = type(config)(**{**config.__dict__, "lr_encoder": 0.5})
    with pytest.raises(InputError, match=r"another EncoderTrainConfig \(lr_encoder\)"):
        restore_run_state(tmp_path / "ckpt.pt", alone, {"net": other}, {"net": other_optimizer}, {"train": changed}, 0)
    assert torch.equal(other.weight, before)


def test_a_loop_run_seeds_leaves_no_folder_before_its_log_and_resumes_what_it_saved(tmp_path):
    from generation.loop_run import LoopRun
    from generation.training import RunOptions, read_jsonl

    alone = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    options = RunOptions(data=tmp_path, run_dir=tmp_path / "run", seed=4, progress=False)
    loop = LoopRun(options, alone)
    assert torch.equal(torch.rand(2), (torch.manual_seed(4), torch.rand(2))[1])  # seeded with seed + rank
    module, optimizer, config = _run_parts(seed=0)
    assert loop.resume({"net": module}, {"net": optimizer}, {"train": config}) == {}  # a fresh run
    assert not (tmp_path / "run").exists() and not loop.out_of_time()
    loop.open_log({"preset": "tiny"}).log(step=1)
    loop.save(step=3)
    assert [r.get("event") for r in read_jsonl(tmp_path / "run" / "log.jsonl")] == ["start", None]

    again = LoopRun(RunOptions(data=tmp_path, run_dir=tmp_path / "run", resume=True), alone)
    fresh, fresh_optimizer, _ = _run_parts(seed=1)
    assert again.resume({"net": fresh}, {"net": fresh_optimizer}, {"train": config}) == {"step": 3}
    assert torch.equal(fresh.weight, module.weight)
    result = again.result(5, {"loss": 0.5})
    assert (result.step, result.steps_this_run, result.run_dir) == (5, 2, tmp_path / "run")
    assert result.metrics == {"loss": 0.5} and not result.stopped_early


def test_a_checkpoint_with_the_cadence_fields_flat_resumes_into_the_cadence_dataclass(tmp_path):
    """Checkpoints written before `Cadence` held log/sample/checkpoint flat in each train config (S as
    `log_every_steps`); they still resume, and the cadence, like the length, may change on resume."""
    import dataclasses

    import pytest

    from formats.errors import InputError
    from generation.configs import Cadence, config_from_dict, legacy_cadence
    from generation.solov2.config import SynthesizerTrainingConfig
    from generation.training import load_checkpoint, restore_run_state, save_checkpoint, save_run_state

    alone = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    module, optimizer, config = _run_parts(seed=0)
    save_run_state(tmp_path / "ckpt.pt", alone, {"net": module}, {"net": optimizer}, {"train": config}, step=5)
    state = load_checkpoint(tmp_path / "ckpt.pt")
    flat = {k: v for k, v in state["configs"]["train"].items() if k != "cadence"}
    state["configs"]["train"] = {**flat, "log_every": 7, "sample_every": 9, "checkpoint_every": 11}  # as written before
    save_checkpoint(tmp_path / "old.pt", state)
    decoded = config_from_dict(type(config), legacy_cadence(type(config), state["configs"]["train"]))
    assert decoded.cadence == Cadence(7, 9, 11)

    fresh, fresh_optimizer, _ = _run_parts(seed=1)
    driven_otherwise = dataclasses.replace(config, cadence=Cadence(1, 2, 3))
    assert restore_run_state(tmp_path / "old.pt", alone, {"net": fresh}, {"net": fresh_optimizer},
                             {"train": driven_otherwise}, 0) == {"step": 5}
    assert torch.equal(fresh.weight, module.weight)
    with pytest.raises(InputError, match=r"\(lr_encoder\)"):  # what it learns is still checked
        restore_run_state(tmp_path / "old.pt", alone, {"net": fresh}, {"net": fresh_optimizer},
                          {"train": dataclasses.replace(config, lr_encoder=0.5)}, 0)
    synthesizer = {k: v for k, v in dataclasses.asdict(SynthesizerTrainingConfig()).items() if k != "cadence"}
    decoded = config_from_dict(SynthesizerTrainingConfig,
                               legacy_cadence(SynthesizerTrainingConfig, {**synthesizer, "log_every_steps": 3}))
    assert decoded.cadence.log_every == 3 and decoded.cadence.checkpoint_every == Cadence().checkpoint_every
    assert [Cadence(2, 3, 5).checkpoint_due(step) for step in (5, 6)] == [True, False]
    assert Cadence(2, 3, 5).sample_due(7, last=True) and not Cadence(2, 3, 5).log_due(7)


def test_configs_decode_strictly_with_nested_configs_tuples_and_later_defaults():
    import dataclasses

    import pytest

    from generation.configs import config_from_dict
    from generation.e4e import EncoderConfig
    from generation.solov2.config import SynthesizerConfig

    encoder = EncoderConfig.for_preset("tiny", w_dim=32)
    stored = dataclasses.asdict(encoder)
    stored["backbone"]["stage_blocks"] = list(stored["backbone"]["stage_blocks"])  # as JSON gives it back
    assert config_from_dict(EncoderConfig, stored) == encoder
    del stored["leaky_slope"]  # a field added after the file was written takes its default
    assert config_from_dict(EncoderConfig, stored) == encoder
    synthesizer = SynthesizerConfig.for_preset("tiny")
    as_json = {k: [list(v) for v in value] if k == "scale_ranges" else value
               for k, value in dataclasses.asdict(synthesizer).items()}
    assert config_from_dict(SynthesizerConfig, as_json) == synthesizer
    with pytest.raises(ValueError, match="does not know the fields"):
        config_from_dict(EncoderConfig, {**dataclasses.asdict(encoder), "colour": 1})
    with pytest.raises(ValueError, match="lacks the required fields"):
        config_from_dict(EncoderConfig, {"preset": "tiny"})
