import sys

from appgw_sse.cli import main

sys.exit(main())
