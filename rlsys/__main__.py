"""`python -m rlsys ...` is the same as the `rlsys` console script."""
import sys

from rlsys.cli import main

if __name__ == "__main__":
    sys.exit(main())
