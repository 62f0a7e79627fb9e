"""The frozen application's entry point (packaging/diffstudio.spec): the ``diffstudio`` command.

``freeze_support`` lets worker processes (DataLoader workers, the job queue) start from a
frozen executable, which has no ``python -c`` to re-run."""

import multiprocessing
import sys

from diffstudio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
