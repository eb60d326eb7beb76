import sys

if len(sys.argv) > 1 and sys.argv[1] == "flat":  # python -m bench flat --size quick (issue 13)
    from bench.flat import main as flat_main

    sys.exit(flat_main(sys.argv[2:]))

from bench.run import main

sys.exit(main())
