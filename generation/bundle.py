"""Model bundles: one safetensors file per network plus `bundle.json` (DESIGN.md, formats).

Loading never unpickles: tensors come from safetensors, configs from JSON, and each network
class rebuilds itself from its config dataclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors.torch import load_file, save_file

from generation.files import atomic_target

BUNDLE_INFO = "bundle.json"
NETWORK_NAMES = ("synthesizer", "generator", "embedder", "encoder", "refiner")
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}

M = TypeVar("M", bound=torch.nn.Module)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp:
        Path(tmp).write_bytes(data)


def software_versions() -> dict[str, str]:
    """Versions recorded in every bundle so a result can be traced to its software."""
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def is_bundle(bundle_dir: Path) -> bool:
    return (Path(bundle_dir) / BUNDLE_INFO).is_file()


def read_bundle_info(bundle_dir: Path) -> dict[str, Any]:
    """The parsed `bundle.json`, or an empty skeleton for a new bundle."""
    path = Path(bundle_dir) / BUNDLE_INFO
    if not path.exists():
        return {"networks": {}, "software": software_versions()}
    return json.loads(path.read_text())


def update_bundle_info(bundle_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge top-level fields (preset, resolution, metrics, ...) into `bundle.json`."""
    info = read_bundle_info(bundle_dir)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(info.get(key), dict):
            info[key] = {**info[key], **value}
        else:
            info[key] = value
    info["software"] = software_versions()
    _atomic_write_bytes(Path(bundle_dir) / BUNDLE_INFO, json.dumps(info, indent=2, sort_keys=True).encode())
    return info


def save_network(
    bundle_dir: Path,
    name: str,
    module: torch.nn.Module,
    config: Any,
    **record: Any,
) -> Path:
    """Write `<name>.safetensors` and record its config (a dataclass) and facts in `bundle.json`.

    `record` holds per-network facts such as training steps, data fingerprint or metrics.
    """
    if name not in NETWORK_NAMES:
        raise ValueError(f"unknown network name {name!r}; expected one of {NETWORK_NAMES}")
    bundle_dir = Path(bundle_dir)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    path = bundle_dir / f"{name}.safetensors"
    with atomic_target(path) as tmp:
        save_file(tensors, tmp, metadata={"network": name})
    entry = {"config": dataclasses.asdict(config), "file": path.name, **record}
    update_bundle_info(bundle_dir, networks={name: entry})
    return path


def network_config(bundle_dir: Path, name: str) -> dict[str, Any]:
    """The config dict stored for `name`, or a clear error when the bundle lacks that network."""
    info = read_bundle_info(bundle_dir)
    if name not in info.get("networks", {}):
        raise FileNotFoundError(f"bundle {bundle_dir} has no {name!r} network (has {sorted(info['networks'])})")
    return info["networks"][name]["config"]


def load_network(
    bundle_dir: Path,
    name: str,
    build: Callable[[dict[str, Any]], M],
    device: torch.device | str = "cpu",
) -> M:
    """Rebuild network `name` with `build(config_dict)` and load its safetensors weights."""
    config = network_config(bundle_dir, name)
    module = build(config)
    state = load_file(str(Path(bundle_dir) / f"{name}.safetensors"), device="cpu")
    module.load_state_dict(state)
    return module.to(device).eval()


def convert_storage(bundle_dir: Path, dtype: str) -> dict[str, int]:
    """Rewrite every network file of a bundle with its floating tensors stored as `dtype`.

    Why: the shipped `small` bundle is committed to git, and float16 halves it. Loading is
    unchanged, since `load_state_dict` casts into the network's float32 parameters. Returns the
    new file sizes in bytes; `bundle.json` records the storage dtype of each network.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage dtype {dtype!r}; choose one of {sorted(STORAGE_DTYPES)}")
    bundle_dir = Path(bundle_dir)
    info = read_bundle_info(bundle_dir)
    sizes: dict[str, int] = {}
    for name, entry in info.get("networks", {}).items():
        path = bundle_dir / entry["file"]
        tensors = load_file(str(path))
        converted = {k: v.to(STORAGE_DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
        with atomic_target(path) as tmp:
            save_file(converted, tmp, metadata={"network": name})
        entry["storage_dtype"] = dtype
        sizes[name] = path.stat().st_size
    update_bundle_info(bundle_dir, networks=info.get("networks", {}))
    return sizes


def weights_digest(bundle_dir: Path, name: str) -> str:
    """sha256 of a network's weights, the same whether the bundle stores float32 or float16.

    E and H record the digest of the G they were trained against; hashing the float16-rounded
    values (not the file bytes) keeps that record valid after `convert_storage`.
    """
    path = Path(bundle_dir) / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"bundle {bundle_dir} has no {path.name}")
    tensors = load_file(str(path))
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key]
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        digest.update(key.encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
