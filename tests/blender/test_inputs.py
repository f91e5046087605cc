"""An image file read for a model input (``runway_addon.blender.inputs.read_image_file``,
the package's own module, in real Blender): EXR pixels converted to sRGB display values,
and every unreadable file a CodecError, never numpy's own error."""
import struct

import numpy as np
import pytest

from runway_addon.core import codecs
from runway_addon.core.errors import CodecError

pytestmark = pytest.mark.blender


@pytest.fixture
def inputs():
    import bpy  # noqa: F401  (the module under test imports it)
    from runway_addon.blender import inputs
    return inputs


def test_an_exr_is_read_as_srgb_with_alpha_as_stored(inputs, tmp_path):
    linear = np.zeros((2, 3, 4), np.float32)
    linear[0, 0] = (0.0, 0.21404114, 1.0, 0.25)  # sRGB 0, 0.5, 1; alpha untouched
    linear[1, 2] = (4.0, -1.0, 0.0031308, 1.0)   # clipped to 1 and 0; the curve's knee
    path = tmp_path / "linear.exr"
    path.write_bytes(codecs.encode_exr(linear))
    img = inputs.read_image_file(str(path))
    assert img.shape == (2, 3, 4) and img.dtype == np.float32
    assert np.allclose(img[0, 0], (0.0, 0.5, 1.0, 0.25), atol=1e-5)
    assert np.allclose(img[1, 2], (1.0, 0.0, 0.04045, 1.0), atol=1e-5)


def test_an_exr_with_no_channels_is_a_codec_error(inputs, tmp_path):
    blob = codecs.encode_exr(np.zeros((2, 2, 3), np.float32))
    path = tmp_path / "empty.exr"
    path.write_bytes(blob.replace(b"channels\0chlist\0", b"chanxels\0chlist\0", 1))
    with pytest.raises(CodecError) as err:
        inputs.read_image_file(str(path))
    assert err.value.message == "cannot read the EXR file: the EXR file has no channels"


def test_an_empty_result_from_the_exr_reader_is_a_codec_error(inputs, tmp_path,
                                                              monkeypatch):
    # read_exr refuses both today; the guard keeps np.dstack's ValueError from a caller
    # should a reader ever hand back nothing or a plane with no pixels.
    path = tmp_path / "odd.exr"
    path.write_bytes(codecs.encode_exr(np.zeros((2, 2, 3), np.float32)))
    for planes in ({}, {"Z": np.zeros((2, 0), np.float32)}):
        monkeypatch.setattr(inputs, "read_exr", lambda data, planes=planes: planes)
        with pytest.raises(CodecError) as err:
            inputs.read_image_file(str(path))
        assert err.value.message == "odd.exr: the EXR file holds no pixels"


def test_garbage_and_missing_files_are_codec_errors_that_name_them(inputs, tmp_path):
    garbage = tmp_path / "noise.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + b"\0" * 5)
    with pytest.raises(CodecError, match="^noise.png: "):
        inputs.read_image_file(str(garbage))
    with pytest.raises(CodecError, match="^cannot read '.*gone.exr': No such file"):
        inputs.read_image_file(str(tmp_path / "gone.exr"))
