import sys

from gbgw.gb28181.app.cli import main

sys.exit(main())
