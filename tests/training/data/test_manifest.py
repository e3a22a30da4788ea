from pathlib import Path

import pytest

from training.data.manifest import ManifestError, Split, read_manifest, write_manifest


@pytest.fixture
def media(tmp_path: Path) -> Path:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    return tmp_path


def test_csv_round_trips_through_jsonl(media: Path) -> None:
    csv_path = media / "m.csv"
    csv_path.write_text(
        "id,split,text,audio,video,label\n"
        "u1,train,hello there,,,positive\n"
        "u2,test,,a.wav,,negative\n",
        encoding="utf-8",
    )
    rows = read_manifest(csv_path, labels=("negative", "neutral", "positive"))
    assert [r.id for r in rows] == ["u1", "u2"]
    assert rows[0].text == "hello there"
    assert rows[0].audio is None
    assert rows[1].audio == media / "a.wav"
    assert rows[1].split is Split.TEST
    out = write_manifest(rows, media / "out" / "m.jsonl")
    again = read_manifest(out)
    assert [(r.id, r.split, r.label, r.text, r.audio) for r in again] == [
        (r.id, r.split, r.label, r.text, r.audio) for r in rows
    ]


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ("id,split,text\nu1,train,hi\n", ".csv", r"m\.csv: missing columns \['label'\]"),
        ("id,split,text,label\nu1,train,hi,happyish\n", ".csv", r"row 1: unknown label 'happyish'"),
        (
            "id,split,text,label\nu1,holdout,hi,positive\n",
            ".csv",
            r"row 1: unknown split 'holdout'",
        ),
        (
            "id,split,audio,label\nu1,train,nope.wav,positive\n",
            ".csv",
            r"row 1: audio file does not exist",
        ),
        ("id,split,text,label\nu1,train,,positive\n", ".csv", r"row 1: no text, audio or video"),
        (
            "id,split,text,label\nu1,train,a,positive\nu1,train,b,positive\n",
            ".csv",
            r"row 2: duplicate id 'u1'",
        ),
        (
            '{"id": "u1", "split": "train", "text": "x", "label": "positive"}\n{oops\n',
            ".jsonl",
            r"row 2: invalid JSON",
        ),
        ("", ".txt", r"unknown manifest format '\.txt'"),
    ],
)
def test_bad_manifests_name_file_row_and_problem(
    media: Path, content: str, suffix: str, match: str
) -> None:
    path = media / f"m{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        read_manifest(path, labels=("negative", "neutral", "positive"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    class Boom:
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield from ()
            raise RuntimeError("interrupted")

    target = tmp_path / "m.jsonl"
    with pytest.raises(RuntimeError):
        write_manifest(Boom(), target)  # type: ignore[arg-type]
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
