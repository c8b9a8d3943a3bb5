import sys

from .programs.nanobragg import main

sys.exit(main())
