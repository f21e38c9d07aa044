"""A network built outside lib.models, for the bring-your-own-model tests (``--factory
tests.own_model_factory:tiny_net``)."""
from torch import nn


def tiny_net(num_classes: int = 10) -> nn.Module:
    """Two convolutions and a linear head: an architecture lib.models does not list."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))
