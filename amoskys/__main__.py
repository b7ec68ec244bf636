from amoskys.cli import main

raise SystemExit(main())
