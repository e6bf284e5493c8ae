"""Model bundles: one safetensors file per network plus `bundle.json` (DESIGN.md, formats).

`Bundle.open(folder)` reads `bundle.json` once and is the one way to read a bundle: it loads
any network by name (the registry of `generation.networks` rebuilds it), checks every file
before a network is built (a truncated or corrupt file, a missing network, weights that do not
fit their config, NaN or Inf, weights other than the ones recorded, resolutions that disagree),
and reads each network file at most once. Each network's weight digest is recorded in
`bundle.json` when it is saved, so the bundle's version reads JSON only. Writing stays with
the functions below (`save_network`, `update_bundle_info`, `convert_storage`), which the
training code calls on a folder that may not be a bundle yet.

Loading never unpickles: tensors come from safetensors, configs from JSON, and each network
class rebuilds itself from its config dataclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from formats.errors import InputError
from generation.files import atomic_target
from generation.networks import (EMBEDDER, ENCODER, GENERATOR, NETWORK_NAMES, PIX2PIX, REFINER, SYNTHESIZER,
                                 build_network)

__all__ = ["EMBEDDER", "ENCODER", "GENERATOR", "NETWORK_NAMES", "PIX2PIX", "REFINER", "SYNTHESIZER", "Bundle",
           "BundleError", "convert_storage", "is_bundle", "record_digests", "replace_bundle_info", "save_network",
           "update_bundle_info"]

BUNDLE_INFO = "bundle.json"
DIGEST = "sha256"  # the key of a network's weight digest in its bundle.json entry
# E reads sketches and H refines G's images at G's resolution; S and C resize what they see.
SAME_RESOLUTION = (GENERATOR, ENCODER, REFINER)
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
VERSION_LENGTH = 12  # hex digits of `Bundle.version`


class BundleError(InputError):
    """A bundle folder that cannot serve: missing, corrupt or inconsistent (one sentence)."""


def software_versions() -> dict[str, str]:
    """Versions recorded in every bundle so a result can be traced to its software."""
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def is_bundle(bundle_dir: Path) -> bool:
    return (Path(bundle_dir) / BUNDLE_INFO).is_file()


class Bundle:
    """One opened bundle folder: `bundle.json` read once, networks loaded by name."""

    def __init__(self, root: Path, info: dict[str, Any]) -> None:
        self.root = Path(root)
        self.info = info
        self._weights: dict[str, dict[str, torch.Tensor]] = {}  # checked, not yet loaded
        self._digests: dict[str, str] = {}

    @classmethod
    def open(cls, root: Path) -> "Bundle":
        """Read `bundle.json`; a clear BundleError when the folder is no bundle."""
        root = Path(root)
        path = root / BUNDLE_INFO
        if not path.is_file():
            raise BundleError(f"{root} is not a model bundle (it has no {BUNDLE_INFO})")
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BundleError(f"the {BUNDLE_INFO} of {root} cannot be read ({type(error).__name__})") from None
        if not isinstance(info, dict) or not isinstance(info.get("networks", {}), dict):
            raise BundleError(f"the {BUNDLE_INFO} of {root} is not a bundle description")
        info.setdefault("networks", {})
        return cls(root, info)

    # -- what the bundle holds ----------------------------------------------------------
    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        return self.info["networks"]

    def has(self, name: str) -> bool:
        return name in self.networks

    def entry(self, name: str) -> dict[str, Any]:
        """The `bundle.json` record of one network (config, steps, metrics, ...)."""
        if name not in NETWORK_NAMES:
            raise BundleError(f"unknown network name {name!r}; expected one of {', '.join(NETWORK_NAMES)}")
        if name not in self.networks:
            raise BundleError(f"bundle {self.root} has no {name!r} network (it has {', '.join(sorted(self.networks)) or 'none'})")
        return self.networks[name]

    def config(self, name: str) -> dict[str, Any]:
        return self.entry(name)["config"]

    # -- checks -------------------------------------------------------------------------
    def check(self, names: Iterable[str]) -> None:
        """Check the named networks' records and files before any of them is built.

        Raises BundleError naming the first problem: a missing network, resolutions that
        disagree, a missing, truncated or corrupt file, weights that do not fit the config,
        or weights holding NaN or Inf.
        """
        names = list(names)
        for name in names:
            self.entry(name)
        self._check_resolutions()
        for name in names:
            self._read(name)

    def _check_resolutions(self) -> None:
        resolutions = self._resolutions()
        if len(set(resolutions.values())) > 1:
            listed = ", ".join(f"{name} {value} px" for name, value in resolutions.items())
            raise BundleError(f"the networks of bundle {self.root} disagree on the resolution ({listed})")

    def _resolutions(self) -> dict[str, Any]:
        return {n: self.networks[n]["config"].get("resolution") for n in SAME_RESOLUTION if n in self.networks}

    @property
    def resolution(self) -> int:
        """The model resolution: the side G, E and H work at (the sketches E reads, the images G and H draw,
        the sketches S stores for the shape channel); the bundle's recorded `resolution` when it holds
        none of them. The one way to ask a bundle its resolution."""
        self._check_resolutions()
        sides = [side for side in self._resolutions().values() if side is not None]
        side = sides[0] if sides else self.info.get("resolution")
        if not isinstance(side, int) or side < 1:
            raise BundleError(f"bundle {self.root} records no model resolution")
        return side

    def _read(self, name: str) -> dict[str, torch.Tensor]:
        """The checked weights of `name` (read once per open, kept until `load` uses them)."""
        if name in self._weights:
            return self._weights[name]
        path = self.root / self.entry(name).get("file", f"{name}.safetensors")
        if not path.is_file():
            raise BundleError(f"bundle {self.root} lists the {name} network but has no {path.name}")
        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError):
            raise BundleError(f"{path.name} in bundle {self.root} is truncated or corrupt; copy the bundle again") from None
        expected = _network_shapes(self, name)
        actual = {key: tuple(tensor.shape) for key, tensor in tensors.items()}
        if actual != expected:
            differing = len(set(actual) ^ set(expected)) + sum(
                actual[k] != expected[k] for k in set(actual) & set(expected))
            raise BundleError(f"the weights in {path.name} do not fit the {name} config in {BUNDLE_INFO} "
                              f"({differing} of {len(expected)} tensors differ)")
        if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            raise BundleError(f"{path.name} in bundle {self.root} holds NaN or Inf weights; it cannot serve")
        digest = _digest(tensors)
        if self.entry(name).get(DIGEST, digest) != digest:
            raise BundleError(f"the weights in {path.name} are not the ones {BUNDLE_INFO} records for the {name} "
                              f"(their sha256 differs); copy the bundle again")
        self._digests[name] = digest
        self._weights[name] = tensors
        return tensors

    # -- loading ------------------------------------------------------------------------
    def load(self, name: str, device: torch.device | str = "cpu") -> torch.nn.Module:
        """Network `name` rebuilt from its config with its checked weights, frozen in eval mode on `device`."""
        state = self._read(name)
        module = build_network(name, self.config(name), self.config)
        module.load_state_dict(state)
        del self._weights[name]  # the module holds them now
        return module.requires_grad_(False).to(device).eval()

    def load_embedder(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """C with its retrieval read-out: the appearance channel of the query engine and the index.

        Its weights are laid out channels-last: oneDNN runs C's convolutions 25-35 % faster that way
        on the CPU, at batch 1 to 32, with descriptors equal to 1e-7 (docs/benchmarks.md)."""
        return self.load(EMBEDDER, device).to(memory_format=torch.channels_last)

    def digest(self, name: str) -> str:
        """sha256 of a network's weights, the same whether the bundle stores float32 or float16.

        As `bundle.json` records it; a bundle saved before digests were recorded has its file hashed
        (read once, weights then dropped unless a load asked for them): `record_digests` upgrades it."""
        recorded = self.entry(name).get(DIGEST)
        if recorded is not None:
            return recorded
        if name not in self._digests:
            self._read(name)
            self._weights.pop(name, None)  # read for the digest only
        return self._digests[name]

    @property
    def generator_digest(self) -> str:
        """E and H record the digest of the G they were trained against."""
        return self.digest(GENERATOR)

    def check_trained_against_generator(self, names: Iterable[str]) -> None:
        """Refuse a bundle whose E or H was trained against another G (they would silently misfire)."""
        for name in names:
            recorded = self.networks.get(name, {}).get("generator_sha256")
            if recorded is not None and recorded != self.generator_digest:
                raise BundleError(f"the bundle's {name} was trained against another generator than the one in "
                                  f"{self.root}; retrain it with `s2m train {name}`")

    @cached_property
    def version(self) -> str:
        """A short stable id of what the bundle computes: its networks' weights and configs.

        Indexes record it as their model version; it survives float16 storage and changes with
        any retrained network or a changed read-out. Read from `bundle.json` alone (the recorded digests).
        """
        content = hashlib.sha256()
        for name in sorted(self.networks):
            content.update(name.encode())
            content.update(self.digest(name).encode())
            content.update(json.dumps(self.config(name), sort_keys=True).encode())
        return content.hexdigest()[:VERSION_LENGTH]

    # -- writing ------------------------------------------------------------------------
    def record_metrics(self, **metrics: Any) -> None:
        """Merge measured figures into `bundle.json`'s `metrics` (and this open bundle)."""
        self.info = update_bundle_info(self.root, metrics=metrics)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    # Floating tensors hashed as float16 so the digest survives `convert_storage`.
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key]
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        digest.update(key.encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _network_shapes(bundle: Bundle, name: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape that network `name`'s config calls for, built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            module = build_network(name, bundle.config(name), bundle.config)
    except (TypeError, KeyError, ValueError) as error:
        raise BundleError(f"the {name} config in the {BUNDLE_INFO} of {bundle.root} is invalid ({error})") from None
    return {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp:
        Path(tmp).write_bytes(data)


def _read_info(bundle_dir: Path) -> dict[str, Any]:
    """The parsed `bundle.json` of a folder being written, or an empty skeleton for a new bundle."""
    path = Path(bundle_dir) / BUNDLE_INFO
    if not path.exists():
        return {"networks": {}, "software": software_versions()}
    return Bundle.open(bundle_dir).info


def update_bundle_info(bundle_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge top-level fields (preset, resolution, metrics, ...) into `bundle.json`."""
    return _write_fields(bundle_dir, fields, merge=True)


def replace_bundle_info(bundle_dir: Path, **fields: Any) -> dict[str, Any]:
    """Set top-level fields of `bundle.json` whole: an entry its owner rewrites (the sign directions')
    keeps no key of the entry it replaces (no stale choice outlives retrained directions)."""
    return _write_fields(bundle_dir, fields, merge=False)


def _write_fields(bundle_dir: Path, fields: dict[str, Any], merge: bool) -> dict[str, Any]:
    info = _read_info(bundle_dir)
    for key, value in fields.items():
        if merge and isinstance(value, dict) and isinstance(info.get(key), dict):
            info[key] = {**info[key], **value}
        else:
            info[key] = value
    info["software"] = software_versions()
    _write_info(bundle_dir, info)
    return info


def _write_info(bundle_dir: Path, info: dict[str, Any]) -> None:
    _atomic_write_bytes(Path(bundle_dir) / BUNDLE_INFO, json.dumps(info, indent=2, sort_keys=True).encode())


def save_network(
    bundle_dir: Path,
    name: str,
    module: torch.nn.Module,
    config: Any,
    **record: Any,
) -> Path:
    """Write `<name>.safetensors` and record its config (a dataclass) and facts in `bundle.json`.

    `record` holds per-network facts such as training steps, data fingerprint or metrics; the
    weights' sha256 is recorded beside them, so the bundle's version never reads the file.
    """
    if name not in NETWORK_NAMES:
        raise BundleError(f"unknown network name {name!r}; expected one of {', '.join(NETWORK_NAMES)}")
    bundle_dir = Path(bundle_dir)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    path = bundle_dir / f"{name}.safetensors"
    with atomic_target(path) as tmp:
        save_file(tensors, tmp, metadata={"network": name})
    entry = {"config": dataclasses.asdict(config), "file": path.name, **record, DIGEST: _digest(tensors)}
    update_bundle_info(bundle_dir, networks={name: entry})
    return path


def convert_storage(bundle_dir: Path, dtype: str) -> dict[str, int]:
    """Rewrite every network file of a bundle with its floating tensors stored as `dtype`.

    Why: the shipped `small` bundle is committed to git, and float16 halves it. Loading is
    unchanged, since `load_state_dict` casts into the network's float32 parameters. Returns the
    new file sizes in bytes; `bundle.json` records the storage dtype of each network.
    """
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"unknown storage dtype {dtype!r}; choose one of {', '.join(sorted(STORAGE_DTYPES))}")
    bundle = Bundle.open(bundle_dir)
    bundle.check(bundle.networks)  # a damaged file stops the conversion before anything is rewritten
    sizes: dict[str, int] = {}
    for name, entry in bundle.networks.items():
        path = bundle.root / entry["file"]
        tensors = bundle._read(name)
        converted = {k: v.to(STORAGE_DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
        with atomic_target(path) as tmp:
            save_file(converted, tmp, metadata={"network": name})
        entry["storage_dtype"] = dtype
        sizes[name] = path.stat().st_size
    update_bundle_info(bundle.root, networks=bundle.networks)
    return sizes


def record_digests(bundle_dir: Path) -> dict[str, str]:
    """Record the weight digest of each network whose `bundle.json` entry lacks one (bundles saved before
    digests were recorded), computed from its checked file as `Bundle.digest` always has, so the
    bundle's version is unchanged. Adds only those entries (the recorded software stays); returns them."""
    bundle = Bundle.open(bundle_dir)
    missing = [name for name, entry in bundle.networks.items() if DIGEST not in entry]
    bundle.check(missing)  # a damaged file stops the upgrade before anything is written
    added = {name: bundle.digest(name) for name in missing}
    if added:
        for name, digest in added.items():
            bundle.networks[name][DIGEST] = digest
        _write_info(bundle.root, bundle.info)
    return added
