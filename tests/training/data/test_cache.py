import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model.missing import Modality
from service.features.extractor import FeatureExtractor
from training.data.cache import FeatureCache
from training.data.manifest import read_manifest

ENCODERS = Path(__file__).resolve().parents[3] / "bundle" / "encoders"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "service"))
from spoken import spoken  # noqa: E402

SAID = "I am really happy to see you all here today."  # espeak-ng says it clearly


class CountingExtractor:
    """The real extractor, counting how many samples it was asked to extract."""

    def __init__(self, inner: FeatureExtractor) -> None:
        self.inner, self.spec, self.calls = inner, inner.spec, 0

    def extract_many(self, samples):  # type: ignore[no-untyped-def]
        self.calls += len(samples)
        return self.inner.extract_many(samples)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    if not (ENCODERS / "text.json").is_file():
        pytest.fail(f"encoders not built in {ENCODERS}: run `mplmm build-encoders` first")
    return FeatureExtractor(ENCODERS)


def _manifest(tmp_path: Path) -> Path:
    sf.write(tmp_path / "ok.wav", spoken(SAID), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (tmp_path / "m.csv").write_text(
        "id,split,text,audio,label\n"
        "a,train,I love this,,positive\n"
        "b,train,,ok.wav,neutral\n"
        "c,test,so so,broken.wav,negative\n"
        "d,test,That is awful,ok.wav,negative\n",
        encoding="utf-8",
    )
    return tmp_path / "m.csv"


def test_cache_extracts_once_skips_bad_files_and_matches_direct_extraction(
    tmp_path: Path, extractor: FeatureExtractor
) -> None:
    rows = read_manifest(_manifest(tmp_path))
    counting = CountingExtractor(extractor)
    cache = FeatureCache(tmp_path / "cache", counting)
    table, failures = cache.table(rows, progress=False)
    assert [f.id for f in failures] == ["c"]
    assert failures[0].row == 3
    assert "audio" in failures[0].error
    assert table.ids == ["a", "b", "d"]
    assert table.present.tolist() == [
        [True, False, False],
        [False, True, False],
        [True, True, False],
    ]
    direct = extractor.extract(text="That is awful", audio=tmp_path / "ok.wav")
    np.testing.assert_array_equal(table.arrays[Modality.TEXT][2], direct.text[0])
    np.testing.assert_array_equal(table.arrays[Modality.AUDIO][2], direct.audio[0])
    assert not table.arrays[Modality.AUDIO][0].any()  # absent stays zero

    # A second run (a resumed one) extracts only what is not cached: the bad row again.
    calls = counting.calls
    again, failures2 = FeatureCache(tmp_path / "cache", counting).table(rows, progress=False)
    assert counting.calls - calls == 1
    assert [f.id for f in failures2] == ["c"]
    np.testing.assert_array_equal(again.arrays[Modality.TEXT], table.arrays[Modality.TEXT])


def test_transcribed_rows_get_their_speech_as_text_and_their_own_cache_entries(
    tmp_path: Path, extractor: FeatureExtractor
) -> None:
    rows = read_manifest(_manifest(tmp_path))
    plain, _ = FeatureCache(tmp_path / "cache", extractor).table(rows, progress=False)
    heard, _ = FeatureCache(tmp_path / "cache", extractor, transcribe=True).table(
        rows, progress=False
    )
    assert heard.ids == plain.ids == ["a", "b", "d"]
    # b has speech and no text: its transcript is its text; a and d keep the client text.
    assert plain.present[1].tolist() == [False, True, False]
    assert heard.present[1].tolist() == [True, True, False]
    got = heard.arrays[Modality.TEXT][1]
    # Some espeak-ng builds make Whisper hear "I'm": either way, the sentence spoken.
    cos = max(
        float((got * said).sum() / np.linalg.norm(got) / np.linalg.norm(said))
        for said in (extractor.extract(text=t).text[0] for t in (SAID, SAID.replace("I am", "I'm")))
    )
    assert cos > 0.95  # the transcript is (nearly) the sentence spoken
    np.testing.assert_array_equal(heard.arrays[Modality.TEXT][2], plain.arrays[Modality.TEXT][2])
    np.testing.assert_array_equal(heard.arrays[Modality.AUDIO], plain.arrays[Modality.AUDIO])


def test_augmented_copies_are_audio_only_seeded_cached_and_differ_from_the_clean_clip(
    tmp_path: Path, extractor: FeatureExtractor
) -> None:
    from training.augment import Augmentation
    from training.data.cache import augmented_wav, copy_seed

    rows = [r for r in read_manifest(_manifest(tmp_path)) if r.id in ("a", "b", "d")]
    aug = Augmentation(copies=2, max_chain=2)
    counting = CountingExtractor(extractor)
    cache = FeatureCache(tmp_path / "cache", counting, transcribe=True)
    table, failures = cache.augmented(rows, aug, seed=7, progress=False)
    assert failures == []
    # Row a has no audio; b and d have the same clip but their own seeds.
    assert table.ids == ["b~aug0", "b~aug1", "d~aug0", "d~aug1"]
    assert table.labels.tolist() == ["neutral", "neutral", "negative", "negative"]
    assert table.present.tolist() == [[False, True, False]] * 4  # never transcribed
    copies = table.arrays[Modality.AUDIO]
    clean = extractor.extract(audio=tmp_path / "ok.wav").audio[0]
    for k in range(4):
        assert not np.array_equal(copies[k], clean)
    assert len({copies[k].tobytes() for k in range(4)}) == 4
    # The copy is what augmenting with its seed and extracting gives.
    direct = extractor.extract(
        audio=augmented_wav(tmp_path / "ok.wav", aug, copy_seed(7, "b", 1))
    ).audio[0]
    np.testing.assert_array_equal(copies[1], direct)

    # Cached: a second run extracts nothing; another seed or other ranges extract again.
    calls = counting.calls
    again, _ = cache.augmented(rows, aug, seed=7, progress=False)
    assert counting.calls == calls
    np.testing.assert_array_equal(again.arrays[Modality.AUDIO], copies)
    cache.augmented(rows, aug, seed=8, progress=False)
    assert counting.calls == calls + 4
    cache.augmented(rows, Augmentation(2, 2, {"noise": (0.0, 5.0)}), seed=7, progress=False)
    assert counting.calls == calls + 8
