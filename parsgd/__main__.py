import sys

from parsgd.cli import main

sys.exit(main())
