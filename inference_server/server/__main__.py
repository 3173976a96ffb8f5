"""``python -m inference_server.server ...`` is ``step1x3d serve ...``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
