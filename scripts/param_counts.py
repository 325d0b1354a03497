#!/usr/bin/env python3
"""Parameter counts and state_dict names of the minidl model zoo, computed with PyTorch.

The numbers asserted in tests/models/models_test.cpp come from this script:

    python3 scripts/param_counts.py            # table of parameter / state_dict tensor counts
    python3 scripts/param_counts.py --names resnet18   # every state_dict name of one model

The ResNets are written out here in torch.nn exactly as torchvision.models.resnet builds them
(BasicBlock / Bottleneck v1.5, "downsample" = Sequential(conv1x1, BN)), with minidl's CIFAR stem
(conv 3x3 stride 1, no max-pool) as an option, so torchvision itself is not needed. When
torchvision is installed, the ImageNet-stem models are also checked against it name by name.
Without torchvision the script still checks the two well-known counts (resnet18 11,689,512 and
resnet50 25,557,032 parameters with 1000 classes).
"""

import argparse
import sys

import torch
from torch import nn


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(conv1x1(inplanes, planes * 4, stride),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision.models.ResNet; widths (64, 128, 256, 512) or the CIFAR (16, 32, 64)."""

    def __init__(self, block, layers, num_classes, imagenet_stem, widths=(64, 128, 256, 512)):
        super().__init__()
        self.inplanes = widths[0]
        if imagenet_stem:
            self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet_stem else nn.Identity()
        for i, (w, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        layers = [block(self.inplanes, planes, stride)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class AlexNet32(nn.Module):
    """The CIFAR AlexNet variant for 32x32 inputs (torchvision indexing of features/classifier)."""

    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 2 * 2, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))


class Plain(nn.Module):
    """minidl's 'plain' CNN (models/plain.cpp): two conv-BN-ReLU pairs per stage, no shortcuts."""

    def __init__(self, num_classes):
        super().__init__()

        def cbr(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(*cbr(3, 32), *cbr(32, 32), nn.MaxPool2d(2, 2),
                                      *cbr(32, 64), *cbr(64, 64), nn.MaxPool2d(2, 2),
                                      *cbr(64, 128), *cbr(128, 128))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)


RESNETS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def build(name, num_classes, imagenet_stem=False):
    if name in RESNETS:
        block, layers = RESNETS[name]
        return ResNet(block, layers, num_classes, imagenet_stem)
    if name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        n = (int(name[len("resnet"):]) - 2) // 6
        return ResNet(BasicBlock, [n, n, n], num_classes, False, widths=(16, 32, 64))
    if name == "alexnet":
        return AlexNet32(num_classes)
    if name == "plain":
        return Plain(num_classes)
    raise ValueError(f"unknown model {name}")


def counts(model):
    params = sum(p.numel() for p in model.parameters())
    return params, len(model.state_dict())


def conv_macs(model, size):
    """Multiply-adds of all convolutions for one (1, 3, size, size) image."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        total += out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()
        x = torch.zeros(1, 3, size, size)
        h = x
        for name, child in model.named_children():  # the classifier heads need no flatten here
            if name in ("fc", "classifier"):
                break
            h = child(h)
    for hd in handles:
        hd.remove()
    return total


def check_against_torchvision():
    try:
        import torchvision
    except ImportError:
        # The two published counts (torchvision docs) stand in for the name-by-name comparison.
        assert counts(build("resnet18", 1000, True))[0] == 11_689_512
        assert counts(build("resnet50", 1000, True))[0] == 25_557_032
        return "torchvision not installed: checked the published resnet18/resnet50 counts"
    for name in RESNETS:
        ours = build(name, 1000, True).state_dict()
        theirs = getattr(torchvision.models, name)().state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name
    return f"matched torchvision {torchvision.__version__} name by name and shape by shape"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", metavar="MODEL", help="print the state_dict names of MODEL")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--imagenet-stem", action="store_true")
    args = ap.parse_args()

    if args.names:
        for k, v in build(args.names, args.classes, args.imagenet_stem).state_dict().items():
            print(k, tuple(v.shape))
        return

    print(check_against_torchvision())
    rows = [(n, 10, False) for n in list(RESNETS) + ["resnet20", "resnet32", "resnet44", "resnet56",
                                                        "resnet110", "alexnet", "plain"]]
    rows += [(n, 100, False) for n in ("resnet18", "resnet50", "resnet56", "alexnet", "plain")]
    rows += [(n, 1000, True) for n in RESNETS]
    print(f"{'model':<10} {'classes':>7} {'stem':<8} {'parameters':>12} {'state_dict':>10} "
          f"{'conv MACs 32x32':>16}")
    for name, classes, stem in rows:
        model = build(name, classes, stem)
        p, s = counts(model)
        print(f"{name:<10} {classes:>7} {'imagenet' if stem else 'cifar':<8} {p:>12,} {s:>10} "
              f"{conv_macs(model, 32):>16,}")
    # The well-known figure (1.81 G multiply-adds for resnet18 at 224x224) checks the MAC count.
    print(f"resnet18 imagenet stem, 224x224: {conv_macs(build('resnet18', 1000, True), 224):,} conv MACs")


if __name__ == "__main__":
    sys.exit(main())
