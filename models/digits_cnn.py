"""Residual CNN on scikit-learn's bundled 8x8 handwritten digits."""

from __future__ import annotations

from sklearn.datasets import load_digits
from torch import nn

from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, Task, TrainRecipe


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    def __init__(self, width: int = 64, blocks: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers = [BasicBlock(width, width) for _ in range(blocks)]
        layers += [BasicBlock(width, 2 * width, stride=2)]
        layers += [BasicBlock(2 * width, 2 * width) for _ in range(blocks - 1)]
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


def task(
    width: int = 64,
    blocks: int = 2,
    seed: int = 0,
    epochs: int = 25,
    lr: float = 3e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
) -> Task:
    if width < 1 or blocks < 1:
        raise ValueError(f"digits_cnn: width and blocks must be >= 1, got {width}, {blocks}")
    digits = load_digits()
    x = (digits.images / 16.0).reshape(-1, 1, 8, 8)
    splits = to_splits(split_arrays(x, digits.target, seed))
    return Task(
        name="digits_cnn",
        build=lambda: DigitsResNet(width, blocks),
        splits=splits,
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay),
        spec={"zoo": "digits_cnn", "width": width, "blocks": blocks, "seed": seed},
    )
