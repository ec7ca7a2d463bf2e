"""``python -m sr_engine {train,evaluate,sample,benchmark} ...`` (the commands: :mod:`sr_engine.cli`)."""

from .cli import main

if __name__ == "__main__":
    main()
