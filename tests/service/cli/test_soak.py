"""The soak's CI variant: three minutes of mixed load (text, audio, video, text+audio) from
8 clients on the default bundle while a new pack version is PUT every 5 s (bench/soak.py,
whose 30-minute run is in docs/RELIABILITY.md). Every request and every swap is
answered 200; after the warm-up (the first fifth) RSS grows at most 10%, and neither
threads nor open descriptors rise in the second half past the first half's highest
(issue 13, item 6)."""

from __future__ import annotations

import sys

import pytest
from service_helpers import REPO

MINUTES = 3.0


@pytest.mark.slow
def test_three_minutes_of_mixed_load_and_swaps_leak_nothing() -> None:
    if not (REPO / "bundle" / "encoders" / "text.json").is_file():
        pytest.fail("encoders not built: run `mplmm build-encoders` (scripts/test.sh does)")
    sys.path.insert(0, str(REPO / "bench"))
    from soak import soak

    out = soak(MINUTES)
    answers, swaps = out["answers"], out["pack_swaps"]
    assert set(answers) == {"200"}, answers
    assert sum(answers.values()) >= 100  # 865 in the 3-minute bench run here
    assert set(swaps) == {"200"}, swaps
    assert sum(swaps.values()) >= MINUTES * 60 / 5 - 2
    assert out["rss_growth_after_warm_up"] <= 0.10, out
    # The pools start their threads as load needs them (the 30-minute run saw 22 to 37),
    # and a connection or two may be open when sampled: a leak is a rise past the first
    # half's highest.
    samples = out["samples"]
    first, second = samples[: len(samples) // 2], samples[len(samples) // 2 :]
    for col, what in ((2, "threads"), (3, "descriptors")):
        assert max(s[col] for s in second) <= max(s[col] for s in first) + 2, what
