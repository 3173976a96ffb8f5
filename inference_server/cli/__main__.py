"""``python -m inference_server.cli ...`` is ``step1x3d ...``."""

import sys

from . import main

sys.exit(main())
