"""Generate a synthetic CLEVR-Change dataset (same as ``clip4idc data synth``).

python data_prep/make_synthetic.py OUT --pairs 20000 --size 160x120 --workers 8
"""

from __future__ import annotations

import sys

from clip4idc.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "synth", *sys.argv[1:]]))
