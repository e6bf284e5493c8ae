"""Archive settings, read once from the environment into a frozen dataclass.

Environment variables (all optional):
- `S2M_DATA_DIR`: where the archive keeps its files (image store, SQLite file, pseudonym key).
  Default: `./data` under the current directory, so a checkout keeps its data beside the code
  (git-ignored) and a deployment sets it explicitly.
- `S2M_DATABASE_URL`: SQLAlchemy URL. Default: `sqlite:///<data dir>/archive.sqlite3` (embedded,
  nothing to start); production uses `postgresql+psycopg2://user@host/db`.
- `S2M_PSEUDONYM_KEY`: the secret that keys patient pseudonyms. Unset: a random key is generated
  into `<data dir>/pseudonym.key` on first use and reused afterwards.
- `S2M_MAX_IMAGE_PIXELS`, `S2M_MAX_FILE_BYTES`, `S2M_INGEST_BATCH_SIZE`: ingest limits.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from formats.errors import InputError

DEFAULT_MAX_IMAGE_SIDE = 8192
DEFAULT_MAX_FILE_MIB = 256
DEFAULT_INGEST_BATCH_SIZE = 200
DEFAULT_PSEUDONYM_HEX_CHARS = 16
PSEUDONYM_KEY_BYTES = 32
PSEUDONYM_KEY_FILE = "pseudonym.key"
SQLITE_FILE = "archive.sqlite3"


class SettingsError(InputError):
    """An environment variable holds a value the archive cannot use."""


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}") from error
    if value <= 0:
        raise SettingsError(f"{name} must be a positive integer, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where the archive lives and the limits ingest enforces."""

    data_dir: Path
    database_url: str
    pseudonym_key: bytes | None = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_SIDE * DEFAULT_MAX_IMAGE_SIDE
    max_file_bytes: int = DEFAULT_MAX_FILE_MIB * 1024 * 1024
    ingest_batch_size: int = DEFAULT_INGEST_BATCH_SIZE
    pseudonym_hex_chars: int = DEFAULT_PSEUDONYM_HEX_CHARS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from `environ` (default `os.environ`); relative paths resolve against the cwd."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("S2M_DATA_DIR") or "data").expanduser().resolve()
        database_url = env.get("S2M_DATABASE_URL") or f"sqlite:///{data_dir / SQLITE_FILE}"
        key = env.get("S2M_PSEUDONYM_KEY")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            pseudonym_key=key.encode("utf-8") if key else None,
            max_image_pixels=_positive_int(env, "S2M_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_SIDE * DEFAULT_MAX_IMAGE_SIDE),
            max_file_bytes=_positive_int(env, "S2M_MAX_FILE_BYTES", DEFAULT_MAX_FILE_MIB * 1024 * 1024),
            ingest_batch_size=_positive_int(env, "S2M_INGEST_BATCH_SIZE", DEFAULT_INGEST_BATCH_SIZE),
        )

    def resolve_pseudonym_key(self) -> bytes:
        """The pseudonym key: from the environment, else the data dir's key file (created once, 0600)."""
        if self.pseudonym_key:
            return self.pseudonym_key
        path = self.data_dir / PSEUDONYM_KEY_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first; use theirs
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(PSEUDONYM_KEY_BYTES))
        key = path.read_text().strip()
        if not key:
            raise SettingsError(f"the pseudonym key file {path} is empty; delete it or set S2M_PSEUDONYM_KEY")
        return key.encode("utf-8")
