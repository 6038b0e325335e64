#!/usr/bin/env python
import sys

import mailhub  # noqa: F401 - validates the settings first, with a one-line error


def main() -> None:
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
