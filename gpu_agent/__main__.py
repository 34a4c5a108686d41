"""`python -m gpu_agent`: the agent without `vigil`'s other imports (what `vigil agent` and `vigil up` run)."""

import sys

from gpu_agent.cli import main

sys.exit(main())
