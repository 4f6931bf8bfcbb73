"""``python -m relearn.devtools.journey``: see :mod:`relearn.devtools.journey.demo`."""

import sys

from relearn.devtools.journey.demo import main

sys.exit(main())
