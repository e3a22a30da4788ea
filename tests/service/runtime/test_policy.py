"""The pack's say in a request, one pure function at a time (service/runtime/policy.py)."""

from __future__ import annotations

import numpy as np
import pytest

from model.config import Task
from model.expressions import FACE_EXPRESSIONS, expression_matrix
from model.missing import MissingType, Modality
from service.errors import AsrOffError, NoUsableModalityError
from service.features.types import AbsentReason, ModalityResult, Sample, SampleFeatures
from service.runtime import policy
from service.settings import AsrMode

T, A, V = Modality.TEXT, Modality.AUDIO, Modality.VIDEO
SHAPES = {T: (4, 3), A: (5, 2), V: (6, 2)}


def row(**present: bool) -> SampleFeatures:
    """Features with the named modalities present (ones, with a detail), others not_sent."""
    results = {}
    for m, (length, dim) in SHAPES.items():
        if present.get(m.value):
            feats = np.ones((length, dim), np.float32)
            results[m] = ModalityResult.of(m, feats, np.ones(length, bool), {"n": 1}, {})
        else:
            results[m] = ModalityResult.absent(m, length, dim, AbsentReason.NOT_SENT)
    return SampleFeatures(results)


# ------------------------------------------------------------------ inputs_to_extract


def test_only_what_the_pack_reads_is_extracted() -> None:
    sent = Sample(text="hi", audio=b"a", video=b"v")
    assert policy.inputs_to_extract(sent, frozenset({T, A, V})) == sent
    assert policy.inputs_to_extract(sent, frozenset({T})) == Sample(text="hi")
    assert policy.inputs_to_extract(sent, frozenset({A})) == Sample(audio=b"a")


def test_a_video_is_decoded_for_its_audio_track_when_no_audio_was_sent() -> None:
    text_audio = frozenset({T, A})
    assert policy.inputs_to_extract(Sample(video=b"v"), text_audio) == Sample(video=b"v")
    # With a separate audio file, the video has nothing to give this pack.
    both = Sample(audio=b"a", video=b"v")
    assert policy.inputs_to_extract(both, text_audio) == Sample(audio=b"a")
    # A text-only pack never needs the video, track or not, unless it reads faces.
    assert policy.inputs_to_extract(Sample(video=b"v"), frozenset({T})) == Sample()
    faces = policy.inputs_to_extract(Sample(video=b"v"), frozenset({T}), reads_faces=True)
    assert faces == Sample(video=b"v")


def test_speech_to_transcribe_is_extracted_even_for_a_text_only_pack() -> None:
    text_only = frozenset({T})
    audio = policy.inputs_to_extract(Sample(audio=b"a"), text_only, transcribe=True)
    assert audio == Sample(audio=b"a", transcribe=True)
    track = policy.inputs_to_extract(Sample(video=b"v"), text_only, transcribe=True)
    assert track == Sample(video=b"v", transcribe=True)


# ------------------------------------------------------------------ should_transcribe


@pytest.mark.parametrize(
    ("mode", "requested", "sample", "trained", "want"),
    [
        # auto: speech without text, for a pack that reads text
        (AsrMode.AUTO, None, Sample(audio=b"a"), frozenset({T, A}), True),
        (AsrMode.AUTO, None, Sample(video=b"v"), frozenset({T, A}), True),
        (AsrMode.AUTO, None, Sample(audio=b"a"), frozenset({A}), False),
        (AsrMode.AUTO, False, Sample(audio=b"a"), frozenset({T, A}), False),
        (AsrMode.AUTO, True, Sample(audio=b"a"), frozenset({A}), True),
        # on: whatever the pack reads, unless the request says no
        (AsrMode.ON, None, Sample(audio=b"a"), frozenset({A}), True),
        (AsrMode.ON, False, Sample(audio=b"a"), frozenset({T, A}), False),
        # never over client text, never without media
        (AsrMode.ON, True, Sample(text="hi", audio=b"a"), frozenset({T, A}), False),
        (AsrMode.AUTO, True, Sample(text="hi"), frozenset({T, A}), False),
        # off: never
        (AsrMode.OFF, None, Sample(audio=b"a"), frozenset({T, A}), False),
        (AsrMode.OFF, False, Sample(audio=b"a"), frozenset({T, A}), False),
    ],
)
def test_when_speech_is_transcribed(
    mode: AsrMode, requested: bool | None, sample: Sample, trained: frozenset, want: bool
) -> None:
    assert policy.should_transcribe(mode, requested, sample, trained) is want


def test_asking_a_server_with_asr_off_for_a_transcript_is_an_error() -> None:
    with pytest.raises(AsrOffError, match="MPLMM_ASR=off") as exc:
        policy.should_transcribe(AsrMode.OFF, True, Sample(audio=b"a"), frozenset({T, A}))
    assert exc.value.http_status == 422
    assert exc.value.code.value == "asr_off"


# ------------------------------------------------------------------ apply_pack


def test_a_modality_the_pack_never_learnt_is_dropped_with_its_reason() -> None:
    sent = Sample(text="hi", video=b"v")
    out = policy.apply_pack(sent, row(text=True, video=True), frozenset({T, A}))
    assert out[V].present is False
    assert out[V].reason == AbsentReason.NOT_TRAINED_FOR_PACK.value == "not_trained_for_pack"
    assert out[V].details == {"n": 1}  # what was computed is still reported
    assert not out[V].features.any()
    assert not out[V].mask.any()
    assert out[T].present
    assert out[T].details == {"n": 1}
    assert out[A].reason == "not_sent"


def test_an_audio_track_found_for_a_pack_without_audio_is_dropped() -> None:
    # Not sent as audio, but extracted from the video: still not for this pack.
    out = policy.apply_pack(Sample(video=b"v"), row(audio=True, video=True), frozenset({V}))
    assert out[A].reason == "not_trained_for_pack"
    assert out[V].present


def test_an_untrained_modality_nobody_sent_stays_not_sent() -> None:
    out = policy.apply_pack(Sample(text="hi"), row(text=True), frozenset({T}))
    assert (out[A].reason, out[V].reason) == ("not_sent", "not_sent")


# ------------------------------------------------------------------ missing_type_of


@pytest.mark.parametrize(
    ("present", "want"),
    [
        ({"text": True, "audio": True, "video": True}, MissingType.FULL),
        ({"text": True, "audio": True}, MissingType.NO_VIDEO),
        ({"audio": True}, MissingType.AUDIO_ONLY),
        ({"video": True}, MissingType.VIDEO_ONLY),
    ],
)
def test_missing_type_follows_presence(present: dict[str, bool], want: MissingType) -> None:
    assert policy.missing_type_of(row(**present), "p", frozenset({T, A, V})) is want


def test_no_usable_modality_says_why_and_what_the_pack_reads() -> None:
    dropped = policy.apply_pack(Sample(video=b"v"), row(video=True), frozenset({T, A}))
    with pytest.raises(NoUsableModalityError) as err:
        policy.missing_type_of(dropped, "emotion", frozenset({T, A}))
    assert err.value.http_status == 422
    assert err.value.message == (
        "no usable modality for pack emotion (text: not_sent, audio: not_sent, video: "
        "not_trained_for_pack); send at least one modality the pack was trained on "
        "(text, audio) with usable content"
    )


# ------------------------------------------------------------------ decoding the output


def test_softmax_is_a_stable_distribution() -> None:
    p = policy.softmax(np.array([[1000.0, 1000.0, 990.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p.sum(axis=1), [1.0, 1.0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    assert p[0, 0] == p[0, 1] > p[0, 2] > 0


@pytest.mark.parametrize(
    ("labels", "score", "want"),
    [
        (("negative", "positive"), -0.01, "negative"),
        (("negative", "positive"), 0.0, "positive"),  # zero counts as positive (MOSI Acc-2)
        (("negative", "positive"), 2.5, "positive"),
        (("vneg", "neg", "neu", "pos", "vpos"), 0.0, "neu"),
        (("vneg", "neg", "neu", "pos", "vpos"), -1.2, "neg"),
        (("vneg", "neg", "neu", "pos", "vpos"), 1.6, "vpos"),
        (("vneg", "neg", "neu", "pos", "vpos"), -9.0, "vneg"),  # clipped to the scale
        ((), -0.5, "negative"),
    ],
)
def test_regression_label(labels: tuple[str, ...], score: float, want: str) -> None:
    assert policy.regression_label(labels, score) == want


def test_decode_classification_and_regression_rows() -> None:
    labels = ("negative", "neutral", "positive")
    answer = policy.decode_output(Task.CLASSIFICATION, labels, np.array([0.0, 2.0, 1.0]))
    assert answer.label == "neutral"
    assert answer.score is None
    assert answer.scores is not None
    assert list(answer.scores) == list(labels)
    assert answer.scores["neutral"] == pytest.approx(np.exp(2) / (1 + np.exp(2) + np.exp(1)))
    reg = policy.decode_output(Task.REGRESSION, ("negative", "positive"), np.array([-0.25]))
    assert (reg.label, reg.score, reg.scores) == ("negative", -0.25, None)


# ------------------------------------------------------------------ face_answer

SENTIMENT = ("negative", "neutral", "positive")
VALENCE = {
    "angry": "negative", "disgust": "negative", "fear": "negative", "happy": "positive",
    "sad": "negative", "surprise": {"negative": 0.5, "positive": 0.5}, "neutral": "neutral",
}  # fmt: skip


def face_row(**expression_mean: float) -> tuple[SampleFeatures, ModalityResult]:
    """A request whose only usable modality was a face video the pack never learnt."""
    means = {e: 0.0 for e in FACE_EXPRESSIONS} | expression_mean
    features = row(video=True)
    video = ModalityResult.of(
        V, features[V].features, features[V].mask, {"expression_mean": means}, {}
    )
    features = features.with_results({V: video})
    dropped = policy.apply_pack(Sample(video=b"v"), features, frozenset({T, A}))
    return dropped, video


def test_a_face_answers_through_the_pack_map() -> None:
    matrix = expression_matrix(VALENCE, Task.CLASSIFICATION, SENTIMENT)
    dropped, video = face_row(happy=0.7, surprise=0.2, sad=0.1)
    answer = policy.face_answer(dropped, video, Task.CLASSIFICATION, SENTIMENT, matrix)
    assert answer is not None
    assert answer.label == "positive"
    assert answer.scores == pytest.approx({"negative": 0.2, "neutral": 0.0, "positive": 0.8})
    assert answer.score is None


def test_a_regression_map_gives_a_score() -> None:
    scores = dict.fromkeys(FACE_EXPRESSIONS, -1.0) | {"happy": 1.0, "neutral": 0.0}
    matrix = expression_matrix(scores, Task.REGRESSION, ("negative", "positive"))
    dropped, video = face_row(happy=0.25, angry=0.75)
    answer = policy.face_answer(dropped, video, Task.REGRESSION, ("negative", "positive"), matrix)
    assert answer is not None
    assert answer.score == pytest.approx(-0.5)
    assert (answer.label, answer.scores) == ("negative", None)


def test_no_face_answer_without_a_map_a_face_or_when_the_pack_can_answer() -> None:
    matrix = expression_matrix(VALENCE, Task.CLASSIFICATION, SENTIMENT)
    dropped, video = face_row(happy=1.0)
    assert policy.face_answer(dropped, video, Task.CLASSIFICATION, SENTIMENT, None) is None
    no_face = policy.apply_pack(Sample(video=b"v"), row(), frozenset({T, A}))
    assert policy.face_answer(no_face, no_face[V], Task.CLASSIFICATION, SENTIMENT, matrix) is None
    usable = row(text=True).with_results({V: video})
    assert policy.face_answer(usable, video, Task.CLASSIFICATION, SENTIMENT, matrix) is None
