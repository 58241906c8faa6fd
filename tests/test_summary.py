import pytest

import summary


def test_the_flags_parse_to_a_model_and_its_input():
    args = summary.get_args_parser().parse_args(["--model_type", "hrnet", "--image_size", "32", "--batch_size", "2"])
    assert (args.model_type, args.image_size, args.batch_size) == ("HRNet", 32, 2)


@pytest.mark.parametrize("argv", [["--image_size", "0"], ["--image_size", "16"], ["--image_size", "5000"],
                                  ["--image_size", "big"], ["--batch_size", "0"], ["--batch_size", "-4"]])
def test_bad_numbers_exit_with_code_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        summary.get_args_parser().parse_args(argv)
    assert exit_info.value.code == 2
