import argparse

import pytest

import arg_types
import cli
import evaluate
import inference
import reproduce
import summary
import train


def parsed(parser, *argv):
    required = ["--model", "m.pth"] if "--model MODEL" in parser.format_usage() else []
    return vars(parser.parse_args([*required, *argv]))


def test_the_cbam_setting_has_one_name_in_every_script():
    for script in (train, evaluate, inference, summary, reproduce):
        names = parsed(script.get_args_parser())
        assert "use_cbam" in names and "no_cbam" not in names, script.__name__
    assert parsed(train.get_args_parser(), "--no_cbam")["use_cbam"] is False


def test_scripts_that_read_a_checkpoint_leave_model_flags_unset_unless_given():
    for script in (evaluate, inference):
        args = parsed(script.get_args_parser())
        assert (args["model_type"], args["use_cbam"]) == (None, None)
        args = parsed(script.get_args_parser(), "--no_cbam", "--model_type", "unet")
        assert (args["model_type"], args["use_cbam"]) == ("Unet", False)


def test_the_shared_flags_mean_the_same_in_every_script():
    for script in (evaluate, inference):
        args = parsed(script.get_args_parser(), "--split", "valid", "--device", "cpu", "--no_cache", "-b", "2")
        assert (args["split"], args["device"], args["no_cache"], args["batch_size"]) == ("valid", "cpu", True, 2)
        with pytest.raises(SystemExit):
            parsed(script.get_args_parser(), "--split", "validation")


@pytest.mark.parametrize("text", ["0", "-3", "two"])
def test_positive_int_refuses_what_is_not_a_count(text):
    parser = argparse.ArgumentParser()
    parser.add_argument("-b", type=arg_types.positive_int)
    with pytest.raises(SystemExit):
        parser.parse_args(["-b", text])


def test_typed_flags_are_those_given_whatever_their_values():
    typed = cli.typed_flags(train.get_args_parser, ["-lr", "1e-4", "--no_cbam", "--epochs=3", "--amp"])
    assert typed == {"learning_rate": "--learning-rate", "use_cbam": "--no_cbam", "epochs": "--epochs", "amp": "--amp"}
    assert cli.typed_flags(train.get_args_parser, []) == {}
