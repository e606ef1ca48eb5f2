from localcond.cli import main

raise SystemExit(main())
