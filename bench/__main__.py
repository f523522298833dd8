"""Run every benchmark and print figures side by side with their baselines."""

import sys

if __name__ == "__main__":
    sys.exit("no benchmarks yet")
