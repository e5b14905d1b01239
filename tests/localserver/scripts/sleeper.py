"""A task that runs until it is stopped, printing a line every half second (the agent forwards them)."""

import time

for tick in range(2400):
    print(f"alive {tick}", flush=True)
    time.sleep(0.5)
