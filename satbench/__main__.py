import sys

from satbench.cli import main

sys.exit(main())
