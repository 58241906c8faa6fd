"""The command line the scripts share: argument types and the flags several scripts take, each declared once."""
import argparse

from arg_types import non_negative_int, positive_int
from device import DEVICES
from model_names import MODEL_TYPES, canonical_model_type
from oxford_pet import MODES

DEFAULT_DATA_PATH = "dataset/oxford-iiit-pet"
NOT_TYPED = object()


def model_type_arg(text):
    """argparse type: a canonical model type, or an error message that lists the valid names."""
    try:
        return canonical_model_type(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_data_flags(parser):
    parser.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                        help=f"dataset folder (default {DEFAULT_DATA_PATH}; train.py downloads it when missing)")
    parser.add_argument("--no_cache", action="store_true",
                        help="decode and resize the original files every time instead of using the resize cache")


def add_device_flags(parser):
    parser.add_argument("--device", default="auto", choices=DEVICES, help="default auto: CUDA, then MPS, then CPU")
    parser.add_argument("--num_workers", type=non_negative_int, default=None,
                        help="data loader workers (default: 4 on CUDA, 0 on the CPU)")


def add_model_type_flag(parser, default="ResNet34_Unet"):
    """--model_type; with default None (scripts that read a checkpoint), a value given must agree with it."""
    check = " (must agree with the checkpoint)" if default is None else ""
    parser.add_argument("--model_type", type=model_type_arg, default=default,
                        help=f"{', '.join(MODEL_TYPES.values())}, any letter case" + check)


def add_cbam_flag(parser, default=True):
    """--no_cbam, stored as use_cbam; with default None (scripts that read a checkpoint), it must agree with it."""
    check = " (must agree with the checkpoint)" if default is None else ""
    parser.add_argument("--no_cbam", dest="use_cbam", action="store_const", const=False, default=default,
                        help="ResNet34_Unet without CBAM (an error for models without it)" + check)


def add_scoring_flags(parser):
    """The flags of a test of a trained model (evaluate.py and inference.py)."""
    parser.add_argument("--split", choices=MODES, default="test")
    parser.add_argument("--batch_size", "-b", type=positive_int, default=4)
    parser.add_argument("--tta", action="store_true", help="average with the horizontally flipped prediction")
    parser.add_argument("--full_resolution", action="store_true",
                        help="score each prediction upsampled to its image's own size, against the original trimap")
    add_model_type_flag(parser, default=None)
    add_cbam_flag(parser, default=None)


def add_output_flags(parser):
    parser.add_argument("--save_dir", default="saved_models", help="model checkpoints (default saved_models)")
    parser.add_argument("--log_dir", default="checkpoints",
                        help="histories, inference_result.csv and pictures (default checkpoints)")


def typed_flags(build_parser, argv):
    """{dest: flag} of the options that argv gives explicitly, whatever their values (a value equal to the default
    counts too): argv is parsed again by a fresh parser whose defaults are all a marker that no typed value is."""
    probe = build_parser()
    probe.set_defaults(**dict.fromkeys(vars(probe.parse_args(argv)), NOT_TYPED))
    typed = {dest for dest, value in vars(probe.parse_args(argv)).items() if value is not NOT_TYPED}
    # argparse has no public map from a destination to its flags.
    return {action.dest: action.option_strings[0] for action in probe._actions if action.dest in typed}
