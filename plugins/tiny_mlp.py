"""A model of one's own: timm's own `@register_model`, then `study.archs: [tiny_mlp]` and
`deba.plugins: [plugins/tiny_mlp.py]`. `deba plugins` lists it under models."""

import torch.nn as nn
from timm.models import register_model


@register_model
def tiny_mlp(num_classes=10, in_chans=3, img_size=8, hidden=64, **kwargs):
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_chans * img_size * img_size, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    model.num_classes = num_classes
    return model
