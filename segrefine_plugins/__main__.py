"""``python -m segrefine_plugins`` runs the ``segrefine`` command (see :mod:`.cli`)."""
import sys

from .cli import main

sys.exit(main())
