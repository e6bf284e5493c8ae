"""Settings from the environment and the pseudonym key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from indexing.ingest.metadata import pseudonymize
from indexing.settings import Settings, SettingsError


def test_defaults_live_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'archive.sqlite3'}"
    custom = Settings.from_env({"S2M_DATA_DIR": str(tmp_path / "x"), "S2M_DATABASE_URL": "postgresql+psycopg2://h/db",
                                "S2M_MAX_IMAGE_PIXELS": "100", "S2M_INGEST_BATCH_SIZE": "7"})
    assert (custom.data_dir, custom.database_url) == (tmp_path / "x", "postgresql+psycopg2://h/db")
    assert (custom.max_image_pixels, custom.ingest_batch_size) == (100, 7)


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bad_limits_are_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="S2M_MAX_FILE_BYTES"):
        Settings.from_env({"S2M_MAX_FILE_BYTES": value})


def test_generated_key_is_private_stable_and_keys_the_pseudonyms(tmp_path: Path) -> None:
    settings = Settings.from_env({"S2M_DATA_DIR": str(tmp_path)})
    key = settings.resolve_pseudonym_key()
    key_file = tmp_path / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Settings.from_env({"S2M_DATA_DIR": str(tmp_path)}).resolve_pseudonym_key() == key
    explicit = Settings.from_env({"S2M_DATA_DIR": str(tmp_path), "S2M_PSEUDONYM_KEY": "other"}).resolve_pseudonym_key()
    assert pseudonymize(key, "MRN-1", 16) == pseudonymize(key, "MRN-1", 16)
    assert pseudonymize(key, "MRN-1", 16) != pseudonymize(explicit, "MRN-1", 16)
    assert pseudonymize(key, "MRN-1", 16) != pseudonymize(key, "MRN-2", 16)
