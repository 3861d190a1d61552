from gbgw.conformance.tool.cli import main

raise SystemExit(main())
