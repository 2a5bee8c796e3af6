from motionkit.data.world.dataset import main

raise SystemExit(main())
