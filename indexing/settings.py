"""Archive settings, read once from the environment into a frozen dataclass.

Environment variables (all optional):
- `S2M_DATA_DIR`: where the archive keeps its files (image store, SQLite file, pseudonym key).
  Default: `./data` under the current directory, so a checkout keeps its data beside the code
  (git-ignored) and a deployment sets it explicitly.
- `S2M_DATABASE_URL`: SQLAlchemy URL. Default: `sqlite:///<data dir>/archive.sqlite3` (embedded,
  nothing to start); production uses `postgresql+psycopg2://user@host/db`.
- `S2M_PSEUDONYM_KEY`: the secret that keys patient pseudonyms. Unset: a random key is generated
  into `<data dir>/pseudonym.key` on the first ingest of an empty archive and reused afterwards
  (back it up with the data dir: an archive with rows refuses to make a new one).
- `S2M_MAX_IMAGE_PIXELS`, `S2M_MAX_FILE_BYTES`, `S2M_INGEST_BATCH_SIZE`: ingest limits.
- `S2M_INGEST_BATCH_PIXELS`: decoded pixels one ingest batch may hold (bounds its memory at about
  this many x 3 bytes x a small factor, whatever the image sizes); a batch closes at whichever of
  the image count or the pixel count it reaches first.
- `S2M_QUERIES_MAX_AGE_DAYS`: how many days the searches (query log rows, their vectors and pictures)
  are kept before `s2m queries prune` removes them (default 30; a saved search's query is kept until
  it is forgotten).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from formats.errors import InputError

DEFAULT_MAX_IMAGE_SIDE = 8192
DEFAULT_MAX_FILE_MIB = 256
DEFAULT_INGEST_BATCH_SIZE = 200
DEFAULT_INGEST_BATCH_PIXELS = 64 * 1024 * 1024  # ~200 MB of RGB: one 8192x8192 photo or 16k 64-px ones
DEFAULT_PSEUDONYM_HEX_CHARS = 16
DEFAULT_QUERIES_MAX_AGE_DAYS = 30
PSEUDONYM_KEY_BYTES = 32
PSEUDONYM_KEY_FILE = "pseudonym.key"
SQLITE_FILE = "archive.sqlite3"


class SettingsError(InputError):
    """An environment variable holds a value the archive cannot use."""


def positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
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
    ingest_batch_pixels: int = DEFAULT_INGEST_BATCH_PIXELS
    pseudonym_hex_chars: int = DEFAULT_PSEUDONYM_HEX_CHARS
    queries_max_age_days: int = DEFAULT_QUERIES_MAX_AGE_DAYS

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
            max_image_pixels=positive_int(env, "S2M_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_SIDE * DEFAULT_MAX_IMAGE_SIDE),
            max_file_bytes=positive_int(env, "S2M_MAX_FILE_BYTES", DEFAULT_MAX_FILE_MIB * 1024 * 1024),
            ingest_batch_size=positive_int(env, "S2M_INGEST_BATCH_SIZE", DEFAULT_INGEST_BATCH_SIZE),
            ingest_batch_pixels=positive_int(env, "S2M_INGEST_BATCH_PIXELS", DEFAULT_INGEST_BATCH_PIXELS),
            queries_max_age_days=positive_int(env, "S2M_QUERIES_MAX_AGE_DAYS", DEFAULT_QUERIES_MAX_AGE_DAYS),
        )

    @property
    def pseudonym_key_path(self) -> Path:
        return self.data_dir / PSEUDONYM_KEY_FILE

    def existing_pseudonym_key(self) -> bytes | None:
        """The pseudonym key if one exists (environment or key file), never creating one: what a filter
        that pseudonymises a typed patient ID needs (no key means no image was ever pseudonymised)."""
        if self.pseudonym_key:
            return self.pseudonym_key
        return self.resolve_pseudonym_key() if self.pseudonym_key_path.exists() else None

    def resolve_pseudonym_key(self) -> bytes:
        """The pseudonym key: from the environment, else the data dir's key file (created once, 0600).

        The file is written whole under a temporary name and linked into place, so a kill never
        leaves an empty key and two first ingests agree on one key. Whether an archive may get a
        new key at all is `Archive.pseudonym_key`'s decision."""
        if self.pseudonym_key:
            return self.pseudonym_key
        path = self.pseudonym_key_path
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.data_dir, prefix=".tmp-key-")  # mode 0600
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(PSEUDONYM_KEY_BYTES))
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temporary, path)  # atomic, and fails if another process linked first
                except FileExistsError:
                    pass  # use theirs
            finally:
                os.unlink(temporary)
            directory = os.open(self.data_dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        key = path.read_text().strip()
        if not key:
            raise SettingsError(
                f"the pseudonym key file {path} is empty: restore it from a backup of the data dir "
                "or set S2M_PSEUDONYM_KEY to the key"
            )
        return key.encode("utf-8")
