"""``python -m diffstudio`` is the ``diffstudio`` command."""

import sys

from diffstudio.cli import main

sys.exit(main())
