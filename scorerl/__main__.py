"""`python -m scorerl ...` (what `accelerate launch -m scorerl train CONFIG` runs)."""

import sys

from scorerl.cli import main

sys.exit(main())
