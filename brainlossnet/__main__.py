from brainlossnet.bids_app.run import main

raise SystemExit(main())
