"""The main job: start the local stack and run the order stories (filled in by the orders work)."""

import sys

if __name__ == "__main__":
    sys.exit("demo not built yet")
