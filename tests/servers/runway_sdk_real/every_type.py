"""The stand-in's built-in model (tests/servers/runway_sdk_server.py, build_model),
written for the real Runway Model SDK, so test_runway_client.py runs the same cases
against both. Same commands, inputs, outputs and setup options; the function names
(_setup, _fail) are the ones the tests find in tracebacks.
"""
import os
import time

import runway
from PIL import ImageOps
from runway.data_types import (any as any_type, array, boolean, category, file, image,
                               image_bounding_box, image_landmarks, image_point, number,
                               segmentation, text, vector)

LABELS = {"background": 0, "person": 1, "sky": 2}
COLORS = {"background": [0, 0, 0], "person": [255, 0, 0], "sky": [0, 0, 255]}


def every_type():  # fresh instances: the SDK names them per command
    return {
        "image": image(description="An RGB image.", channels=3),
        "text": text(description="Some text.", default="hi", max_length=10),
        "number": number(default=1, min=0, max=10, step=0.5),
        "count": number(min=2, step=1),  # no default: its min
        "flag": boolean(default=False),
        "choice": category(choices=["red", "green", "blue"], default="green"),
        "z": vector(length=4, sampling_mean=0.5, sampling_std=0.1),
        "words": array(item_type=text, min_length=1, max_length=3),
        "path": file(extension=".txt"),
        "folder": file(is_directory=True),
        "mask": segmentation(label_to_id=LABELS, label_to_color=COLORS),
        "point": image_point(),
        "box": image_bounding_box(),
        "pose": image_landmarks(3, labels=["nose", "left_eye", "right_eye"],
                                connections=[["nose", "left_eye"], ["nose", "right_eye"]]),
        "extra": any_type(),
    }


OPTIONS = {
    "setup_seconds": number(default=0, min=0,  # no max: the SDK would make it the default
                            description="How long setup takes (for tests)."),
    "fail_setup": boolean(default=False),
    "greeting": text(default="hello"),
    "quality": category(choices=["draft", "final"], default="draft"),
    "weights_dir": file(is_directory=True, description="A folder; no default."),
}


@runway.setup(options=OPTIONS)
def _setup(opts):
    if opts["setup_seconds"]:
        time.sleep(float(opts["setup_seconds"]))
    if opts["fail_setup"]:
        raise RuntimeError("setup was asked to fail")
    return dict(opts)


ECHO_OUTPUTS = every_type()
ECHO_OUTPUTS["rgba"] = image(channels=4)  # PNG by default


@runway.command("echo_all", inputs=every_type(), outputs=ECHO_OUTPUTS,
                description="Echoes every data type.")
def _echo_all(model, args):
    out = dict(args)
    out["rgba"] = args["image"].convert("RGBA")
    return out


@runway.command("invert", inputs={"image": image(channels=3, width=64, height=64)},
                outputs={"image": image(channels=3)}, description="Inverts an image.")
def _invert(model, args):
    return {"image": ImageOps.invert(args["image"])}


@runway.command("fail", inputs={"message": text(default="boom")}, outputs={"text": text},
                description="Always raises.")
def _fail(model, args):
    raise ValueError(f"the model failed on purpose: {args['message']}")


@runway.command("slow", inputs={"seconds": number(default=1, min=0)}, outputs={"text": text},
                description="Sleeps, then answers.")
def _slow(model, args):
    time.sleep(float(args["seconds"]))
    return {"text": "done"}


@runway.command("progress", inputs={"steps": number(default=3, min=1, step=1)},
                outputs={"text": text},
                description="A generator: over HTTP only its last value comes back.")
def _progress(model, args):
    steps = int(args["steps"])
    for i in range(1, steps + 1):
        yield {"text": f"step {i} of {steps}"}, i / steps  # (output, progress), as the SDK allows


@runway.command("setup_info", inputs={"prefix": text}, outputs={"options": any_type},
                description="The options the last successful setup received.")
def _setup_info(model, args):
    return {"options": dict(model)}


if __name__ == "__main__":
    runway.run(host=os.environ.get("RW_HOST", "127.0.0.1"),
               port=int(os.environ.get("RW_PORT", "9000")), model_options={})
