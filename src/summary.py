"""Print the torchinfo summary of a model: python src/summary.py --model_type HRNet [--image_size 256].

ResNet34_Unet also takes --no_cbam; the other models have no CBAM to switch off.
"""
import argparse

import torchinfo

import arg_types
import cli
from errors import run_cli
from models import build_model


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    cli.add_model_type_flag(parser)
    cli.add_cbam_flag(parser)
    parser.add_argument("--image_size", type=arg_types.image_size_int, default=256)
    parser.add_argument("--batch_size", type=arg_types.positive_int, default=1)
    return parser


def model_summary(model_type, use_cbam=True, image_size=256, batch_size=1, depth=3):
    """The torchinfo ModelStatistics for one model on a batch of RGB images."""
    model = build_model(model_type, use_cbam=use_cbam)
    return torchinfo.summary(model, input_size=(batch_size, 3, image_size, image_size), depth=depth,
                             col_names=("output_size", "num_params", "mult_adds"), verbose=0)


def main(args):
    print(model_summary(args.model_type, args.use_cbam, args.image_size, args.batch_size))


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
