"""``python -m heimdall_cli``."""

from heimdall_cli.cli import main

if __name__ == "__main__":
    main()
