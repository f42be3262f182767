from asyncetl.cli import main

raise SystemExit(main())
