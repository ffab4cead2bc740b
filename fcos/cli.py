"""fcos: FCOS two-stage pruning of AMR networks, from the command line.

Every user error (unknown name, missing file, bad value) ends with exit code 2 and one line on
stderr: ``fcos: error: <what is wrong>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import FcosError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a single line (and exit code 2)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _checked_number(convert, accept, expected: str, name: str):
    """An argparse type: ``convert`` the text, then ``accept`` the value, else one line saying
    what was ``expected``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


_positive_int = _checked_number(int, lambda value: value >= 1, "a positive integer", "positive_int")
_fraction = _checked_number(float, lambda value: 0 <= value < 1, "a number in [0, 1)", "fraction")
_workers = _checked_number(int, lambda value: value >= 0, "an integer >= 0", "workers")


def _seed(text: str) -> int:
    """A seed: the library's one rule (fcos.data.split.check_seed), checked before any work."""
    from .data.split import check_seed
    from .errors import ConfigError

    try:
        return check_seed(int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}") from None


def _device(text: str) -> str:
    """A device name, refused here (one line, exit 2) when it is malformed or not on this
    machine: ``--device cuda`` without CUDA never falls back to the CPU."""
    from .device import resolve_device
    from .errors import ConfigError

    try:
        resolve_device(text, key="device")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _megabytes(text: str) -> float:
    from .data.prepared import resolve_max_in_memory_mb
    from .errors import ConfigError

    try:
        return resolve_max_in_memory_mb(float(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected a number of MB >= 0, got {text!r}") from None


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    """The options 'fcos train' and 'fcos finetune' share (fcos.train.TrainConfig fields; unset
    ones keep the TrainConfig defaults), with the device settings."""
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--seed", type=_seed)
    p.add_argument("--lr", type=float)
    _add_device_flags(p)
    p.add_argument("--max-batches-per-epoch", type=_positive_int, help="cap steps per epoch (smoke runs)")
    p.add_argument("--no-progress", action="store_true")


def _add_device_flags(p: argparse.ArgumentParser, *, precision: bool = True,
                      device_default: str = "auto") -> None:
    """The device settings of a command that computes (fcos.device; the config's ``device``,
    ``train.mixed_precision``, ``train.loader_workers`` and FCOS_MAX_IN_MEMORY_MB)."""
    from .device import PRECISIONS

    p.add_argument("--device", type=_device,
                   help=f"auto, cpu, cuda or cuda:N (default {device_default}; auto = CUDA when present)")
    if precision:
        p.add_argument("--mixed-precision", choices=PRECISIONS,
                       help="forward passes in bf16/fp16 on CUDA (default off; a CPU runs float32)")
    p.add_argument("--loader-workers", type=_workers,
                   help="threads reading batches ahead (default: 4 with pinned memory on CUDA, 0 on CPU)")
    p.add_argument("--max-in-memory-mb", type=_megabytes,
                   help="splits larger than this are read from the file by row (default: "
                        "FCOS_MAX_IN_MEMORY_MB, else 1024)")


def _device_settings(args: argparse.Namespace) -> dict:
    """The device settings given on the command line, as keyword arguments of fcos.api."""
    return _given(device=args.device, mixed_precision=getattr(args, "mixed_precision", None),
                  loader_workers=args.loader_workers)


def _given(**values):
    """The keyword arguments that were given (not None): command-line overrides of a config."""
    return {key: value for key, value in values.items() if value is not None}


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


# --- subcommands -----------------------------------------------------------------------------

def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import prepare_dataset

    import warnings

    with warnings.catch_warnings():
        # The manifest's warnings are printed below, once, as one line each.
        warnings.simplefilter("ignore", UserWarning)
        manifest = prepare_dataset(
            args.dataset, args.source, args.out, per_class_snr=args.per_class_snr, seed=args.seed,
            strict=args.strict, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
            min_snr=args.min_snr, progress=not args.no_progress,
        )
    counts = manifest["counts"]
    print(f"wrote {args.out}: {manifest['dataset']} from {manifest['source']}, "
          f"train/val/test = {counts['train']}/{counts['val']}/{counts['test']}")
    for warning in manifest.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .data import verify_prepared

    _print_json(verify_prepared(args.file))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from .data.formats import write_format_samples

    # Without --frames the library's default applies: the frames of the samples DVC tracks.
    frames = {} if args.frames is None else {"frames": args.frames}
    for path in write_format_samples(args.out, seed=args.seed, **frames):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


MODEL_FILE_HELP = ("a user's model builder FILE.py:FUNCTION; the file is imported, i.e. its "
                   "code is executed, so name only your own trusted code")
MODEL_ARGS_HELP = ("JSON object of keyword arguments for --model-file's function (num_classes and "
                   "length are filled from the dataset where it takes them)")


def _user_builder(args: argparse.Namespace):
    """The UserBuilder of --model-file/--model-args, or None when --model-file is not given."""
    from .errors import ConfigError
    from .models.user_builder import parse_builder_spec

    if args.model_file is None:
        if args.model_args is not None:
            raise ConfigError("--model-args needs --model-file FILE.py:FUNCTION")
        return None
    return parse_builder_spec(args.model_file, args.model_args)


def _add_model_file(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--model-file", metavar="FILE.py:FUNCTION", help=f"{MODEL_FILE_HELP}; {what}")
    p.add_argument("--model-args", metavar="JSON", help=MODEL_ARGS_HELP)


def cmd_train(args: argparse.Namespace) -> int:
    from .api import train_base_model
    from .errors import ConfigError

    builder = _user_builder(args)
    if (builder is None) == (args.model is None):
        raise ConfigError("train: give exactly one of --model NAME and --model-file FILE.py:FUNCTION")
    overrides = _given(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                       l1_penalty=args.l1_penalty, max_batches_per_epoch=args.max_batches_per_epoch,
                       **_device_settings(args))
    record = train_base_model(args.data, args.model or builder.function, args.out, overrides,
                              progress=not args.no_progress, builder=builder,
                              max_in_memory_mb=args.max_in_memory_mb)
    print(f"wrote {args.out}: best val accuracy {record['best_val_accuracy']:.4f} "
          f"at epoch {record['best_epoch']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate_to_json

    metrics = evaluate_to_json(args.checkpoint, args.data, args.out, split=args.split,
                               allow_other_split=args.allow_other_split,
                               max_in_memory_mb=args.max_in_memory_mb, **_device_settings(args))
    print(f"wrote {args.out}: accuracy {metrics['accuracy']:.4f} on {metrics['n_test']} "
          f"{args.split} examples, {metrics['macs']:,} MACs, {metrics['params']:,} params")
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    from .api import seal_checkpoint

    record = seal_checkpoint(args.checkpoint, args.out)
    note = "it was already sealed and verifies" if record["was_sealed"] else "structure checked"
    print(f"wrote {args.out}: sealed copy of {args.checkpoint} ({record['kind']}; {note})")
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """``key=value`` pairs; values parsed as YAML scalars/lists (0.5, true, [a, b], text)."""
    import yaml

    from .errors import ConfigError

    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected key=value")
        options[key] = yaml.safe_load(value)
    return options


def cmd_prune(args: argparse.Namespace) -> int:
    from .api import prune_checkpoint

    options = _parse_options(args.option)
    if args.keep_ratio is not None:
        options["keep_ratio"] = args.keep_ratio
    if args.linkage is not None:
        options["linkage"] = args.linkage
    report = args.report or args.out.with_name(args.out.name + ".json")
    record = prune_checkpoint(args.checkpoint, args.data, args.pruner, args.out, report, budget=args.budget,
                              seed=args.seed, options=options, progress=not args.no_progress,
                              builder=_user_builder(args), max_in_memory_mb=args.max_in_memory_mb,
                              **_device_settings(args))
    print(f"wrote {args.out} and {report}: MACs {record['macs_before']:,} -> {record['macs_after']:,} "
          f"({1 - record['macs_after'] / record['macs_before']:.1%} fewer), params "
          f"{record['params_before']:,} -> {record['params_after']:,} (not fine-tuned yet)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .api import finetune_checkpoint

    overrides = _given(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                       max_batches_per_epoch=args.max_batches_per_epoch, **_device_settings(args))
    record = finetune_checkpoint(args.checkpoint, args.data, args.out, overrides, progress=not args.no_progress,
                                 max_in_memory_mb=args.max_in_memory_mb)
    print(f"wrote {args.out}: best val accuracy {record['best_val_accuracy']:.4f} at epoch {record['best_epoch']}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from .api import diagnose_checkpoint
    from .prune.options import check_options
    from .prune.probes import DIAGNOSE_OPTIONS

    options = _parse_options(args.option)
    check_options("lacd (diagnosis)", options, DIAGNOSE_OPTIONS)
    report = diagnose_checkpoint(args.checkpoint, args.data, args.out, options=options,
                                 seed=args.seed, progress=not args.no_progress,
                                 max_in_memory_mb=args.max_in_memory_mb, **_device_settings(args))
    collapsed = ", ".join(report["collapsed"]) or "none"
    print(f"wrote {args.out}: probe accuracy of {len(report['points'])} points on {report['n_val']} val "
          f"examples (epsilon {report['epsilon']:.4f}); collapsed removable blocks: {collapsed}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .data import get_spec
    from .metrics import macs_and_params
    from .models import build_model

    spec = get_spec(args.dataset)
    length = args.length or spec.length
    macs, params = macs_and_params(build_model(args.model, spec.num_classes, length), length)
    _print_json({"model": args.model, "dataset": spec.name, "length": length,
                 "num_classes": spec.num_classes, "macs": int(macs), "params": int(params)})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .api import export_checkpoint

    record = export_checkpoint(args.checkpoint, args.data, args.format, args.out, atol=args.atol,
                               check_examples=args.check_examples, split=args.split)
    print(f"wrote {args.out} ({args.format}): outputs equal the PyTorch model's within "
          f"{record['max_abs_diff']:.2g} (atol {record['atol']:g}) at batch sizes "
          f"{', '.join(map(str, record['batch_sizes']))}, run by {record['runtime']}")
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    from .api import measure_checkpoint_latency

    config = _given(batch_sizes=args.batch_sizes, warmup=args.warmup, repeats=args.repeats,
                    threads=args.threads, device=args.device)
    record = measure_checkpoint_latency(args.checkpoint, args.out, reference=args.reference,
                                        data_path=args.data, exported=tuple(args.exported or ()),
                                        config=config, progress=not args.no_progress)
    print(f"wrote {args.out}: median latency (ms) with {record['batches'][0]['threads']} thread(s) "
          f"on {record['machine']['device']}")
    for entry in record["batches"]:
        cells = []
        for name, stats in entry["models"].items():
            cell = f"{name} {stats['median_ms']:.3f}"
            if "speedup" in stats and name != "base":
                cell += f" ({stats['speedup']['median']:.2f}x base)"
            cells.append(cell)
        load = entry["load_before"][0]
        print(f"  batch {entry['batch_size']}: {', '.join(cells)}; load {load:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fcos", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fcos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("prepare", help="synthesise or load a dataset, split it, write a prepared HDF5 file")
    p.add_argument("dataset", help="rml2016, rml2018 or sig2019")
    p.add_argument("--source", required=True, help="'synthetic' or the path of the real dataset file")
    p.add_argument("--out", required=True, type=Path, help="prepared file to write (.h5)")
    p.add_argument("--per-class-snr", type=_positive_int, default=None,
                   help="frames per (class, SNR): synthetic size, or a cap when loading a real file")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--strict", action="store_true", help="refuse real files that differ from the official release")
    p.add_argument("--min-snr", type=int, default=None, help="keep SNR >= this (the authors use 10 for RML2018)")
    p.add_argument("--val-fraction", type=_fraction, default=0.1)
    p.add_argument("--test-fraction", type=_fraction, default=0.2)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("inspect", help="verify a prepared file (structure, every split's sha256); print its manifest as JSON")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("samples", help="write small synthetic sample files in the real datasets' formats")
    p.add_argument("--out", required=True, type=Path, help="directory to write (e.g. data/samples)")
    p.add_argument("--frames", type=_positive_int, default=None,
                   help="frames per (class, SNR) (default: the committed samples' 3)")
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("train", help="train a base model on a prepared dataset")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--model", help="cnn1d, resnet56 or signet50 (or --model-file)")
    _add_model_file(p, "the checkpoint records the file, function, arguments and the file's "
                       "SHA-256, so later commands rebuild it without being told")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt)")
    _add_training_flags(p)
    p.add_argument("--l1-penalty", type=float, help="L1 coefficient (default: the authors' per-model choice)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy overall / per SNR / confusion of a checkpoint, to JSON")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="metrics JSON to write")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    _add_device_flags(p, precision=False)  # evaluation runs in float32
    p.add_argument("--allow-other-split", action="store_true",
                   help="evaluate a checkpoint trained on another prepared file (warns; its test vectors "
                        "may be training vectors of the checkpoint)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("seal", help="write a checksummed copy of a checkpoint written before checkpoints were sealed")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", required=True, type=Path, help="sealed checkpoint to write")
    p.set_defaults(func=cmd_seal)

    p = sub.add_parser("prune", help="apply a pruner to a checkpoint (then run 'fcos finetune')")
    p.add_argument("pruner", help="the pruner: fcos-stage1, lacd, l1, fpgm, slimming, taylor, random-channel, lcp, sr-init, "
                                  "random-layer")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data", type=Path, help="prepared dataset (needed by data-driven methods)")
    p.add_argument("--out", required=True, type=Path, help="pruned checkpoint to write")
    p.add_argument("--report", type=Path, help="JSON record of the step (default: OUT.json)")
    _add_model_file(p, "rebuilds the checkpoint's model with this builder instead of the one it "
                       "records (after moving or editing the file); without it the recorded one is used")
    p.add_argument("--budget", "--target-macs-reduction", dest="budget", type=_fraction,
                   help="target MAC reduction in [0, 1)")
    p.add_argument("--keep-ratio", type=float, help="fcos-stage1: channels kept per group, in (0, 1]")
    p.add_argument("--linkage", choices=("average", "complete", "single", "ward"), help="fcos-stage1 linkage")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="any option of the pruner (repeatable)")
    p.add_argument("--seed", type=_seed, default=0)
    _add_device_flags(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("finetune", help="recovery fine-tuning of a pruned checkpoint (best on val)")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    _add_training_flags(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("diagnose", help="LaCD linear probes on every block of a checkpoint (collapsed blocks), to JSON")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="probe report JSON to write")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a lacd diagnosis option (pooling, epsilon, max_train, ...; repeatable)")
    p.add_argument("--seed", type=_seed, default=0)
    _add_device_flags(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("profile", help="MACs and params of a model for a dataset's input, as JSON")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--length", type=_positive_int, help="override the dataset's vector length")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("export", help="write a checkpoint's model as ONNX or TorchScript, checked on real inputs")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", required=True, type=Path, help="file to write (.onnx, .ts)")
    p.add_argument("--data", required=True, type=Path,
                   help="prepared dataset: the exported outputs are checked on its examples")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--check-examples", type=_positive_int, default=256,
                   help="examples the check runs on (also the large check batch)")
    p.add_argument("--atol", type=float, help="largest accepted logit difference (default 1e-4)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("latency", help="time a checkpoint's inference (and a base model, exported files)")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--reference", type=Path, help="base checkpoint timed in the same run (speedup)")
    p.add_argument("--exported", type=Path, action="append",
                   help="an exported .onnx / TorchScript file of the model, timed alongside (repeatable)")
    p.add_argument("--data", type=Path, help="prepared dataset whose test inputs are used (default: random)")
    p.add_argument("--out", required=True, type=Path, help="latency JSON to write")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", help="default: 1 256")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=_positive_int)
    p.add_argument("--threads", type=_positive_int, help="intra-op threads (default 1)")
    p.add_argument("--device", type=_device, help="cpu (default), cuda, cuda:N, auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_latency)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="fcos: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except FcosError as err:
        print(f"fcos: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # Last resort for a file system error no check foresaw (e.g. a directory output lying
        # under a file): still one line naming the path, not a traceback.
        where = f"{err.filename}: " if err.filename else ""
        print(f"fcos: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
