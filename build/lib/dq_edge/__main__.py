import sys

from dq_edge.cli.main import main

sys.exit(main())
