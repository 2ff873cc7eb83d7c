from pathlib import Path

import pytest

from dehazelab import paths


def test_root_is_the_repository():
    assert (paths.ROOT / "pyproject.toml").is_file()
    assert (paths.ROOT / "Snakefile").is_file()


def test_results_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path))
    assert paths.results_dir() == tmp_path.resolve()
    monkeypatch.delenv(paths.RESULTS_ENV)
    assert paths.results_dir() == paths.ROOT / "results"


def test_results_do_not_depend_on_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.results_dir() == paths.ROOT / "results"


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert paths.data_root() == tmp_path.resolve()
    monkeypatch.setenv(paths.DATA_ENV, "")
    assert paths.data_root() is None
    with pytest.raises(FileNotFoundError, match="no benchmark data"):
        paths.data_root(required=True)


def test_data_root_missing_folder_is_an_error(monkeypatch, tmp_path):
    missing = tmp_path / "nope"
    monkeypatch.setenv(paths.DATA_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="nope"):
        paths.data_root()


def test_data_root_default(monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    shared = (paths.ROOT / ".." / "shared" / "data").resolve()
    assert paths.data_root() == (shared if shared.is_dir() else None)
