"""`python -m deba_pipeline.cli`, as the `deba` command."""

import sys

from deba_pipeline.cli import main

sys.exit(main())
