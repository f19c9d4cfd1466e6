import sys

from siit.cli import main

sys.exit(main())
