"""``python -m willis.predict``: see ``willis.predict.cli``."""

import sys

from willis.predict.cli import main

sys.exit(main())
