"""A toy trial: a noisy bowl whose best point nightlab should find.

Reads its parameters with `nightlab.params()` (the JSON file named by NIGHTLAB_PARAMS) and
reports the objective by printing `score=<value>`. Replace it with your training script.
"""

import os
import random

import nightlab

p = nightlab.params(x=0.0, y=0.0)
rng = random.Random(int(os.environ.get("NIGHTLAB_SEED", "0")))
score = -((p["x"] - 1.5) ** 2) - (p["y"] + 0.5) ** 2 + rng.gauss(0, 0.01)
print(f"score={score:.5f}")
