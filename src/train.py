"""Train a segmentation network (U-Net, ResNet34+U-Net, DeepLabV3+, HRNet) on Oxford-IIIT Pet with the report's loop.

    python src/train.py --data_path dataset/oxford-iiit-pet --model_type ResNet34_Unet -e 50 -b 8
    python src/train.py --resume saved_models/ResNet34_Unet_bs8_last.pth
    torchrun --standalone --nproc_per_node=4 src/train.py -b 8 ...   (DistributedDataParallel; -b is per process)
"""
import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import arg_types
import cli
from checkpoint import (check_optimizer_state, check_training_checkpoint, load_checkpoint, load_resumed_model,
                        save_checkpoint, training_args)
from data import NORMALIZATION, SeededSampler, build_loader, prepare_batch
from device import autocast, grad_scaler, init_distributed, is_main_process, process_rank
from errors import ProjectError, run_cli
from evaluate import evaluate
from files import check_folder, save_json
from losses import BORDERS, LOSSES, compute_loss, ignore_border
from mixing import batch_rng, mix_batch
from models import build_model, check_model_flags, has_cbam, model_record
from optimization import (SCHEDULES, build_optimizer, build_scheduler, continue_schedule, schedule_outlook,
                          step_scheduler)
from oxford_pet import load_dataset
from recipes import REPORT_RECIPE
from transforms import SegmentationTransform

# The flags that say where and how long to run. They default to None, "not typed": on --resume the typed ones
# replace the checkpoint's, and what neither sets gets these defaults.
# --amp and --no_channels_last are among them: a run continues under either (its gradient scaler starts afresh when
# it had none), though no longer as the uninterrupted run would.
RUNTIME_DEFAULTS = {"epochs": 50, "device": "auto", "num_workers": None, "data_path": cli.DEFAULT_DATA_PATH,
                    "no_cache": False, "compile": False, "save_dir": "saved_models", "log_dir": "checkpoints",
                    "amp": False, "no_channels_last": False}


def recipe_parser():
    """The training flags that src/reproduce.py also takes and passes to every run of a sweep (an argparse parent)."""
    parser = argparse.ArgumentParser(add_help=False)
    cli.add_data_flags(parser)
    cli.add_device_flags(parser)
    parser.add_argument("--epochs", "-e", type=arg_types.positive_int,
                        help="default 50; with --resume, the checkpoint's")
    parser.add_argument("--learning-rate", "-lr", dest="learning_rate", type=arg_types.positive_float,
                        default=REPORT_RECIPE["learning_rate"])
    cli.add_cbam_flag(parser)
    parser.add_argument("--image_size", type=arg_types.image_size_int, default=256)
    parser.add_argument("--seed", type=arg_types.seed_int, default=0)
    parser.add_argument("--amp", action="store_true", help="mixed precision: bf16 where supported, else fp16")
    parser.add_argument("--no_channels_last", action="store_true", help="keep NCHW memory layout")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--sync_bn", action="store_true", help="SyncBatchNorm under torchrun")
    parser.add_argument("--loss", choices=LOSSES, default=REPORT_RECIPE["loss"],
                        help="ce (the report's), dice, or ce+dice")
    parser.add_argument("--patience", type=arg_types.positive_int, default=5,
                        help="early stopping: epochs without better Dice")
    parser.add_argument("--lr_patience", type=arg_types.non_negative_int, default=2,
                        help="ReduceLROnPlateau patience (epochs)")
    parser.add_argument("--no_augment", action="store_true", help="train without augmentation")
    parser.add_argument("--occlusion", action="store_true", help="add random occlusion (CoarseDropout) augmentation")
    parser.add_argument("--cutmix", type=arg_types.probability, default=REPORT_RECIPE["cutmix"], metavar="P",
                        help="per batch with probability P, paste a random box of another image and its mask")
    parser.add_argument("--mixup", type=arg_types.probability, default=REPORT_RECIPE["mixup"], metavar="P",
                        help="per batch with probability P, blend images and their targets (after --cutmix)")
    parser.add_argument("--mixup_alpha", type=arg_types.positive_float, default=REPORT_RECIPE["mixup_alpha"],
                        help="mixup's lambda ~ Beta(alpha, alpha) (default 0.4)")
    parser.add_argument("--border", choices=BORDERS, default=REPORT_RECIPE["border"],
                        help="the trimap's border pixels in the loss: pet (the report's) or ignore (evaluation "
                        "always counts them as pet)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=REPORT_RECIPE["schedule"],
                        help="plateau (the report's ReduceLROnPlateau on validation Dice) or cosine over --epochs")
    parser.add_argument("--warmup_epochs", type=arg_types.non_negative_int, default=REPORT_RECIPE["warmup_epochs"],
                        help="--schedule cosine: epochs of linear warm-up first")
    parser.add_argument("--weight_decay", type=arg_types.non_negative_float, default=REPORT_RECIPE["weight_decay"],
                        help="AdamW with this decoupled weight decay when above 0 (default: Adam)")
    parser.set_defaults(**{flag: None for flag in ("epochs", "device", "data_path", "no_cache", "compile", "amp",
                                                   "no_channels_last")})
    return parser


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[recipe_parser()])
    cli.add_model_type_flag(parser)
    parser.add_argument("--batch_size", "-b", type=arg_types.positive_int, default=4, help="per process under torchrun")
    parser.add_argument("--encoder_weights", default=None,
                        help="'imagenet' or a resnet34 .pth (the models with a ResNet34 encoder)")
    parser.add_argument("--resume", default=None, help="a *_last.pth to continue from")
    parser.add_argument("--overwrite", action="store_true", help="start afresh over an earlier run of the same name")
    cli.add_output_flags(parser)
    parser.set_defaults(save_dir=None, log_dir=None)
    return parser


def parse_args(argv=None):
    """train.py's arguments; with --resume, a typed flag that would change the run (not one of RUNTIME_DEFAULTS) is
    refused, since the run continues with the checkpoint's own settings."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.resume:
        fixed = [flag for dest, flag in cli.typed_flags(get_args_parser, argv).items()
                 if dest not in RUNTIME_DEFAULTS and dest != "resume"]
        if fixed:
            runtime = ", ".join(f"--{flag}" for flag in RUNTIME_DEFAULTS)
            parser.error(f"--resume continues a run with the settings it was trained with, so {', '.join(fixed)} "
                         f"cannot apply to it; only {runtime} can be given with --resume. To train with other "
                         "settings, start a new run without --resume (with --overwrite, or another --save_dir, to "
                         "keep it apart from this one).")
    return args


def run_name(args):
    """'{model_type}_bs{batch}', with '_nocbam' after the model type for a model with CBAM trained without it."""
    no_cbam = "_nocbam" if has_cbam(args.model_type) and not args.use_cbam else ""
    return f"{args.model_type}{no_cbam}_bs{args.batch_size}"


def output_paths(args):
    name = run_name(args)
    return {"best": Path(args.save_dir) / f"{name}_best_model.pth", "last": Path(args.save_dir) / f"{name}_last.pth",
            "history": Path(args.log_dir) / f"{name}_history.json"}


def restore_args(args, checkpoint):
    """The checkpoint's settings (today's defaults for flags newer than it), with the runtime flags typed on this
    command line replacing its own."""
    recorded = training_args(checkpoint)
    restored = {**vars(get_args_parser().parse_args([])), **recorded, **relocated_paths(recorded, args.resume),
                "resume": args.resume}
    restored.update({flag: getattr(args, flag) for flag in RUNTIME_DEFAULTS if getattr(args, flag) is not None})
    return argparse.Namespace(**restored)


def relocated_paths(recorded, resume):
    """A resumed run's folders, wherever the command starts: save_dir is the resumed file's folder; log_dir and
    data_path move with it when the run's folder was moved, or were recorded relative to the folder its training
    started in (older checkpoints). An absolute data_path that still exists stays."""
    new_save = Path(os.path.abspath(resume)).parent
    old_root, new_root = common_root(Path(recorded["save_dir"]), new_save)

    def moved(path):
        path = Path(path)
        try:
            return str(new_root / path.relative_to(old_root))
        except ValueError:
            return os.path.abspath(path)

    data_path = Path(recorded["data_path"])
    keep_data = data_path.is_absolute() and data_path.exists()
    return {"save_dir": str(new_save), "log_dir": moved(recorded["log_dir"]),
            "data_path": str(data_path) if keep_data else moved(data_path)}


def common_root(old, new):
    """(old root, new root): old and new with the longest tail of folder names they share taken off."""
    while old.name and old.name == new.name:
        old, new = old.parent, new.parent
    return old, new


def fill_runtime_defaults(args):
    """Give every runtime flag that is None (or missing) its default; returns args, changed in place."""
    for flag, default in RUNTIME_DEFAULTS.items():
        if getattr(args, flag, None) is None:
            setattr(args, flag, default)
    return args


def build_datasets(args, rank):
    """Training and validation datasets; rank 0 builds the resize cache first so other processes only read it."""
    transform = None if args.no_augment else SegmentationTransform(occlusion=args.occlusion, seed=args.seed)
    use_cache = not args.no_cache
    if rank != 0:
        dist.barrier()
    train_set = load_dataset(args.data_path, "train", transform, args.image_size, use_cache, download=rank == 0)
    valid_set = load_dataset(args.data_path, "valid", None, args.image_size, use_cache, download=False)
    if rank == 0 and dist.is_initialized():
        dist.barrier()
    return train_set, valid_set


def build_loaders(args, device, rank, world_size):
    """(training loader in SeededSampler's order, this process's disjoint slice of the validation split)."""
    train_set, valid_set = build_datasets(args, rank)
    sampler = SeededSampler(train_set, args.seed, rank, world_size, args.batch_size)
    train_loader = build_loader(train_set, args.batch_size, args.num_workers, device, sampler=sampler)
    # Each process scores a disjoint slice of the validation split, with no padding, so summed metrics are exact.
    valid_shard = torch.utils.data.Subset(valid_set, range(rank, len(valid_set), world_size))
    return train_loader, build_loader(valid_shard, args.batch_size, args.num_workers, device)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_finite(loss_sum, steps, epoch):
    if not math.isfinite(loss_sum):
        raise ProjectError(f"the training loss became {loss_sum} in epoch {epoch} (after {steps} steps); the run "
                           "stopped without saving this epoch. Try a lower --learning-rate, or drop --amp.")


def check_finite_model(model, val_loss, epoch):
    """A diverging run can keep a finite loss while BatchNorm's running statistics overflow: nothing non-finite may
    reach a checkpoint."""
    broken = next((name for name, tensor in model.state_dict().items()
                   if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
    if broken or not math.isfinite(val_loss):
        what = f"the model's {broken} holds inf or NaN" if broken else f"the validation loss became {val_loss}"
        raise ProjectError(f"the run diverged in epoch {epoch}: {what}; the run stopped without saving this epoch, "
                           "and the files of the last good epoch are kept. Try a lower --learning-rate, or drop "
                           "--amp.")


@dataclass
class Training:
    """What a run optimises: the model (unwrapped: what is saved and validated), the module the training step calls
    (the model wrapped in DDP and compiled, as asked), the optimizer, the LR schedule and the AMP gradient scaler."""
    model: torch.nn.Module
    step_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # ReduceLROnPlateau or LambdaLR (optimization.build_scheduler)
    scaler: torch.amp.GradScaler

    def state_dicts(self):
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dicts(self, checkpoint, path):
        check_optimizer_state(checkpoint, self.optimizer, path)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            if checkpoint["scaler"] or not self.scaler.is_enabled():  # a run trained without a scaler starts one
                self.scaler.load_state_dict(checkpoint["scaler"])
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as error:
            raise ProjectError(f"--resume {path}: its optimizer, schedule or gradient-scaler state cannot be "
                               f"restored ({type(error).__name__}: {str(error).strip()[:200]}); it was modified or "
                               "written by another program. Start afresh with --overwrite.") from None


def build_training(args, device, world_size=1, checkpoint=None):
    """The model on its device (resumed weights, SyncBatchNorm, channels_last, DDP and compile as asked), the
    optimizer and schedule of the recipe, and the gradient scaler."""
    model = build_model(args.model_type, use_cbam=args.use_cbam,
                        encoder_weights=None if checkpoint else args.encoder_weights)
    if checkpoint:
        load_resumed_model(model, checkpoint, args.resume)
    if args.sync_bn and world_size == 1:
        raise ProjectError("--sync_bn makes BatchNorm share its statistics between the processes of torchrun; a "
                           "single process has none to share. Drop it, or start with torchrun --nproc_per_node N.")
    if args.sync_bn:
        if device.type != "cuda":
            raise ProjectError("--sync_bn needs CUDA devices; SyncBatchNorm does not run on the CPU.")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=torch.preserve_format if args.no_channels_last else torch.channels_last)
    step_model = model
    if world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=None if device.index is None else [device.index])
    if args.compile:
        step_model = torch.compile(step_model)
    optimizer = build_optimizer(model.parameters(), args, device)
    training = Training(model, step_model, optimizer, build_scheduler(optimizer, args), grad_scaler(device, args.amp))
    if checkpoint:
        training.load_state_dicts(checkpoint, args.resume)
        continue_schedule(training.scheduler)
    return training


def training_batch(batch, device, args, rng):
    """A loader's batch on the device, normalised, its border pixels ignored and CutMix/mixup applied as asked."""
    images, masks = prepare_batch(batch, device, NORMALIZATION, channels_last=not args.no_channels_last)
    if args.border == "ignore":
        masks = ignore_border(masks, batch["trimap"].to(device, non_blocking=True))
    return mix_batch(images, masks, rng, args.cutmix, args.mixup, args.mixup_alpha)


def train_one_epoch(training, loader, device, args, epoch):
    """One pass over the training split; returns the mean loss over all processes' batches."""
    training.step_model.train()
    optimizer, scaler = training.optimizer, training.scaler
    loss_sum = torch.zeros((), device=device)
    steps = 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch", leave=False, disable=not is_main_process())
    for batch in bar:
        mixed = training_batch(batch, device, args, batch_rng(args.seed, epoch, steps, process_rank()))
        with autocast(device, args.amp):
            logits = training.step_model(mixed.images)
            loss = compute_loss(args.loss, logits, mixed.masks, mixed.other_masks, mixed.lam)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach()
        steps += 1
        if steps % 10 == 0 or steps == len(loader):
            # .item() waits for the GPU, so the running loss is read every 10 steps rather than every step.
            check_finite(loss_sum.item(), steps, epoch)
            bar.set_postfix(loss=f"{loss_sum.item() / steps:.4f}")
    totals = torch.stack([loss_sum, torch.tensor(float(steps), device=device)])
    if dist.is_initialized():
        dist.all_reduce(totals)
    mean_loss = (totals[0] / totals[1]).item()
    check_finite(mean_loss, steps, epoch)
    return mean_loss


class TrainingState:
    """Everything that changes from epoch to epoch and must survive a resume."""

    def __init__(self, checkpoint=None):
        checkpoint = checkpoint or {}
        self.epoch = checkpoint.get("epoch", 0)
        self.best_val_dice = checkpoint.get("best_val_dice", -1.0)
        self.best_epoch = checkpoint.get("best_epoch", 0)
        self.epochs_without_improvement = checkpoint.get("epochs_without_improvement", 0)
        self.history = list(checkpoint.get("history", []))
        self.saved_epoch = self.epoch  # the epoch in the *_last.pth on disk

    def is_done(self, args):
        return self.epoch >= args.epochs or self.epochs_without_improvement >= args.patience

    def record(self, row):
        """Add an epoch's row; return True when its validation Dice is the best so far."""
        self.epoch = row["epoch"]
        self.history.append(row)
        if row["val_dice"] > self.best_val_dice:
            self.best_val_dice, self.best_epoch, self.epochs_without_improvement = row["val_dice"], row["epoch"], 0
            return True
        self.epochs_without_improvement += 1
        return False

    def as_dict(self):
        return {"epoch": self.epoch, "best_val_dice": self.best_val_dice, "best_epoch": self.best_epoch,
                "epochs_without_improvement": self.epochs_without_improvement, "history": self.history}


def save_epoch(training, state, args, is_best):
    """Write the history, the resumable last checkpoint and, when improved, the best model (all atomic)."""
    paths = output_paths(args)
    weights = {"model": training.model.state_dict(),
               "model_record": model_record(args.model_type, args.use_cbam, args.image_size), "args": vars(args)}
    if is_best:
        save_checkpoint({**weights, "epoch": state.epoch, "val_dice": state.best_val_dice}, paths["best"])
    save_checkpoint({**weights, **state.as_dict(), **training.state_dicts()}, paths["last"])
    save_json({"args": vars(args), "history": state.history, "best_epoch": state.best_epoch,
               "best_val_dice": state.best_val_dice}, paths["history"])


def run_epoch(training, loaders, state, device, args):
    """Train, validate, step the schedule, then save and print one summary line (rank 0)."""
    train_loader, valid_loader = loaders
    epoch = state.epoch + 1
    seed_everything(args.seed + epoch)  # with the sampler's epoch, every random source follows from (seed, epoch)
    train_loader.sampler.set_epoch(epoch)
    start = time.perf_counter()
    lr = training.optimizer.param_groups[0]["lr"]
    train_loss = train_one_epoch(training, train_loader, device, args, epoch)
    train_seconds = time.perf_counter() - start
    metrics = evaluate(training.model, valid_loader, device, NORMALIZATION, amp=args.amp,
                       channels_last=not args.no_channels_last)
    check_finite_model(training.model, metrics["loss"], epoch)
    step_scheduler(training.scheduler, metrics["dice"])
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": metrics["loss"], "val_dice": metrics["dice"],
           "val_iou": metrics["iou"], "lr": lr,
           "seconds": time.perf_counter() - start, "images_per_second": len(train_loader.dataset) / train_seconds}
    is_best = state.record(row)
    if is_main_process():
        save_epoch(training, state, args, is_best)
        state.saved_epoch = epoch
        print(f"epoch {epoch}/{args.epochs}: train loss {train_loss:.4f}, val loss {metrics['loss']:.4f}, "
              f"val Dice {metrics['dice']:.4f}{' (best)' if is_best else ''}, lr {row['lr']:.2e}, "
              f"{row['seconds']:.1f} s, {row['images_per_second']:.1f} img/s (train)")


def print_banner(args, device, world_size, loaders, training, state):
    train_loader, valid_loader = loaders
    print(f"Training {run_name(args)} on {device} ({world_size} process{'es' if world_size > 1 else ''}): "
          f"{len(train_loader.dataset)} train / {len(valid_loader.dataset.dataset)} valid images "
          f"at {args.image_size}x{args.image_size}")
    print("  " + ", ".join(f"{key}={value}" for key, value in vars(args).items()))
    if not state.is_done(args):
        print(f"  schedule: {schedule_outlook(training.scheduler, args, state.epoch + 1)}")


def check_recipe(args):
    """The recipe checks that need more than one flag."""
    if args.schedule == "cosine" and args.warmup_epochs >= args.epochs:
        raise ProjectError(f"--warmup_epochs {args.warmup_epochs} is not shorter than the run's {args.epochs} "
                           "epochs; the cosine schedule needs at least one epoch after the warm-up.")
    if args.warmup_epochs and args.schedule != "cosine":
        raise ProjectError("--warmup_epochs is the warm-up of --schedule cosine; add --schedule cosine, or drop it.")
    if args.batch_size == 1 and args.image_size < 64:
        raise ProjectError(f"-b 1 at --image_size {args.image_size}: the deepest feature maps are 1x1, and BatchNorm "
                           "cannot train on a single value per channel; use -b 2 or more, or --image_size 64 or more.")
    if args.mixup_alpha != REPORT_RECIPE["mixup_alpha"] and not args.mixup:
        raise ProjectError("--mixup_alpha tunes --mixup, which is off; add --mixup P, or drop --mixup_alpha.")


def resolve_args(args):
    """(args, checkpoint): a --resume's checkpoint and its settings, or the command's; runtime defaults filled in."""
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume, "--resume")
        check_training_checkpoint(checkpoint, args.resume)
        args = restore_args(args, checkpoint)
    args = fill_runtime_defaults(args)
    for flag in ("save_dir", "log_dir"):
        check_folder(getattr(args, flag), f"--{flag}")
        setattr(args, flag, os.path.abspath(getattr(args, flag)))
    args.data_path = os.path.abspath(args.data_path)
    check_model_flags(args.model_type, args.use_cbam, args.encoder_weights)
    check_recipe(args)
    last = output_paths(args)["last"]
    if not args.resume and not args.overwrite and last.exists():
        raise ProjectError(f"{last} exists from an earlier run of {run_name(args)}; continue it with --resume {last}, "
                           "start afresh over it with --overwrite, or choose another --save_dir.")
    return args, checkpoint


def finished_before_starting(args, checkpoint):
    """Whether a resumed run has nothing left to train (said in a line); ProjectError when it stopped early and a
    larger --epochs asks for more, which early stopping does not give."""
    state = TrainingState(checkpoint)
    if not checkpoint or not state.is_done(args):
        return False
    if state.epochs_without_improvement >= args.patience and state.epoch < args.epochs:
        raise ProjectError(f"--resume {args.resume}: the run stopped early at epoch {state.epoch}, after "
                           f"{state.epochs_without_improvement} epochs without a better validation Dice (--patience "
                           f"{args.patience}), so -e {args.epochs} does not continue it. Start a new run with a larger "
                           "--patience to train longer.")
    print(f"{args.resume} is finished: it trained {state.epoch} of {args.epochs} epochs; give a larger -e to train on.")
    return True


def main(args):
    """Train one run; returns its TrainingState."""
    args, checkpoint = resolve_args(args)
    if finished_before_starting(args, checkpoint):
        return TrainingState(checkpoint)
    device, rank, world_size = init_distributed(args.device)
    try:
        state = train(args, checkpoint, device, rank, world_size)
        if dist.is_initialized():
            # Tearing gloo down while rank 0 still writes its last checkpoint sometimes aborts the other ranks.
            dist.barrier()
        return state
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(args, checkpoint, device, rank, world_size):
    seed_everything(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loaders = build_loaders(args, device, rank, world_size)
    training = build_training(args, device, world_size, checkpoint)
    state = TrainingState(checkpoint)
    paths = output_paths(args)
    if is_main_process():
        print_banner(args, device, world_size, loaders, training, state)
    try:
        while not state.is_done(args):
            run_epoch(training, loaders, state, device, args)
    except KeyboardInterrupt:
        if is_main_process():
            if state.saved_epoch:
                print(f"\nInterrupted; the last saved epoch ({state.saved_epoch}) is in {paths['last']}. "
                      f"Continue with: python src/train.py --resume {paths['last']}")
            else:
                print("\nInterrupted before the first epoch was saved; nothing was written.")
        sys.exit(130)
    if is_main_process():
        print(f"Best validation Dice {state.best_val_dice:.4f} at epoch {state.best_epoch}: {paths['best']}")
        print(f"History: {paths['history']}")
    return state


if __name__ == "__main__":
    run_cli(main, parse_args())
