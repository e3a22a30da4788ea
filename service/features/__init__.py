"""Raw text, audio and video -> fixed-length feature arrays with presence, for training and
serving alike. Entry point: `service.features.extractor.FeatureExtractor` (docs/FEATURES.md).

Nothing is imported here: importing a submodule must not load onnxruntime, CTranslate2 or cv2
for the others.
"""
