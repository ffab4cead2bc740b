"""DVC versions data/: the sample files, the committed data.dvc, and a real push / pull.

The slow tests run the real ``dvc`` and ``fcos`` executables of the venv in temporary git
repositories, with DVC's global/system config and site cache moved into the temporary
directory so that nothing outside it is read or written.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fcos.data import load_source, synthesize
from fcos.data.formats import SAMPLE_FRAMES, SAMPLE_SNRS, SIG2019_DIR, write_format_samples
from fcos.data.loaders import DatasetSubsetWarning
from fcos.data.specs import DATASETS
from fcos.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLES = Path("data") / "samples"  # where the committed data.dvc expects the samples
MAX_DATA_BYTES = 3 * 1024 * 1024


def run(name: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """Run a venv executable (``dvc``, ``fcos``) or ``git`` in ``cwd``; fail with its output."""
    isolated = cwd.parent / "dvc-home"
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(isolated / "global"),
        DVC_SYSTEM_CONFIG_DIR=str(isolated / "system"),
        DVC_SITE_CACHE_DIR=str(isolated / "site-cache"),
    )
    exe = str(BIN / name) if (BIN / name).exists() else name
    proc = subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def new_dvc_repo(path: Path) -> Path:
    """An empty git repository with DVC initialised the way the project's is (analytics off)."""
    path.mkdir(parents=True)
    run("git", "init", "-q", cwd=path)
    run("dvc", "init", "-q", cwd=path)
    run("dvc", "config", "core.analytics", "false", cwd=path)
    return path


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, keyed by its relative path."""
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def tracked_out(dvc_file: Path) -> dict:
    """The single output recorded in a .dvc file: md5, size, nfiles, path."""
    outs = yaml.safe_load(dvc_file.read_text())["outs"]
    assert len(outs) == 1, f"{dvc_file}: expected one output, got {outs}"
    return {key: outs[0].get(key) for key in ("md5", "size", "nfiles", "path")}


# -------------------------------------------------------------------------- real dvc runs


@pytest.mark.slow
def test_push_delete_pull_round_trips_the_bytes(tmp_path):
    repo = new_dvc_repo(tmp_path / "repo")
    remote = tmp_path / "remote"
    write_format_samples(repo / SAMPLES)
    originals = file_hashes(repo / "data")

    run("dvc", "add", "data", cwd=repo)
    assert "/data" in (repo / ".gitignore").read_text().splitlines()
    run("dvc", "remote", "add", "-d", "scratch", remote, cwd=repo)
    run("dvc", "push", cwd=repo)
    # one object per file plus the directory listing
    assert sum(1 for p in remote.rglob("*") if p.is_file()) == len(originals) + 1

    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run("dvc", "pull", cwd=repo)
    assert file_hashes(repo / "data") == originals
    assert "up to date" in run("dvc", "status", cwd=repo).stdout


#: What ``dvc add data`` records for a data/ holding only ``fcos samples``'s files: the data.dvc
#: the project ships. Pinned here rather than read from the checkout, whose data.dvc a lab
#: changes when it adds its real files (data/raw/), so the test means the same in any checkout.
SAMPLES_DVC_RECORD = {"md5": "e26e3a8142f00de999bf49affc16e8b8.dir", "size": 2200841,
                      "nfiles": 6, "path": "data"}


@pytest.mark.slow
def test_fcos_samples_regenerates_the_shipped_data_dvc(tmp_path):
    repo = new_dvc_repo(tmp_path / "repo")
    run("fcos", "samples", "--out", SAMPLES, cwd=repo)
    run("dvc", "add", "data", cwd=repo)
    assert tracked_out(repo / "data.dvc") == SAMPLES_DVC_RECORD, (
        "the sample files no longer give the shipped data.dvc: if the change is intended, run "
        "`fcos samples --out data/samples && dvc add data && dvc push`, commit data.dvc and "
        "update SAMPLES_DVC_RECORD")


def test_repository_data_dvc_tracks_the_data_directory():
    # One directory output named data (the samples, plus any real files a lab added).
    record = tracked_out(ROOT / "data.dvc")
    assert record["path"] == "data" and record["md5"].endswith(".dir")
    assert record["nfiles"] >= SAMPLES_DVC_RECORD["nfiles"]


def test_repository_dvc_config_is_offline():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert config.get("core", "analytics") == "false"
    remote = config.get("core", "remote")
    # DVC writes section names quoted, as configobj does: ['remote "local"']
    sections = {name.strip("'"): name for name in config.sections()}
    url = config.get(sections[f'remote "{remote}"'], "url")
    # a relative local directory: works offline, in any clone, with no credentials
    assert "://" not in url and not os.path.isabs(url), url
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/data" in ignored
    # the remote directory (relative to .dvc/) must not end up in git
    remote_dir = (ROOT / ".dvc" / url).resolve()
    if remote_dir.is_relative_to(ROOT):
        assert f"/{remote_dir.relative_to(ROOT).as_posix()}/" in ignored


# -------------------------------------------------------------------------- the samples


def test_samples_are_small_subsets_that_the_loaders_read_back(tmp_path):
    written = write_format_samples(tmp_path)
    assert sum(p.stat().st_size for p in written) < MAX_DATA_BYTES
    sources = {
        "rml2016": tmp_path / DATASETS["rml2016"].official_file,
        "rml2018": tmp_path / DATASETS["rml2018"].official_file,
        "sig2019": tmp_path / SIG2019_DIR,
    }
    for name, source in sources.items():
        with pytest.warns(DatasetSubsetWarning):
            raw = load_source(name, source, progress=False)
        assert raw.warnings and "differs from the official" in raw.warnings[0]
        # the format writers keep every value and the synthetic order (class, SNR, frame)
        expected = synthesize(name, SAMPLE_FRAMES, 0, snrs=SAMPLE_SNRS[name])
        np.testing.assert_array_equal(raw.x, expected.x)
        np.testing.assert_array_equal(raw.y, expected.y)
        np.testing.assert_array_equal(raw.snr, expected.snr)
        with pytest.raises(DataError, match="strict mode refuses"):
            load_source(name, source, strict=True, progress=False)


def test_samples_are_byte_deterministic(tmp_path):
    write_format_samples(tmp_path / "a")
    write_format_samples(tmp_path / "b")
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    other_seed = file_hashes(write_format_samples(tmp_path / "c", seed=1)[0].parent)
    assert other_seed != file_hashes(tmp_path / "a")
