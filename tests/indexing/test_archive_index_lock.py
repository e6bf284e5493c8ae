"""One index build or refresh at a time per archive: a second is one sentence and exit 2, and stores nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from api.cli import app
from archive_faults import archive_env, one_line_error, take_snapshot
from indexing.archive import Archive
from indexing.locks import index_build_lock


@pytest.mark.parametrize("command", [("index", "build"), ("index", "refresh")])
def test_a_second_index_build_while_one_runs_is_one_sentence_and_changes_nothing(
    archive: Archive, command: tuple[str, ...]
) -> None:
    before = take_snapshot(archive)
    with index_build_lock(archive.engine, archive.settings.data_dir):  # the first build, still running
        result = CliRunner().invoke(app, [*command, "--no-progress"], env=archive_env(archive))
    assert result.exit_code == 2, result.output
    assert one_line_error(result.output) == (
        "error: another `s2m index build` or `s2m index refresh` is running on this archive: "
        "wait for it to finish, then run this again"
    )
    assert take_snapshot(archive) == before
    with index_build_lock(archive.engine, archive.settings.data_dir):  # released: the next one may run
        pass
