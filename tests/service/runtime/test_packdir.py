"""The shared packs directory: names, versions, the CURRENT pointer, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import InvalidPackNameError
from service.runtime.packdir import PackDir, check_pack_name, check_version, version_key


def write(root: Path, name: str, version: str) -> Path:
    d = root / name / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{}")
    (d / "pack.safetensors").write_bytes(b"x")
    return d


@pytest.mark.parametrize("name", ["sentiment", "a", "emo_2", "x-y", "0abc"])
def test_good_pack_names(name: str) -> None:
    assert check_pack_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "A", "-a", "_a", "a" * 65, "a b"])
def test_bad_pack_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidPackNameError, match="invalid pack name"):
        check_pack_name(name)


@pytest.mark.parametrize("version", ["..", "1..2", "../1", "a/b", "", ".hidden"])
def test_bad_versions_are_refused(version: str) -> None:
    with pytest.raises(InvalidPackNameError, match="invalid pack version"):
        check_version(version)


def test_versions_sort_naturally() -> None:
    assert sorted(["1.10.0", "1.9.2", "1.2", "2"], key=version_key) == [
        "1.2",
        "1.9.2",
        "1.10.0",
        "2",
    ]


def test_current_is_the_pointer_else_the_highest_version(tmp_path: Path) -> None:
    pd = PackDir(tmp_path)
    write(tmp_path, "sentiment", "1.9.0")
    write(tmp_path, "sentiment", "1.10.0")
    (tmp_path / "sentiment" / ".tmp-2.0.0-abc").mkdir()  # an upload in progress: ignored
    loc = pd.current("sentiment")
    assert loc is not None
    assert loc.version == "1.10.0"
    pd.set_current("sentiment", "1.9.0")
    loc = pd.current("sentiment")
    assert loc is not None
    assert loc.version == "1.9.0"
    assert loc.path == tmp_path / "sentiment" / "1.9.0"
    assert pd.current("missing") is None
    assert pd.versions("sentiment") == ["1.9.0", "1.10.0"]


def test_a_pointer_to_a_missing_version_falls_back(tmp_path: Path) -> None:
    pd = PackDir(tmp_path)
    write(tmp_path, "emotion", "1")
    (tmp_path / "emotion" / "CURRENT").write_text("7\n")
    loc = pd.current("emotion")
    assert loc is not None
    assert loc.version == "1"


def test_stage_commit_and_conflict(tmp_path: Path) -> None:
    pd = PackDir(tmp_path)
    staged = pd.stage("emotion", "2", b'{"name": "emotion"}', b"weights")
    assert staged.name.startswith(".tmp-2-")
    assert pd.versions("emotion") == []  # invisible until committed
    loc = pd.commit(staged, "emotion", "2")
    assert (loc.path / "pack.safetensors").read_bytes() == b"weights"
    assert pd.versions("emotion") == ["2"]
    again = pd.stage("emotion", "2", b"{}", b"other")
    with pytest.raises(FileExistsError):
        pd.commit(again, "emotion", "2")
    pd.abandon(again)
    assert sorted(p.name for p in (tmp_path / "emotion").iterdir()) == ["2"]


def test_remove_pack(tmp_path: Path) -> None:
    pd = PackDir(tmp_path)
    write(tmp_path, "emotion", "1")
    pd.remove_pack("emotion")
    assert pd.names() == []
    assert list(tmp_path.iterdir()) == []


def test_seed_copies_the_bundle_versions_the_dir_lacks_and_touches_nothing_else(
    tmp_path: Path,
) -> None:
    bundle, shared = tmp_path / "bundle", tmp_path / "shared"
    write(bundle, "sentiment", "1")
    write(bundle, "sentiment", "2")
    write(bundle, "emotion", "1")
    copied = PackDir(shared).seed_from(bundle)
    assert sorted((c.name, c.version) for c in copied) == [("emotion", "1"), ("sentiment", "2")]
    assert PackDir(shared).versions("sentiment") == ["2"]
    assert PackDir(shared).seed_from(bundle) == []  # nothing lacking: nothing copied
    # An upload that differs from the bundle's version of the same name is kept as it is.
    (shared / "emotion" / "1" / "manifest.json").write_text('{"uploaded": true}')
    # A newer image: a newer default version and a new default pack are added.
    write(bundle, "sentiment", "3")
    write(bundle, "sarcasm", "1")
    copied = PackDir(shared).seed_from(bundle)
    assert sorted((c.name, c.version) for c in copied) == [("sarcasm", "1"), ("sentiment", "3")]
    assert PackDir(shared).versions("sentiment") == ["2", "3"]
    assert (shared / "emotion" / "1" / "manifest.json").read_text() == '{"uploaded": true}'
    assert PackDir(shared).seed_from(shared) == []  # never onto itself
