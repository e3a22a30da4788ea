"""MPLMM: robust multimodal sentiment and emotion inference with prompt packs."""

__version__ = "0.1.0"
