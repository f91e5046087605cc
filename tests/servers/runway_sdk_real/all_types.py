"""A real Runway SDK model with every data type, setup options, and failures."""
import os
import time

import numpy as np
import runway
from runway.data_types import (any as any_type, array, boolean, category, file, image,
                               image_bounding_box, image_landmarks, image_point, number,
                               segmentation, text, vector)

OPTIONS = {"scale": number(default=1.0, min=0.5, max=4.0, step=0.5),
           "mode": category(choices=["fast", "best"], default="fast"),
           "slow_setup": number(default=0.0, min=0.0, max=10.0)}


@runway.setup(options=OPTIONS)
def setup(opts):
    time.sleep(float(opts["slow_setup"]))
    return dict(opts)


# Every SDK command needs at least one input.
@runway.command("info", inputs={"unused": text(default="")}, outputs={"scale": number, "mode": text})
def info(model, inputs):
    return {"scale": model["scale"], "mode": model["mode"]}


@runway.command("scalars",
                inputs={"t": text(max_length=20), "n": number(min=0, max=10, default=1),
                        "b": boolean(default=False),
                        "c": category(choices=["a", "b", "c"], default="a"),
                        "v": vector(length=3, default=[0.0, 0.0, 0.0]),
                        "l": array(item_type=text, max_length=5),
                        "p": image_point, "box": image_bounding_box,
                        "x": any_type},
                outputs={"t": text, "n": number, "b": boolean, "c": text,
                         "v": vector(length=3), "l": array(item_type=text),
                         "p": image_point, "box": image_bounding_box, "x": any_type})
def scalars(model, inputs):
    return {k: inputs[k] for k in ("t", "n", "b", "c", "v", "l", "p", "box", "x")}


@runway.command("invert", inputs={"image": image(channels=3)},
                outputs={"image": image(channels=3)})
def invert(model, inputs):
    return {"image": 255 - np.asarray(inputs["image"].convert("RGB"))}


@runway.command("alpha", inputs={"image": image(channels=3)},
                outputs={"image": image(channels=4)})
def alpha(model, inputs):
    arr = np.asarray(inputs["image"].convert("RGBA")).copy()
    arr[..., 3] = 128
    return {"image": arr}


@runway.command("segment", inputs={"image": image(channels=3)},
                outputs={"map": segmentation(label_to_id={"background": 0, "person": 1},
                                             label_to_color={"background": [0, 0, 0],
                                                             "person": [255, 0, 0]})})
def segment(model, inputs):
    arr = np.asarray(inputs["image"].convert("L"))
    return {"map": (arr > 127).astype(np.uint8)}


@runway.command("landmarks", inputs={"unused": text(default="")},
                outputs={"points": image_landmarks(2, labels=["nose", "eye"],
                                                   connections=[["nose", "eye"]])})
def landmarks(model, inputs):
    return {"points": [[0.25, 0.5], [0.75, 0.5]]}


@runway.command("fail", inputs={"t": text}, outputs={"t": text})
def fail(model, inputs):
    raise RuntimeError("the model broke on purpose")


if __name__ == "__main__":
    runway.run(host=os.environ.get("RW_HOST", "127.0.0.1"),
               port=int(os.environ.get("RW_PORT", "9000")), model_options={})
