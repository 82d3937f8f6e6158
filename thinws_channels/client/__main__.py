"""``python -m thinws_channels.client``: see ``cli.py``."""

import sys

from .cli import main

sys.exit(main())
