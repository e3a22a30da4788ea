"""Real speech for the service and training tests, spoken by espeak-ng (a Debian package
that scripts/test.sh installs when it is missing): voice activity and transcription need
speech, which no synthetic signal imitates well enough."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np
import soundfile as sf

SR = 16_000


SENTENCES = (
    "I am really happy to see you all here today.",
    "The meeting was moved to Thursday afternoon.",
    "Please put the blue box on the kitchen table.",
    "We walked along the river until it got dark.",
    "Nobody told me the train would be so late.",
    "She bought fresh bread and a bag of apples.",
)


# Sentences of clear polarity, positive and negative in turn (the spoken minute of the
# default-bundle tests and bench/timeline.py).
POLAR = (
    ("I really love this wonderful day, everything is great.", "positive"),
    ("This is terrible, I hate it and I am very angry.", "negative"),
    ("What a fantastic and happy surprise, thank you so much.", "positive"),
    ("I feel awful and sad, this is the worst day ever.", "negative"),
    ("This is the best meal I have ever had, it is delicious.", "positive"),
    ("The service was horrible and the food was disgusting.", "negative"),
    ("I am so proud of you, you did an amazing job.", "positive"),
    ("I am so disappointed, everything went wrong again.", "negative"),
    ("We had a lovely time at the beach, it was perfect.", "positive"),
    ("He lied to me and I will never forgive him.", "negative"),
    ("Thank you so much, this is the best gift ever.", "positive"),
    ("The movie was boring and a complete waste of time.", "negative"),
)


@functools.lru_cache(maxsize=128)
def _spoken(text: str, voice: str, pitch: int = 50) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: scripts/test.sh installs it")
    cmd = [exe, "-v", voice, "-s", "150", "-p", str(pitch), "--stdout", text]
    wav = subprocess.run(cmd, capture_output=True, check=True).stdout
    y, sr = sf.read(io.BytesIO(wav), dtype="float32")
    import librosa

    y16 = librosa.resample(y, orig_sr=sr, target_sr=SR)
    y16.setflags(write=False)
    return y16


def spoken(
    text: str = SENTENCES[0], voice: str = "en-us", pad_s: float = 0.3, pitch: int = 50
) -> np.ndarray:
    """`text` spoken by espeak-ng (`pitch` 0-99), 16 kHz mono float32 `(N,)`, with `pad_s`
    of silence on both sides (as recorded speech has)."""
    pad = np.zeros(int(pad_s * SR), dtype=np.float32)
    return np.concatenate([pad, _spoken(text, voice, pitch), pad])


def spoken_for(seconds: float, seed: int = 0, pitch: int = 50) -> np.ndarray:
    """About `seconds` of speech: sentences from SENTENCES (starting at `seed`) spoken one
    after another, cut to `seconds`; 0.1 s of silence first."""
    parts, n, i = [np.zeros(int(0.1 * SR), dtype=np.float32)], int(0.1 * SR), seed
    while n < seconds * SR:
        part = spoken(SENTENCES[i % len(SENTENCES)], pad_s=0.1, pitch=pitch)
        parts.append(part)
        n, i = n + len(part), i + 1
    return np.concatenate(parts)[: int(seconds * SR)]


def wav_bytes(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def spoken_wav(text: str = SENTENCES[0], voice: str = "en-us") -> bytes:
    return wav_bytes(spoken(text, voice))
