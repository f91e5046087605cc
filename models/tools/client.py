"""The client half shared by check.py and gallery.py: start a model's real Cog
server, POST predictions with plain ``requests``, decode the outputs.

Inputs are sent as bare local paths (the Cog server passes them through to the
predictor: the shared-folder case of a local server); outputs come back as
``data:`` URIs and are decoded here.
"""
from __future__ import annotations

import base64
import io
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

import serve

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"


class Session:
    def __init__(self, name: str, port: int):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.cold_start_s = 0.0

    def predict(self, **inputs) -> dict:
        """POST /predictions (synchronous); retries the brief 409 right after a previous one."""
        body = {"input": {k: (str(v) if isinstance(v, Path) else v) for k, v in inputs.items()}}
        for _ in range(50):
            r = requests.post(f"{self.url}/predictions", json=body, timeout=900)
            if r.status_code != 409:
                break
            time.sleep(0.1)
        r.raise_for_status()
        out = r.json()
        if out.get("status") != "succeeded":
            raise RuntimeError(f"{self.name}: prediction {out.get('status')}: {out.get('error')}"
                               f"\n{out.get('logs', '')[-2000:]}")
        return out

    def timed(self, repeat: int = 3, **inputs) -> tuple[dict, float, float]:
        """(last response, median wall seconds, median predict_time) over ``repeat`` runs."""
        walls, predicts, out = [], [], {}
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = self.predict(**inputs)
            walls.append(time.perf_counter() - t0)
            predicts.append(out.get("metrics", {}).get("predict_time", float("nan")))
        walls.sort()
        predicts.sort()
        return out, walls[len(walls) // 2], predicts[len(predicts) // 2]


@contextmanager
def running(name: str, port: int | None = None):
    """The model's server from its env, READY; stopped (shutdown) on exit."""
    port = port or serve.free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"cog-{name}-", suffix=".log", delete=False)
    t0 = time.monotonic()
    proc = serve.start(name, port, log=log)
    ok = False
    try:
        try:
            serve.wait_ready(port, timeout=600, proc=proc)
        except Exception:
            log.flush()
            print(Path(log.name).read_text()[-3000:])
            raise
        s = Session(name, port)
        s.cold_start_s = time.monotonic() - t0
        yield s
        ok = True
    finally:
        serve.stop(proc, port)
        log.close()
        if ok:
            os.unlink(log.name)
        else:
            print(f"server log: {log.name}")


def data_uri_bytes(uri: str) -> bytes:
    if not uri.startswith("data:"):
        raise ValueError(f"expected a data: URI, got {uri[:60]}")
    return base64.b64decode(uri.split(",", 1)[1])


def decode_image(uri: str):
    """A data: URI image as a numpy array: 8-bit via PIL, 16-bit PNG/EXR via OpenCV (RGB)."""
    import numpy as np

    raw = data_uri_bytes(uri)
    if uri.startswith(("data:image/png", "data:image/x-exr", "data:application/octet-stream")):
        import cv2

        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is not None:
            if img.ndim == 3:
                img = img[:, :, [2, 1, 0, 3][:img.shape[2]]]
            return img
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(raw)))
