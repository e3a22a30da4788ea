"""Timelines: where segments fall (pure functions), and the features of each segment from
the real extractor on generated and spoken media."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from features_media import encode, tone
from spoken import SR, spoken, wav_bytes

from model.missing import Modality
from service.errors import MediaTooLargeError, PayloadTooLargeError
from service.features.timeline import TimelineSpec, cut_speech, fill_gaps, split_evenly
from service.features.timeline_features import extract_timeline
from service.features.types import AbsentReason, Sample
from service.limits import Limits

SPEC = TimelineSpec(min_segment_s=1.0, max_segment_s=10.0, merge_gap_s=0.6, window_s=2.0)
LONG = Limits().for_long_media(300.0, seconds_setting="timeline_max_seconds")


# ------------------------------------------------------------------ cutting


def test_speech_segments_within_bounds_are_kept_as_they_are() -> None:
    segments = [(0.5, 3.0), (4.0, 7.5), (9.0, 11.0)]
    assert cut_speech(segments, SPEC) == segments


def test_a_short_segment_joins_its_neighbour_across_a_short_pause_only() -> None:
    # 0.4 s of speech 0.3 s after the first: merged. 0.5 s alone 2 s later: kept.
    assert cut_speech([(0.0, 2.0), (2.3, 2.7), (4.7, 5.2)], SPEC) == [(0.0, 2.7), (4.7, 5.2)]
    # Never past the maximum length.
    assert cut_speech([(0.0, 9.8), (10.0, 10.5)], SPEC) == [(0.0, 9.8), (10.0, 10.5)]


def test_a_long_segment_is_split_into_equal_parts_within_the_maximum() -> None:
    assert cut_speech([(1.0, 26.0)], SPEC) == [(1.0, 9.333), (9.333, 17.667), (17.667, 26.0)]
    assert split_evenly(0.0, 5.0, 2.0, round_up=False) == [(0.0, 2.5), (2.5, 5.0)]


def test_stretches_without_speech_become_windows() -> None:
    # Video of 10 s with speech from 3 to 5 s: windows before and after the speech.
    assert fill_gaps([(3.0, 5.0)], 10.0, SPEC) == [
        (0.0, 1.5),
        (1.5, 3.0),
        (3.0, 5.0),
        (5.0, 7.5),
        (7.5, 10.0),
    ]
    # No speech: all windows; a pause shorter than the minimum is no window.
    assert fill_gaps([], 6.1, SPEC) == [(0.0, 2.033), (2.033, 4.067), (4.067, 6.1)]
    assert fill_gaps([(0.0, 2.0), (2.5, 4.0)], 4.0, SPEC) == [(0.0, 2.0), (2.5, 4.0)]


def test_long_media_limits_name_the_setting_that_sets_them() -> None:
    job = Limits().for_long_media(
        1800.0, seconds_setting="job_max_seconds", max_bytes=10, bytes_setting="job_max_bytes"
    )
    assert (job.max_audio_seconds, job.max_video_seconds, job.max_audio_bytes) == (1800, 1800, 10)
    assert job.max_video_frames == 3000 * 30  # the 50 fps the short limits allow
    assert job.setting("max_video_frames") == "job_max_seconds"
    assert job.setting("max_video_bytes") == "job_max_bytes"
    assert job.setting("max_text_chars") == "max_text_chars"
    assert LONG.setting("max_audio_bytes") == "max_audio_bytes"  # bytes not stretched


# ------------------------------------------------------------------ real extraction


def _trimmed(y: np.ndarray) -> np.ndarray:
    """Speech without the silence espeak-ng leaves around it."""
    loud = np.flatnonzero(np.abs(y) > 0.01)
    return y[loud[0] : loud[-1] + 1]


def _timeline(fx: Any, sample: Sample, limits: Limits = LONG, **kw: Any) -> Any:
    return extract_timeline(fx, sample, kw.pop("spec", SPEC), limits, kw.pop("max_segments", 50))


def test_tones_and_silences_have_no_speech_segments(svc_extractor: Any) -> None:
    """Beeps are sound, not speech: no segment, and the reason."""
    gap = np.zeros(SR, np.float32)
    y = np.concatenate([gap, tone(1.0), gap, tone(1.5, 440.0), gap])
    tl = _timeline(svc_extractor, Sample(audio=encode(y, "WAV")))
    assert tl.segments == []
    assert tl.reason == AbsentReason.NO_SPEECH
    assert tl.duration_s == pytest.approx(len(y) / SR, abs=1e-3)
    silent = _timeline(svc_extractor, Sample(audio=encode(np.zeros(3 * SR, np.float32), "WAV")))
    assert (silent.segments, silent.reason) == ([], AbsentReason.SILENT)


def test_sentences_separated_by_pauses_are_segments_at_their_times(svc_extractor: Any) -> None:
    """Two sentences placed at known times: one segment per sentence, its bounds within
    the VAD's padding of the truth, and each segment's text the words of its own
    sentence."""
    first = _trimmed(spoken("Please put the blue box on the kitchen table.", pad_s=0.0))
    second = _trimmed(spoken("We walked along the river until it got dark.", pad_s=0.0))
    pause = np.zeros(int(1.2 * SR))
    y = np.concatenate([np.zeros(SR), first, pause, second, np.zeros(SR)]).astype(np.float32)
    truth = [(1.0, 1.0 + len(first) / SR)]
    start2 = truth[0][1] + len(pause) / SR
    truth.append((start2, start2 + len(second) / SR))

    tl = _timeline(svc_extractor, Sample(audio=wav_bytes(y), transcribe=True))
    assert [(s.start_s, s.end_s) for s in tl.segments] == [
        (pytest.approx(a, abs=0.25), pytest.approx(b, abs=0.25)) for a, b in truth
    ]
    texts = [s.row[Modality.TEXT] for s in tl.segments]
    assert all(t.present and t.details["source"] == "asr" for t in texts)
    assert "kitchen table" in texts[0].details["transcript"].lower()
    assert "river" in texts[1].details["transcript"].lower()
    assert "river" not in texts[0].details["transcript"].lower()
    for seg in tl.segments:  # each segment's own audio, not the whole clip's
        audio = seg.row[Modality.AUDIO]
        assert audio.present
        assert audio.details["duration_s"] == pytest.approx(seg.end_s - seg.start_s, abs=0.01)
    whole = tl.whole[Modality.TEXT].details["transcript"].lower()
    assert "kitchen" in whole
    assert "river" in whole


def test_one_utterance_gives_one_segment_equal_to_the_whole_clip(svc_extractor: Any) -> None:
    wav = wav_bytes(spoken("Nobody told me the train would be so late."))
    tl = _timeline(svc_extractor, Sample(audio=wav, transcribe=True))
    [seg] = tl.segments
    for m in (Modality.TEXT, Modality.AUDIO):
        np.testing.assert_allclose(seg.row[m].features, tl.whole[m].features, atol=1e-5)


def test_a_text_alone_is_one_segment_without_times(svc_extractor: Any) -> None:
    tl = _timeline(svc_extractor, Sample(text="What a lovely day"))
    [seg] = tl.segments
    assert (seg.start_s, seg.end_s, tl.duration_s) == (None, None, None)
    assert seg.row[Modality.TEXT].present


def test_a_clients_text_is_the_whole_clips_and_untimed_in_segments(svc_extractor: Any) -> None:
    wav = wav_bytes(spoken("She bought fresh bread and a bag of apples."))
    tl = _timeline(svc_extractor, Sample(text="Fine.", audio=wav))
    assert tl.whole[Modality.TEXT].present
    [seg] = tl.segments
    assert seg.row[Modality.TEXT].reason == AbsentReason.UNTIMED
    assert seg.row[Modality.AUDIO].present


def _face_gap_face(tmp: Path, fps: float = 10.0) -> bytes:
    """2 s of a real face (skimage's astronaut), 2 s of a scene without one (its
    camera.png), 2 s of the face again."""
    from skimage import data as skimage_data

    face = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    scene = cv2.cvtColor(skimage_data.camera(), cv2.COLOR_GRAY2BGR)
    path = tmp / "face_gap_face.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    for i in range(int(6 * fps)):
        source = scene if 2 * fps <= i < 4 * fps else face
        x0 = 60 + (i % 10) * 4
        writer.write(np.ascontiguousarray(source[20 : 20 + 240, x0 : x0 + 320]))
    writer.release()
    return path.read_bytes()


def test_a_face_then_none_then_a_face_gives_windows_present_absent_present(
    svc_extractor: Any, tmp_path: Path
) -> None:
    tl = _timeline(svc_extractor, Sample(video=_face_gap_face(tmp_path)))
    assert [(s.start_s, s.end_s) for s in tl.segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    videos = [s.row[Modality.VIDEO] for s in tl.segments]
    assert [v.present for v in videos] == [True, False, True]
    assert videos[1].reason == AbsentReason.NO_FACE
    assert [v.details["frames"] for v in videos] == [10, 10, 10]  # 5 fps sampling
    assert tl.whole[Modality.VIDEO].present  # two thirds of the frames have the face
    assert all(s.row[Modality.AUDIO].reason == AbsentReason.NO_AUDIO_TRACK for s in tl.segments)


def test_too_many_segments_and_too_long_media_are_413s_naming_their_settings(
    svc_extractor: Any, tmp_path: Path
) -> None:
    with pytest.raises(PayloadTooLargeError) as exc:
        _timeline(svc_extractor, Sample(video=_face_gap_face(tmp_path)), max_segments=2)
    assert "3 segments" in exc.value.message
    assert exc.value.settings == ("MPLMM_TIMELINE_MAX_SEGMENTS",)
    short = Limits().for_long_media(2.0, seconds_setting="timeline_max_seconds")
    with pytest.raises(MediaTooLargeError) as too_long:
        _timeline(svc_extractor, Sample(audio=encode(tone(3.0), "WAV")), limits=short)
    assert too_long.value.settings == ("MPLMM_TIMELINE_MAX_SECONDS",)
