"""``python -m mmm_cli ...`` is the ``mmm`` command."""

import sys

from mmm_cli.main import main

sys.exit(main())
