"""The values a flag may take, shared by the parsers and the modules that act on
them. Nothing here imports torch, so a mistyped flag is refused before torch
loads (about 3 s)."""

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
LR_SCHEDULES = ("constant", "cosine", "onecycle")
CLASSIFIER_INPUTS = ("decoder", "latent", "encoder-mean")
INITS = ("default", "orthogonal")
SCALES = ("first-half", "window", "log")   # the prediction model's price scales
DECODER_STATES = ("zero", "latent")   # the decoder's initial state (models.py)
