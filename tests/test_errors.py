import pytest

from errors import ProjectError, run_cli


def test_run_cli_turns_project_errors_into_exit_2(capsys):
    def main(args):
        raise ProjectError("the thing is wrong")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, None)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: the thing is wrong\n"
