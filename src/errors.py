"""The project's one exception for errors a user can fix, and how scripts report it."""
import sys


class ProjectError(Exception):
    """An error the user can fix; scripts print its message as one paragraph and exit non-zero."""


def run_cli(main, args):
    """Run a script's main(args); turn ProjectError into a one-paragraph message and exit status 2."""
    try:
        return main(args)
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
