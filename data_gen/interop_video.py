"""The mp4 videos of a LeRobot export: the two encodings offered, the ffmpeg writer and a forward reader.

``lossless`` (the default): LeRobot's own encoder (AV1, yuv420p) rounds every pixel through RGB -> YUV
and halves the chroma resolution, so a round trip could not give the store's pixels back. ffmpeg's
libx264rgb codes the RGB planes themselves at ``-qp 0`` (lossless H.264; the stream's pixel format is
gbrp), which ffmpeg-based decoders (PyAV, torchcodec, imageio) read back bit for bit.

``h264``: standard H.264 as most players expect it (libx264, yuv420p, crf 23). Lossy: chroma at half
resolution and quantised, so a re-imported store differs from the original by a level or two per
pixel; on the env's renders about a quarter of the lossless size, and several times faster to decode
whole (torchcodec: 2 to 7x). The sizes need to be even.

Both put a keyframe every 2 frames, as LeRobot encodes: LeRobot's training reads frames at random,
and each read decodes from the keyframe before it, which with x264's default (one every 250 frames)
made a lossless read about 5x slower. The price is size where frames barely change: 16% more on the
env's renders, 50x more on a static background of noise (benchmarks/interop_roundtrip.py's store).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import imageio.v2 as iio
import imageio_ffmpeg
import numpy as np

from data_gen.interop_format import InteropError

# Each codec: ffmpeg's output options, and what LeRobot's video features and our sidecar record of it.
VIDEO_CODECS: dict[str, dict[str, Any]] = {
    "lossless": {"codec": "libx264rgb", "stream_pix_fmt": "gbrp", "qp": 0, "g": 2, "preset": "veryfast",
                 "lossless": True,
                 "ffmpeg": ["-vcodec", "libx264rgb", "-pix_fmt", "rgb24", "-qp", "0", "-g", "2", "-preset", "veryfast"]},
    "h264": {"codec": "libx264", "stream_pix_fmt": "yuv420p", "crf": 23, "g": 2, "preset": "veryfast",
             "lossless": False,
             "ffmpeg": ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "23", "-g", "2", "-preset", "veryfast"]},
}
DEFAULT_CODEC = "lossless"


def encoding(codec: str) -> dict[str, Any]:
    """What a video of ``codec`` records (the sidecar's ``video``): its settings, without the ffmpeg arguments."""
    return {key: value for key, value in VIDEO_CODECS[codec].items() if key != "ffmpeg"}


def check_frame_size(codec: str, camera: str, shape: tuple[int, ...]) -> None:
    """yuv420p halves the chroma planes: libx264 refuses an odd width or height."""
    height, width = shape[:2]
    if VIDEO_CODECS[codec]["stream_pix_fmt"] == "yuv420p" and (height % 2 or width % 2):
        raise InteropError(f"camera {camera!r} is {height}x{width}: --video-codec {codec} needs an even height and "
                           f"width (yuv420p); the lossless default takes any size")


class VideoWriter:
    """ffmpeg coding RGB frames from a pipe, its messages kept rather than printed.

    imageio's writer lets ffmpeg print to our stderr and, when ffmpeg dies (a full disk), raises a broken
    pipe with the whole command line; here a failure is one line (a full disk ENOSPC), and a nonzero exit
    status fails the export, so a video ffmpeg could not finish is never kept.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], fps: int, codec: str = DEFAULT_CODEC):
        height, width, _ = shape
        self.path = path
        self._log = tempfile.TemporaryFile()
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
            "-pix_fmt", "rgb24", "-r", str(fps), "-i", "-", "-an", *VIDEO_CODECS[codec]["ffmpeg"], "-v", "error",
            str(path),
        ]
        # Its own session: a Ctrl-C at the terminal reaches this process, which then stops ffmpeg itself.
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._log, start_new_session=True)

    def write(self, frames: np.ndarray) -> None:
        try:
            self._process.stdin.write(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
        except BrokenPipeError:  # ffmpeg has stopped: its messages say why
            self._failed()

    def close(self) -> None:
        """Finish the file; raises if ffmpeg could not."""
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        if self._process.wait() != 0:
            self._failed()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        with contextlib.suppress(OSError):  # frames still buffered for a dead ffmpeg: a broken pipe
            self._process.stdin.close()
        self._log.close()

    def _failed(self) -> None:
        self._process.wait()
        self._log.seek(0)
        messages = self._log.read().decode(errors="replace")
        if os.strerror(errno.ENOSPC) in messages:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        last = messages.strip().splitlines()[-1:] or [f"exit status {self._process.returncode}"]
        raise InteropError(f"{self.path}: ffmpeg could not write the video ({last[0][:200]})")


class VideoCursor:
    """The frames of one mp4, read forward once (episodes come in file order); going back reopens it."""

    def __init__(self, path: Path):
        self.path = path
        self._reader = None
        self._frames = None
        self._position = 0

    def read(self, start: int, count: int) -> np.ndarray:
        if self._reader is None or start < self._position:
            self.close()
            if not self.path.is_file():
                raise InteropError(f"{self.path}: missing video file")
            self._reader = iio.get_reader(self.path, format="FFMPEG")
            self._frames = self._reader.iter_data()
            self._position = 0
        try:
            while self._position < start:
                next(self._frames)
                self._position += 1
            frames = [next(self._frames) for _ in range(count)]
        except StopIteration:
            raise InteropError(f"{self.path}: has fewer frames than the episodes need ({start + count})") from None
        self._position += count
        return np.stack(frames)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
