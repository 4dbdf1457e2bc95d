"""`python -m toxdistill.cli`, as torchrun and accelerate launch call it."""

import sys

from toxdistill.cli import main

sys.exit(main())
