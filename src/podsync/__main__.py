"""`python -m podsync` entry point."""

from podsync.cli.app import main

if __name__ == "__main__":
    main()
