"""Video feature extraction real-time factor (compute seconds per media second).

`video_rtf` is process CPU seconds per media second on the face clip (OpenCV's cascade
runs on both cores, so CPU time exceeds wall time); `rtf_wall` is reported beside it.

Writes 640x360, 25 fps mp4v clips made from scikit-image's astronaut (a face) and camera
(no face the cascade finds) images, then times `VideoFeatureExtractor.extract` on each.
Prints one JSON object. Builds the face encoder into a temp dir unless --encoders is given.

    .venv/bin/python bench/video.py [--seconds 10] [--repeats 3] [--encoders bundle/encoders]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.features.video import VideoFeatureExtractor, VideoSpec  # noqa: E402
from service.limits import Limits  # noqa: E402

SIZE = (640, 360)
FPS = 25


def write_clip(path: Path, image: np.ndarray, seconds: float) -> None:
    """A slow pan over `image` (BGR), resized to 640x360."""
    n = int(FPS * seconds)
    h, w = image.shape[:2]
    cw, ch = int(w * 0.78), int(w * 0.78 * SIZE[1] / SIZE[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for i in range(n):
        t = i / max(n - 1, 1)
        x0, y0 = int((w - cw) * (0.3 + 0.4 * t)), int((h - ch) * (0.05 + 0.15 * t))
        frame = cv2.resize(image[y0 : y0 + ch, x0 : x0 + cw], SIZE, interpolation=cv2.INTER_AREA)
        writer.write(np.ascontiguousarray(frame))
    writer.release()


def main() -> int:
    import skimage.data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoders", type=Path, default=None)
    parser.add_argument("--sample-fps", type=float, default=VideoSpec().fps)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        encoders = args.encoders
        if encoders is None:
            # In a child process, so torch never counts towards this process's peak RSS.
            encoders = Path(tmp) / "encoders"
            build = "import sys; from training.encoders.face import build_face_encoder as b; "
            build += "b(__import__('pathlib').Path(sys.argv[1]))"
            root = str(Path(__file__).resolve().parents[1])
            subprocess.run([sys.executable, "-c", build, str(encoders)], check=True, cwd=root)
        clips = {
            "face": cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR),
            "no_face": cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR),
        }
        spec = VideoSpec(fps=args.sample_fps)
        extractor = VideoFeatureExtractor(spec, encoders, Limits())
        extractor.warmup()
        out: dict[str, object] = {
            "resolution": f"{SIZE[0]}x{SIZE[1]}",
            "fps": FPS,
            "sample_fps": spec.fps,
        }
        for name, image in clips.items():
            path = Path(tmp) / f"{name}.mp4"
            write_clip(path, image, args.seconds)
            runs, cpu_runs = [], []
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                result = extractor.extract(path)
                runs.append(time.perf_counter() - t)
                cpu_runs.append(time.process_time() - c)
            media_s = float(result.details["duration_s"])
            out[name] = {
                "media_s": media_s,
                "rtf_wall": round(statistics.median(runs) / media_s, 4),
                "rtf_cpu": round(statistics.median(cpu_runs) / media_s, 4),
                "present": result.present,
                "frames": result.details["frames"],
                "faces": result.details["faces"],
                "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
            }
        face = out["face"]
        assert isinstance(face, dict)
        # Compute seconds (process CPU time, both cores) per media second.
        out["video_rtf"] = face["rtf_cpu"]
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["loadavg"] = [round(v, 2) for v in os.getloadavg()]
        out["cv2"] = cv2.__version__
        out["cpus"] = os.cpu_count()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
