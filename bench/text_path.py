"""The service's text-only computation, in process: text encoder, pack decision, backbone,
answer. Shared by the LitServe peer (bench/peer_litserve.py), which must compute exactly
what `mplmm serve` computes, and by bench/service.py's limit (the same work with no HTTP
and no queueing), so neither can drift from the other or from the service.

Every step is the service's own code: `TextEncoder` for the features (as
`FeatureExtractor.texts` calls it), `policy.decide` and `missing_type_of` for the row,
`backbone_feeds` with the pack's arrays as `InferencePipeline._infer` builds them, the
`BackboneSession` the runtime opens, and `policy.decode_output` for the answer. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.feeds import backbone_feeds, warmup_feeds
from model.layout import ENCODERS_DIR, PACKS_DIR
from model.missing import MODALITIES, Modality, types_from_presence
from service.features.spec import FeatureSpec
from service.features.text import TextEncoder
from service.features.types import AbsentReason, ModalityResult, Sample, SampleFeatures
from service.limits import Limits
from service.runtime import policy
from service.runtime.packdir import PackDir
from service.runtime.packs import Backbone, LoadedPack, PackLoader
from service.runtime.session import BackboneSession
from service.runtime.types import Answer
from service.settings import ExecutionProvider, Settings

DEFAULTS = Settings.model_fields  # the service's defaults, read where they are declared
MAX_BATCH: int = DEFAULTS["max_batch_size"].default
MAX_WAIT_S: float = DEFAULTS["max_wait_ms"].default / 1e3
DEFAULT_PACK: str = DEFAULTS["default_pack"].default
PROVIDER: ExecutionProvider = DEFAULTS["execution_provider"].default


class UnusableTextError(ValueError):
    """The text gives no usable row (empty, or blank): the service answers 422."""


@dataclass(frozen=True)
class TextPath:
    """Loaded once (encoder, backbone session, one pack version); then `answers(texts)`."""

    encoder: TextEncoder
    session: BackboneSession
    pack: LoadedPack
    shapes: dict[Modality, tuple[int, int]]

    @classmethod
    def load(
        cls,
        bundle: Path,
        packs: Path | None = None,
        pack_name: str = DEFAULT_PACK,
        provider: ExecutionProvider = PROVIDER,
    ) -> TextPath:
        """The bundle's encoders and backbone, and the version of `pack_name` that
        `packs` (default: the bundle's packs) serves; warmed up as the runtime warms."""
        spec = FeatureSpec.load(bundle / ENCODERS_DIR)
        backbone = Backbone.load(bundle)
        location = PackDir(packs or bundle / PACKS_DIR).current(pack_name)
        if location is None:
            raise FileNotFoundError(f"no version of pack {pack_name} in {packs}")
        pack = PackLoader(backbone, spec.sha256()).load(location.path, expected_name=pack_name)
        if Modality.TEXT not in pack.modalities:
            raise ValueError(f"pack {pack_name} does not read text")
        encoder = TextEncoder(bundle / ENCODERS_DIR, Limits(), spec=spec.text)
        session = BackboneSession(backbone.onnx_path, provider=provider)
        encoder.warmup()
        pack.check_output(session.run(warmup_feeds(backbone.lengths, backbone.dims, pack.arrays)))
        return cls(encoder, session, pack, {m: spec.shape(m) for m in MODALITIES})

    def rows(self, texts: Sequence[str]) -> list[SampleFeatures]:
        """The text batcher's work: the texts through `TextEncoder.encode_batch` (one call
        per text, two at once, for the int8 encoder), audio and video absent as
        `not_sent` (a text-only request)."""
        results = self.encoder.encode_batch(list(texts))
        absent = {
            m: ModalityResult.absent(m, *self.shapes[m], AbsentReason.NOT_SENT)
            for m in (Modality.AUDIO, Modality.VIDEO)
        }
        return [SampleFeatures({Modality.TEXT: r, **absent}) for r in results]

    def decide(self, text: str, row: SampleFeatures) -> SampleFeatures:
        """The pack's say on a row; UnusableTextError where the service would answer 422."""
        decision = policy.decide(Sample(text=text), row, self.pack)
        if decision.missing_type is None:
            raise UnusableTextError(f"no usable modality in {text!r}")
        return decision.row

    def infer(self, rows: Sequence[SampleFeatures]) -> np.ndarray:
        """The backbone batcher's work, as `InferencePipeline._infer` does it: `(B, K)`."""
        text, audio, video = (np.stack([r[m].features for r in rows]) for m in MODALITIES)
        types = types_from_presence(np.array([r.presence for r in rows]))
        return self.session.run(backbone_feeds(text, audio, video, types, self.pack.arrays))

    def answers(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """label, scores and score per text, as /predict reports them; texts must be usable
        (check them first with `usable`)."""
        rows = [self.decide(t, r) for t, r in zip(texts, self.rows(texts), strict=True)]
        out = self.infer(rows)
        return [answer_dict(policy.decode_output(self.pack.task, self.pack.labels, o)) for o in out]

    def usable(self, text: object) -> str:
        """The text when the service would encode it; UnusableTextError (422) when it is not
        a non-blank string; MediaTooLargeError (413) past the length limit."""
        if not isinstance(text, str) or not self.encoder.check(text):
            raise UnusableTextError("text: send a non-empty string")
        return text


def answer_dict(answer: Answer) -> dict[str, Any]:
    """An `Answer` as /predict's top-level label, scores and score."""
    return {"label": answer.label, "scores": answer.scores, "score": answer.score}
