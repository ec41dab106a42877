"""The digits task as a PyTorch Lightning + hydra-zen project (see ../train.py).

config.py  hydra-zen configs (model, optim, data, trainer) in one store; validate_config()
data.py    DigitsDataModule: the fixed 60/20/20 split; the test split only with NIGHTLAB_TEST=1
model.py   DigitsCNN (a plain nn.Module, what the checkpoint holds) and DigitsClassifier
paths.py   canonical_experiment_dir(), required_artifacts(), checkpoint save/load
"""
