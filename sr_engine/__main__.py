"""``python -m sr_engine {train,evaluate,sample,benchmark} ...``"""

import sys


def main() -> None:
    commands = ("train", "evaluate", "sample", "benchmark")
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m sr_engine {{{','.join(commands)}}} [options]  (--help after a command)")
        sys.exit(2)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "train":
        from .train import main as run
    elif cmd == "evaluate":
        from .evaluate import main as run
    elif cmd == "sample":
        from .cli import sample_main as run
    else:
        from .bench import main as run
    run(argv)


if __name__ == "__main__":
    main()
