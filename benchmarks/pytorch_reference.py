#!/usr/bin/env python3
"""PyTorch twin of minidl's training, for side-by-side numbers.

The same models as minidl's zoo (models/models.h), written out here so no torchvision is needed:
  resnet18/34/50/101/152  torchvision's ResNet with the CIFAR stem (conv1 3x3 stride 1, no max-pool),
                          convs kaiming_normal(fan_out, relu), BN weight 1 bias 0, fc nn.Linear default
  resnet20/32/44/56/110   the same class with He et al.'s three CIFAR stages of 16/32/64 planes
  alexnet                 AlexNet for 32x32: features Conv(3,64,3,s2,p1)-ReLU-MaxPool2,
                          Conv(64,192,3,p1)-ReLU-MaxPool2, Conv(192,384,3,p1)-ReLU,
                          Conv(384,256,3,p1)-ReLU, Conv(256,256,3,p1)-ReLU-MaxPool2; classifier
                          Dropout-Linear(1024,4096)-ReLU-Dropout-Linear(4096,4096)-ReLU-Linear(4096,10)
and the same recipe flags as minidl's `train` (optimizer, lr, momentum, wd, schedule with warm-up,
augmentation = random crop with 4 pixels of zero padding + horizontal flip, normalisation by the
training set's per-channel mean and population std).

Modes
  --throughput  synthetic batches of CIFAR shape (4 distinct batches on the device used in turn),
                warm-up steps, then timed steps; prints the RESULT line bench_train prints
                (median step time by CUDA events around each whole step, images/s, window
                throughput, epoch estimate, peak memory from torch.cuda.max_memory_allocated).
  --train       real CIFAR-10 from the binary files (cifar-10-batches-bin), per-epoch train and test
                loss/accuracy; writes metrics.csv with minidl's columns (engine/metrics.h) and prints
                one EPOCH line per epoch and a RESULT line with the best accuracy and the time to
                reach --target-acc.

Arithmetic is float32: TF32 is off for cuDNN and cuBLAS unless --tf32 (minidl's default too);
cudnn.benchmark is on (PyTorch at its fastest for fixed shapes).

  python3 benchmarks/pytorch_reference.py --throughput --model resnet18 --batch-size 128
  python3 benchmarks/pytorch_reference.py --throughput --device cpu --batch-size 32 --steps 10
  python3 benchmarks/pytorch_reference.py --train --model resnet18 --epochs 30 --out runs/torch-r18
"""
import argparse
import csv
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_TRAIN_IMAGES = 50000


# ---------------------------------------------------------------- models

def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, 0, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)  # stride on the 3x3 (torchvision "v1.5")
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """widths: planes per stage (the stem has widths[0]); one stage per entry of `layers`, every
    stage after the first starting with stride 2 (minidl's make_resnet)."""
    def __init__(self, block, layers, num_classes=10, zero_init_residual=False,
                 widths=(64, 128, 256, 512)):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)  # CIFAR stem; no max-pool
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.stages = len(layers)
        for i, (w, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[len(layers) - 1] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class AlexNet(nn.Module):
    def __init__(self, num_classes=10, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 2 * 2, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


RESNETS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
# He et al.'s CIFAR ResNets (3 stages of 16/32/64 planes), with minidl's shortcuts: a 1x1
# convolution + BN where the shape changes (option B).
CIFAR_RESNETS = {f"resnet{d}": (d - 2) // 6 for d in (20, 32, 44, 56, 110)}


def build_model(args, num_classes=10):
    if args.model in RESNETS:
        block, layers = RESNETS[args.model]
        return ResNet(block, layers, num_classes, args.zero_init_residual)
    if args.model in CIFAR_RESNETS:
        n = CIFAR_RESNETS[args.model]
        return ResNet(BasicBlock, [n, n, n], num_classes, args.zero_init_residual, widths=(16, 32, 64))
    if args.model == "alexnet":
        return AlexNet(num_classes, args.dropout)
    sys.exit(f"pytorch_reference: --model {args.model!r}: expected one of "
             f"{', '.join(list(RESNETS) + list(CIFAR_RESNETS) + ['alexnet'])}")


# ---------------------------------------------------------------- data

def read_cifar10(directory, split):
    """(images uint8 (M, 3, 32, 32), labels int64 (M,)) from the official binary files."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    images, labels = [], []
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            sys.exit(f"pytorch_reference: {path} not found (expected CIFAR-10 in the binary layout, "
                     "cifar-10-batches-bin; download cifar-10-binary.tar.gz from "
                     "https://www.cs.toronto.edu/~kriz/cifar.html)")
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) % 3073:
            sys.exit(f"pytorch_reference: {path}: {len(raw)} bytes is not a whole number of "
                     "3073-byte records")
        rec = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, 3073)
        labels.append(rec[:, 0].long())
        images.append(rec[:, 1:].reshape(-1, 3, 32, 32).clone())
    return torch.cat(images), torch.cat(labels)


def channel_stats(images):
    """Per-channel mean and population std of pixel/255 over the whole set (minidl's channel_stats)."""
    x = images.double().div_(255.0).permute(1, 0, 2, 3).reshape(3, -1)
    return x.mean(1).float(), x.std(1, unbiased=False).float()


def augment_normalize(batch_u8, mean, std, augment, gen):
    """Random crop from the 4-pixel zero-padded image + horizontal flip, then ToTensor + Normalize.

    Done on the batch's device in a few tensor ops; random draws come from `gen` (on the CPU) so a
    run is reproducible on any device."""
    n = batch_u8.shape[0]
    x = batch_u8.float().div_(255.0)
    if augment:
        dev = x.device
        padded = F.pad(x, (4, 4, 4, 4))
        dy = torch.randint(0, 9, (n,), generator=gen).to(dev)
        dx = torch.randint(0, 9, (n,), generator=gen).to(dev)
        flip = torch.randint(0, 2, (n,), generator=gen).to(dev).bool()
        ar = torch.arange(32, device=dev)
        rows = (dy[:, None] + ar)[:, None, :, None]                       # (n, 1, 32, 1)
        cols = dx[:, None] + torch.where(flip[:, None], 31 - ar, ar)      # (n, 32)
        cols = cols[:, None, None, :]                                     # (n, 1, 1, 32)
        x = padded[torch.arange(n, device=dev)[:, None, None, None],
                   torch.arange(3, device=dev)[None, :, None, None], rows, cols]
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


# ---------------------------------------------------------------- recipe

def make_optimizer(args, params):
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                               weight_decay=args.wd, nesterov=args.nesterov)
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.wd)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    if args.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=args.lr, weight_decay=args.wd)
    sys.exit(f"pytorch_reference: --optimizer {args.optimizer!r}: expected sgd, adam, adamw or adagrad")


def lr_at(args, epoch):
    """minidl's LrSchedule::lr_at (optim/schedule.h): warm-up per iteration, then StepLR,
    MultiStepLR or CosineAnnealingLR per whole epoch, shifted by the warm-up."""
    base, w = args.lr, args.warmup
    if epoch < w:
        s = 1.0 / 3.0
        return base * (s + (1.0 - s) * epoch / w)
    e = math.floor(epoch - w)
    if args.schedule == "step":
        return base * args.gamma ** math.floor(e / args.step_size)
    if args.schedule == "multistep":
        return base * args.gamma ** sum(m <= e for m in args.milestones)
    if args.schedule == "cosine":
        return base * (1.0 + math.cos(math.pi * min(e, args.epochs) / args.epochs)) / 2.0
    return base


# ---------------------------------------------------------------- helpers

def git_commit():
    if os.environ.get("MINIDL_COMMIT"):
        return os.environ["MINIDL_COMMIT"]
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        c = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "diff", "--quiet", "HEAD", "--"]).returncode != 0
        return c + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_line(device):
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return (f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
                f"{p.total_memory >> 20} MiB), torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"cuDNN {torch.backends.cudnn.version()}")
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"cpu: {model}, {torch.get_num_threads()} threads, load average "
            f"{os.getloadavg()[0]:.2f}, torch {torch.__version__}")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def header(args, device, what):
    print(f"# pytorch_reference {what}")
    print(f"# device: {device_line(device)}")
    print(f"# commit: {git_commit()}   date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# tf32 {'on' if args.tf32 else 'off'}, cudnn.benchmark on")


# ---------------------------------------------------------------- modes

def throughput(args, device):
    torch.manual_seed(args.seed)
    model = build_model(args).to(device)
    # (before the optimizer: .to(memory_format) replaces the parameters' storage in place)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = make_optimizer(args, model.parameters())
    crit = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    nparams = sum(p.numel() for p in model.parameters())
    header(args, device, "--throughput: median over steps of one whole training step "
                         "(forward, loss, backward, optimizer)")
    print(f"# model {args.model} ({nparams / 1e6:.2f} M parameters), batch {args.batch_size}, "
          f"precision {args.precision}{', channels_last' if args.channels_last else ''}, optimizer {args.optimizer} lr {args.lr} wd {args.wd}, "
          f"data synthetic")
    sys.stdout.flush()

    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = [((torch.rand(args.batch_size, 3, 32, 32, generator=gen) * 4 - 2).to(device)
                .contiguous(memory_format=fmt),
                torch.randint(0, 10, (args.batch_size,), generator=gen).to(device))
               for _ in range(4)]
    model.train()

    # --precision bf16|fp16: torch.autocast's policy (what minidl's --precision copies); fp16 adds
    # a GradScaler (its defaults: scale 65536, x2 after 2000 clean steps, x0.5 and skip on inf).
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            loss = crit(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    loss = None
    for s in range(args.warmup_steps):
        loss = step(*batches[s % 4])
    sync(device)
    loss_first = loss.item() if loss is not None else float("nan")

    cuda = device.type == "cuda"
    times = []
    if cuda:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(args.steps)]
    t0 = time.perf_counter()
    for s in range(args.steps):
        x, y = batches[(args.warmup_steps + s) % 4]
        if cuda:
            events[s][0].record()
            loss = step(x, y)
            events[s][1].record()
        else:
            a = time.perf_counter()
            loss = step(x, y)
            times.append((time.perf_counter() - a) * 1e3)
    sync(device)
    wall = time.perf_counter() - t0
    if cuda:
        times = [a.elapsed_time(b) for a, b in events]
    loss_last = loss.item()

    times.sort()
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    median = statistics.median(times)
    ips = args.batch_size / (median * 1e-3)
    wips = args.batch_size * args.steps / wall
    steps_per_epoch = -(-CIFAR_TRAIN_IMAGES // args.batch_size)
    epoch_s = steps_per_epoch * median * 1e-3
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    print(f"step ms: median {median:.3f}  min {times[0]:.3f}  p10 {q[0]:.3f}  p90 {q[-1]:.3f}  "
          f"({args.steps} steps after {args.warmup_steps} warm-up)")
    print(f"throughput: {ips:.1f} images/s from the median step, {wips:.1f} images/s over the window")
    print(f"epoch estimate: {epoch_s:.1f} s ({steps_per_epoch} steps of {args.batch_size} images)")
    # Peak resident set of the whole process (ru_maxrss, KiB on Linux): on the CPU the figure to
    # put beside bench_train's, which reports the same measure.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        print(f"peak memory: {peak:.1f} MiB (torch.cuda.max_memory_allocated)")
    print(f"peak resident set: {rss:.1f} MiB (process, ru_maxrss)")
    print(f"loss: {loss_first:.4f} after warm-up, {loss_last:.4f} after the timed steps")
    print(f"RESULT framework=pytorch model={args.model} device={device.type} "
          f"kernels={'cudnn' if cuda else 'cpu'} tf32={int(args.tf32)} precision={args.precision} "
          f"channels_last={int(args.channels_last)} "
          f"batch={args.batch_size} "
          f"data=synthetic steps={args.steps} median_step_ms={median:.4f} p10_step_ms={q[0]:.4f} "
          f"p90_step_ms={q[-1]:.4f} images_per_s={ips:.2f} window_images_per_s={wips:.2f} "
          f"epoch_estimate_s={epoch_s:.2f} peak_mem_mib={peak:.1f} peak_rss_mib={rss:.1f} "
          f"loss_first={loss_first:.4f} loss_last={loss_last:.4f}")
    if args.csv:
        fresh = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as f:
            w = csv.writer(f)
            if fresh:
                w.writerow(["framework", "model", "device", "kernels", "tf32", "batch", "data", "steps",
                            "median_step_ms", "p10_step_ms", "p90_step_ms", "images_per_s",
                            "window_images_per_s", "epoch_estimate_s", "peak_mem_mib", "commit"])
            w.writerow(["pytorch", args.model, device.type, "cudnn" if cuda else "cpu", int(args.tf32),
                        args.batch_size, "synthetic", args.steps, f"{median:.4f}", f"{q[0]:.4f}",
                        f"{q[-1]:.4f}", f"{ips:.2f}", f"{wips:.2f}", f"{epoch_s:.2f}",
                        "" if not cuda else f"{peak:.1f}", git_commit()])


def train(args, device):
    torch.manual_seed(args.seed)
    data_dir = args.data or default_data_dir()
    train_x, train_y = read_cifar10(data_dir, "train")
    test_x, test_y = read_cifar10(data_dir, "test")
    if args.subset:
        train_x, train_y = train_x[:args.subset], train_y[:args.subset]
    if args.test_subset:
        test_x, test_y = test_x[:args.test_subset], test_y[:args.test_subset]
    mean, std = channel_stats(train_x)
    mean, std = mean.to(device), std.to(device)
    train_x, train_y = train_x.to(device), train_y.to(device)
    test_x, test_y = test_x.to(device), test_y.to(device)

    model = build_model(args).to(device)
    opt = make_optimizer(args, model.parameters())
    crit = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    header(args, device, "--train: CIFAR-10, per-epoch test accuracy")
    print(f"# model {args.model}, data {data_dir} ({len(train_y)} train, {len(test_y)} test), "
          f"batch {args.batch_size}, epochs {args.epochs}, optimizer {args.optimizer} lr {args.lr} "
          f"momentum {args.momentum} wd {args.wd} schedule {args.schedule}, augment {args.augment}")
    out = args.out or os.path.join("runs", f"torch-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out, exist_ok=True)
    metrics_path = os.path.join(out, "metrics.csv")

    n = len(train_y)
    steps = -(-n // args.batch_size)
    rows, best, best_epoch, t_target = [], 0.0, -1, None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(args.seed * 100003 + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(steps):
            lr = lr_at(args, epoch + i / steps)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            x = augment_normalize(train_x[idx], mean, std, args.augment, gen)
            y = train_y[idx]
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = crit(logits, y)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
        sync(device)
        train_s = time.perf_counter() - t0
        train_loss, train_acc = loss_sum.item() / n, 100.0 * correct.item() / n

        model.eval()
        tl, tc = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
        with torch.no_grad():
            for i in range(0, len(test_y), 1000):
                x = augment_normalize(test_x[i:i + 1000], mean, std, False, None)
                logits = model(x)
                tl += F.cross_entropy(logits, test_y[i:i + 1000], reduction="sum")
                tc += (logits.argmax(1) == test_y[i:i + 1000]).sum()
        test_loss, test_acc = tl.item() / len(test_y), 100.0 * tc.item() / len(test_y)
        epoch_s = time.perf_counter() - t0
        if test_acc > best:
            best, best_epoch = test_acc, epoch + 1
        if t_target is None and args.target_acc and test_acc >= args.target_acc:
            t_target = time.perf_counter() - start
        rows.append([epoch + 1, lr_at(args, epoch + 1 - 1e-9), train_loss, train_acc, test_loss,
                     test_acc, epoch_s, n / train_s])
        print(f"EPOCH epoch={epoch + 1} lr={rows[-1][1]:.6g} train_loss={train_loss:.4f} "
              f"train_acc={train_acc:.2f} test_loss={test_loss:.4f} test_acc={test_acc:.2f} "
              f"epoch_seconds={epoch_s:.2f} images_per_second={n / train_s:.1f}")
        sys.stdout.flush()
        with open(metrics_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                        "epoch_seconds", "images_per_second"])
            w.writerows([[repr(v) if isinstance(v, float) else v for v in r] for r in rows])
    total = time.perf_counter() - start
    print(f"RESULT framework=pytorch mode=train model={args.model} device={device.type} "
          f"epochs={args.epochs} batch={args.batch_size} best_test_acc={best:.2f} best_epoch={best_epoch} "
          f"final_test_acc={rows[-1][5]:.2f} total_s={total:.1f} target_acc={args.target_acc} "
          f"time_to_target_s={'nan' if t_target is None else f'{t_target:.1f}'} metrics={metrics_path}")


def default_data_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "cifar-10-batches-bin"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--throughput", action="store_true", help="synthetic-data step timing")
    mode.add_argument("--train", action="store_true", help="train on CIFAR-10 with per-epoch accuracy")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--zero-init-residual", action="store_true")
    p.add_argument("--dropout", type=float, default=0.5, help="AlexNet classifier dropout")
    p.add_argument("--data", default="", help="cifar-10-batches-bin directory")
    p.add_argument("--subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", "-b", type=int, default=128)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", "--weight-decay", type=float, default=5e-4)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--schedule", default="step", choices=["step", "multistep", "cosine", "constant"])
    p.add_argument("--step-size", type=int, default=20)
    p.add_argument("--gamma", type=float, default=0.5)
    p.add_argument("--milestones", type=lambda s: [int(v) for v in s.split(",") if v], default=[])
    p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN and cuBLAS")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="--throughput: torch.autocast to this dtype (fp16 with a GradScaler)")
    p.add_argument("--channels-last", action="store_true",
                   help="--throughput: model and batches in torch.channels_last (NHWC), as AMP recipes do")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=30, help="--throughput: timed steps")
    p.add_argument("--warmup-steps", type=int, default=5, help="--throughput: untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--csv", default="", help="--throughput: append the result to this CSV")
    p.add_argument("--target-acc", type=float, default=0.0, help="--train: report time to this test accuracy")
    p.add_argument("--out", default="", help="--train: run directory for metrics.csv")
    args = p.parse_args()

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("pytorch_reference: --device cuda but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.throughput:
        throughput(args, device)
    else:
        train(args, device)


if __name__ == "__main__":
    main()
