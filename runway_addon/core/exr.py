"""The OpenEXR reader lives in ``core.codecs.exr`` beside the writer; this name stays for
its callers."""
from .codecs.exr import read_exr

__all__ = ["read_exr"]
