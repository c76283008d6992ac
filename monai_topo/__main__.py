import sys

from monai_topo.cli import main

sys.exit(main())
