"""``python -m clip4idc.cli``: the same as the ``clip4idc`` command."""

import sys

from . import main

sys.exit(main())
