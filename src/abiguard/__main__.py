from abiguard.cli import main

raise SystemExit(main())
