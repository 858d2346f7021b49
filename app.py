"""Launch the clip4idc web app: ``python app.py [--port 7860] [--checkpoint demo] [--share]``."""

import sys

from clip4idc.app.web import main

if __name__ == "__main__":
    sys.exit(main())
