from abiguard.recall import main

raise SystemExit(main())
