"""``python -m xflipnslide.cli``: the ``xflipnslide`` command."""

import sys

from . import main

sys.exit(main())
