"""`python -m scheduler`: run the scheduler standalone (production; see scheduler/runner.py)."""

from scheduler.runner import main

main()
