"""`python -m folkrnn` (and `torchrun -m folkrnn`) run the command-line interface."""

import sys

from folkrnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
