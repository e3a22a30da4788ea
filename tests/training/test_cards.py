"""The model card's robustness section, written from a bench/robustness.py report."""

from __future__ import annotations

from training.cards import ROBUSTNESS_HEADING, robustness_section, with_section

REPORT = {
    "data": "RAVDESS speech, actors 21-24 (test split), audio only, transcription off",
    "packs": {
        "emotion": {
            "clips": 240,
            "weighted_f1": {"clean": 0.6, "telephone": 0.5, "noise_5dB": 0.4},
            "mean_shifted": 0.45,
            "mean_drop": 0.15,
            "audio_absent": {"clean": 0, "telephone": 2, "noise_5dB": 0},
        }
    },
}


def test_the_section_lists_each_condition_with_its_drop_and_absent_count() -> None:
    section = robustness_section(REPORT, "emotion")
    assert section.startswith(ROBUSTNESS_HEADING)
    assert "| clean | 0.6000 |  | 0 |" in section
    assert "| telephone | 0.5000 | +0.1000 | 2 |" in section
    assert "| noise_5dB | 0.4000 | +0.2000 | 0 |" in section
    assert "| mean of the shifts | 0.4500 | +0.1500 | |" in section
    assert "240 clips" in section


def test_the_section_is_appended_once_then_replaced_in_place() -> None:
    card = "# Model card\n\nintro\n\n## Test-split metrics\n\n| a |\n"
    first = with_section(card, ROBUSTNESS_HEADING, robustness_section(REPORT, "emotion"))
    assert first.startswith(card.rstrip("\n"))
    assert first.count(ROBUSTNESS_HEADING) == 1
    # A card with the section in the middle: only that section changes.
    middle = first + "\n## Later\n\ntail\n"
    changed = dict(REPORT["packs"]["emotion"], clips=99)
    other = {**REPORT, "packs": {"emotion": changed}}
    second = with_section(middle, ROBUSTNESS_HEADING, robustness_section(other, "emotion"))
    assert second.count(ROBUSTNESS_HEADING) == 1
    assert "99 clips" in second
    assert "240 clips" not in second
    assert second.endswith("## Later\n\ntail\n")
    assert second.startswith(card.rstrip("\n"))
