"""Acoustic shifts (training/augment.py): each does what its name says, measured on tones."""

import numpy as np
import pytest

from training.augment import RATE, SUITE, Augmentation, Shift, room_impulse

RNG_SEED = 7


def tone(hz: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.shape[0])))
    return float(np.fft.rfftfreq(y.shape[0], 1 / RATE)[int(np.argmax(spectrum))])


def band_energy(y: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.shape[0], 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_noise_is_added_at_the_requested_snr() -> None:
    y = tone(300, amp=0.05)
    for snr in (20.0, 10.0, 5.0):
        noisy = Shift("noise", snr).apply(y, np.random.default_rng(RNG_SEED))
        noise = noisy - y
        measured = 10 * np.log10(np.mean(y**2) / np.mean(noise**2))
        assert measured == pytest.approx(snr, abs=0.2)


def test_telephone_keeps_the_voice_band_and_drops_the_rest() -> None:
    y = (0.5 * tone(1000) + 0.5 * tone(6000)).astype(np.float32)
    out = Shift("telephone").apply(y, np.random.default_rng(RNG_SEED))
    assert out.shape == y.shape
    assert band_energy(out, 5000, 7000) < 1e-3 * band_energy(y, 5000, 7000)
    assert band_energy(out, 900, 1100) > 0.5 * band_energy(y, 900, 1100)


@pytest.mark.parametrize("shift", [Shift("mp3", 32), Shift("opus", 16)])
def test_codec_round_trip_keeps_length_and_content(shift: Shift) -> None:
    y = tone(440)
    out = shift.apply(y, np.random.default_rng(RNG_SEED))
    assert out.shape == y.shape
    assert peak_hz(out) == pytest.approx(440, abs=3)
    assert not np.allclose(out, y, atol=1e-3)  # it really went through a lossy codec


def test_pitch_moves_the_tone_by_semitones_at_the_same_length() -> None:
    y = tone(440)
    up = Shift("pitch", 3).apply(y, np.random.default_rng(RNG_SEED))
    down = Shift("pitch", -3).apply(y, np.random.default_rng(RNG_SEED))
    assert up.shape == down.shape == y.shape
    assert peak_hz(up) == pytest.approx(440 * 2 ** (3 / 12), rel=0.01)
    assert peak_hz(down) == pytest.approx(440 * 2 ** (-3 / 12), rel=0.01)


def test_speed_changes_tempo_and_pitch_together() -> None:
    y = tone(440)
    fast = Shift("speed", 1.1).apply(y, np.random.default_rng(RNG_SEED))
    slow = Shift("speed", 0.9).apply(y, np.random.default_rng(RNG_SEED))
    assert fast.shape[0] == pytest.approx(RATE / 1.1, abs=2)
    assert slow.shape[0] == pytest.approx(RATE / 0.9, abs=2)
    assert peak_hz(fast) == pytest.approx(484, rel=0.01)
    assert peak_hz(slow) == pytest.approx(396, rel=0.01)


def test_room_impulse_decays_by_60_db_over_its_rt60() -> None:
    h = room_impulse(0.5, np.random.default_rng(RNG_SEED))
    assert h.shape == (RATE // 2,)
    assert h[0] == 1.0
    tail = h[1:]
    first, last = tail[: RATE // 20], tail[-RATE // 20 :]
    drop_db = 10 * np.log10(np.mean(first**2) / np.mean(last**2))
    assert 40 < drop_db < 70  # 45 ms apart at either end of a -60 dB decay
    out = Shift("reverb", 0.5).apply(tone(300), np.random.default_rng(RNG_SEED))
    assert out.shape == (RATE,)


def test_gain_and_clipping() -> None:
    y = tone(300, amp=0.5)
    assert np.max(np.abs(Shift("gain", -6).apply(y, np.random.default_rng(0)))) == pytest.approx(
        0.5 * 10 ** (-6 / 20), rel=1e-3
    )
    assert np.max(np.abs(Shift("gain", 12).apply(y, np.random.default_rng(0)))) == 1.0


def test_suite_names_are_distinct_and_unknown_kinds_are_refused() -> None:
    names = [s.name for s in SUITE]
    assert len(set(names)) == len(names) == 10
    assert {"telephone", "mp3_32kbps", "noise_5dB", "pitch_-3st"} <= set(names)
    with pytest.raises(ValueError, match="unknown shift 'chorus'"):
        Shift("chorus")
    with pytest.raises(ValueError, match="unknown shift"):
        Augmentation(copies=1, ranges={"chorus": (0.0, 1.0)})


def test_augmentation_is_seeded_and_bounded() -> None:
    y = tone(300, seconds=0.5)
    aug = Augmentation(copies=2, max_chain=2)
    a1, chain1 = aug.apply(y, 11)
    a2, chain2 = aug.apply(y, 11)
    assert chain1 == chain2
    assert np.array_equal(a1, a2)
    chains = [aug.apply(y, seed)[1] for seed in range(40)]
    assert all(1 <= len(c) <= 2 for c in chains)
    assert len({tuple(s.name for s in c) for c in chains}) > 10  # really random across seeds
    for chain in chains:
        for s in chain:
            low, high = aug.ranges[s.kind]
            assert low <= s.param <= high or s.kind == "telephone"
